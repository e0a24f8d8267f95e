// Protocol log per virtual server, in the spirit of the SmtpSend log quoted in [001]: one
// CSV line per event: date-time, virtual server, session id, sequence, local endpoint,
// remote endpoint, event, data. Events: "+" connect, "-" disconnect, "<" received,
// ">" sent, "*" information. Files rotate daily and are kept `retentionDays` days.
// The data is escaped (logText) so that a hostile peer cannot make the file binary for
// grep or forge a line: control bytes, DEL and bytes that are not UTF-8 become \xNN, and
// a backslash \\.
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import path from 'node:path';

function csv(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""').replace(/[\r\n]+/g, ' ')}"` : value;
}

const hex = (byte: number) => `\\x${byte.toString(16).padStart(2, '0')}`;

/** Control characters (CR and LF included) and DEL as \xNN; the backslash that starts an escape as \\. */
function escapeText(text: string): string {
  let escaped = '';
  let runStart = 0;
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at);
    if (code >= 0x20 && code !== 0x7f && code !== 0x5c) continue;
    escaped += text.slice(runStart, at) + (code === 0x5c ? '\\\\' : hex(code));
    runStart = at + 1;
  }
  return escaped + text.slice(runStart);
}

/** Length of the valid UTF-8 sequence at `at`, or 0 (RFC 3629 §4: no overlongs, no surrogates). */
function utf8Length(bytes: Buffer, at: number): number {
  const lead = bytes[at]!;
  const continuation = (offset: number, low = 0x80, high = 0xbf) => {
    const byte = bytes[at + offset];
    return byte !== undefined && byte >= low && byte <= high;
  };
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const low = lead === 0xe0 ? 0xa0 : 0x80;
    const high = lead === 0xed ? 0x9f : 0xbf;
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const low = lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xf4 ? 0x8f : 0xbf;
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

/**
 * The text of one logged line: printable UTF-8 as it is; bytes below 0x20, 0x7f and bytes
 * that are not UTF-8 as \xNN; a backslash as \\. A Buffer is what the peer sent; a string
 * was decoded already (its invalid bytes are U+FFFD by then). No I/O here.
 */
export function logText(data: string | Buffer): string {
  if (typeof data === 'string') return escapeText(data);
  let text = '';
  let runStart = 0;
  let at = 0;
  while (at < data.length) {
    const length = utf8Length(data, at);
    if (length > 0) {
      at += length;
      continue;
    }
    text += escapeText(data.toString('utf8', runStart, at)) + hex(data[at]!);
    runStart = ++at;
  }
  return text + escapeText(data.toString('utf8', runStart));
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

  write(
    sessionId: string,
    seq: number,
    local: string,
    remote: string,
    event: string,
    data: string | Buffer,
  ): void {
    const now = new Date();
    const day = now.toISOString().slice(0, 10).replace(/-/g, '');
    if (day !== this.day) this.rotate(day);
    this.stream!.write(
      `${now.toISOString()},${csv(this.name)},${sessionId},${seq},${local},${remote},${event},${csv(logText(data))}\n`,
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
