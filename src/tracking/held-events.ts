// NAME      held events: tracking events the database refused, waiting to be written again
// SYNOPSIS  held.add(rows, limit, error) · held.take(server) · held.putBack(taken, error) · held.done()
// DESCRIPTION
//   No I/O here; MessageTracking (tracking.ts) owns the timer and the writer. Rows stay in
//   the order they were written. Past the limit only a count and the time span of the
//   lost events are kept, and take() ends its batch with a GAP event that says so.
import type { EventRowValues } from './schema.js';

/**
 * Events of failed batches, oldest first, at most `limit`; beyond it only a count and the
 * time span of what was lost (written as a GAP event once the database takes rows again).
 */
export class HeldEvents {
  private rows: EventRowValues[] = [];
  gap: { lost: number; from: number; to: number } | undefined;
  /** The writer's last error, for the GAP event's text. */
  private lastError = 'the database could not be written';
  /** A retry batch is in flight. */
  private sending = false;
  /** Rows of the retry in flight: they count against the limit, as they may come back. */
  private sendingRows = 0;

  get count(): number {
    return this.rows.length;
  }

  /** Something is held or being written again: new events queue behind it. */
  get waiting(): boolean {
    return this.sending || this.rows.length > 0 || this.gap !== undefined;
  }

  add(rows: EventRowValues[], limit: number, reason: string | undefined): void {
    const room = Math.max(0, limit - this.rows.length - this.sendingRows);
    this.rows.push(...rows.slice(0, room));
    for (const lost of rows.slice(room)) {
      const time = lost[0] as number;
      this.gap ??= { lost: 0, from: time, to: time };
      this.gap.lost++;
      this.gap.from = Math.min(this.gap.from, time);
      this.gap.to = Math.max(this.gap.to, time);
    }
    if (reason) this.lastError = reason;
  }

  take(
    server: string,
  ): { rows: EventRowValues[]; held: EventRowValues[]; gap: HeldEvents['gap'] } | undefined {
    if (this.sending || (!this.rows.length && !this.gap)) return undefined;
    const held = this.rows;
    const gap = this.gap;
    this.rows = [];
    this.gap = undefined;
    this.sending = true;
    this.sendingRows = held.length;
    return { rows: gap ? [...held, gapRow(server, gap, this.lastError)] : held, held, gap };
  }

  /** A retry failed: its rows go back in front of what arrived meanwhile. */
  putBack(taken: { held: EventRowValues[]; gap: HeldEvents['gap'] }, error: string): void {
    this.sending = false;
    this.sendingRows = 0;
    this.lastError = error;
    this.rows = [...taken.held, ...this.rows];
    const gap = taken.gap;
    if (gap) {
      this.gap = this.gap
        ? {
            lost: gap.lost + this.gap.lost,
            from: Math.min(gap.from, this.gap.from),
            to: Math.max(gap.to, this.gap.to),
          }
        : gap;
    }
  }

  /** A retry succeeded. */
  done(): void {
    this.sending = false;
    this.sendingRows = 0;
  }
}

/** The GAP event: at the time of the first lost event, saying how many and until when. */
function gapRow(server: string, gap: NonNullable<HeldEvents['gap']>, error: string): EventRowValues {
  const info =
    `${gap.lost} event(s) not recorded between ${new Date(gap.from).toISOString()} and ` +
    `${new Date(gap.to).toISOString()}: ${error.replace(/^\d+ event\(s\) not recorded: /, '')}`;
  // Column order of INSERT_EVENT (schema.ts).
  return [
    gap.from,
    server,
    'GAP',
    'TRACKING',
    '',
    null,
    null,
    '[]',
    null,
    0,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    info,
    null,
  ];
}
