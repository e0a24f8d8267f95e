// Protocol log per virtual server, in the spirit of the SmtpSend log quoted in [001]: one
// CSV line per event: date-time, virtual server, session id, sequence, local endpoint,
// remote endpoint, event, data. Events: "+" connect, "-" disconnect, "<" received,
// ">" sent, "*" information. Files rotate daily and are kept `retentionDays` days.
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import path from 'node:path';

function csv(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""').replace(/[\r\n]+/g, ' ')}"` : value;
}

export class ProtocolLog {
  private stream: WriteStream | undefined;
  private day = '';

  constructor(
    private readonly dir: string,
    private readonly prefix: 'RECV' | 'SEND',
    private readonly name: string,
    private readonly retentionDays: number,
  ) {}

  write(sessionId: string, seq: number, local: string, remote: string, event: string, data: string): void {
    const now = new Date();
    const day = now.toISOString().slice(0, 10).replace(/-/g, '');
    if (day !== this.day) this.rotate(day);
    this.stream!.write(
      `${now.toISOString()},${csv(this.name)},${sessionId},${seq},${local},${remote},${event},${csv(data)}\n`,
    );
  }

  private rotate(day: string): void {
    this.stream?.end();
    this.day = day;
    this.stream = createWriteStream(path.join(this.dir, `${this.prefix}${day}.log`), {
      flags: 'a',
      mode: 0o600,
    });
    this.stream.on('error', () => undefined);
    void this.prune();
  }

  /** Deletes log files older than the retention period. */
  async prune(now = Date.now()): Promise<void> {
    const cutoff = new Date(now - this.retentionDays * 86400_000)
      .toISOString()
      .slice(0, 10)
      .replace(/-/g, '');
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) {
      const m = new RegExp(`^${this.prefix}(\\d{8})\\.log$`).exec(n);
      if (m && m[1]! < cutoff) await fsp.unlink(path.join(this.dir, n)).catch(() => undefined);
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.stream ? this.stream.end(resolve) : resolve()));
  }

  static async open(
    dataDir: string,
    direction: 'receive' | 'send',
    virtualServer: string,
    retentionDays: number,
  ): Promise<ProtocolLog> {
    const slug = virtualServer.replace(/[^A-Za-z0-9._-]+/g, '_');
    const dir = path.join(dataDir, 'logs', 'protocol', direction, slug);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return new ProtocolLog(dir, direction === 'receive' ? 'RECV' : 'SEND', virtualServer, retentionDays);
  }
}
