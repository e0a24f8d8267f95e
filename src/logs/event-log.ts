// Diagnostic event log: structured JSON lines (pino), one child logger per category the
// guide names, each with its own level (None / Minimum / Medium / Maximum).
import pino, { type Logger } from 'pino';

export const CATEGORIES = [
  'Routing Engine',
  'Categorizer',
  'Connection Manager',
  'Queuing Engine',
  'Store Driver',
  'SMTP Protocol',
  'Link State',
] as const;
export type Category = (typeof CATEGORIES)[number];
export type DiagnosticLevel = 'none' | 'minimum' | 'medium' | 'maximum';

const PINO_LEVEL: Record<DiagnosticLevel, string> = {
  none: 'silent',
  minimum: 'error',
  medium: 'info',
  maximum: 'debug',
};

export class EventLog {
  private readonly root: Logger;
  private readonly children = new Map<Category, Logger>();
  private readonly current = new Map<Category, DiagnosticLevel>();

  constructor(levels: Record<string, DiagnosticLevel> = {}, destination?: pino.DestinationStream) {
    this.root = pino(
      { base: undefined, level: 'debug' },
      destination ?? pino.destination({ fd: 2, sync: false }),
    );
    for (const c of CATEGORIES) {
      const child = this.root.child({ category: c });
      child.level = PINO_LEVEL[levels[c] ?? 'minimum'];
      this.current.set(c, levels[c] ?? 'minimum');
      this.children.set(c, child);
    }
  }

  category(c: Category): Logger {
    return this.children.get(c)!;
  }

  setLevel(c: Category, level: DiagnosticLevel): void {
    this.children.get(c)!.level = PINO_LEVEL[level];
    this.current.set(c, level);
  }

  levels(): Record<Category, DiagnosticLevel> {
    return Object.fromEntries(this.current) as Record<Category, DiagnosticLevel>;
  }

  /** Messages for the operator that are not tied to a category (startup, shutdown). */
  get service(): Logger {
    return this.root;
  }

  static silent(): EventLog {
    return new EventLog(Object.fromEntries(CATEGORIES.map((c) => [c, 'none'])), {
      write: () => undefined,
    } as pino.DestinationStream);
  }
}
