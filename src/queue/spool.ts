// The durable spool. A message is one file: a header line with the envelope as JSON, the
// message bytes, and a trailer that marks the file complete (Postfix's END record, in
// spirit). 250 is sent only after the file's data is fsync'd and its directory entry is
// fsync'd too; directory syncs are coalesced across concurrent sessions (group commit).
//
// A file without a valid trailer was never acknowledged: recovery deletes it. A file with
// a trailer that does not match its contents is moved to corrupt/ for an administrator.
import { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface RecipientEnvelope {
  address: string;
  /** DSN NOTIFY (RFC 3461): NEVER or a subset of SUCCESS, FAILURE, DELAY. */
  notify?: string[];
  /** DSN ORCPT as "type;address" (decoded from xtext). */
  orcpt?: string;
}

export interface Envelope {
  id: string;
  receivedAt: string;
  server: string;
  virtualServer: string;
  client: { ip: string; port: number; helo: string; tls: boolean; authenticatedAs?: string };
  /** Reverse path; "" is the null sender. */
  sender: string;
  body: '7BIT' | '8BITMIME' | 'BINARYMIME';
  smtputf8: boolean;
  /** DSN RET and ENVID (RFC 3461). */
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** Declared SIZE= at MAIL, if any. */
  declaredSize?: number;
  recipients: RecipientEnvelope[];
  /** Message-ID header, when the message carried one. */
  messageId?: string;
  subject?: string;
  headerFrom?: string;
  /** Received header fields in the message, ours included (hop count). */
  receivedHeaders?: number;
  /** Accepted silently by the sender filter: it belongs in badmail, never in the queues. */
  archived?: string;
  /** From Importance / X-Priority; absent means normal. */
  priority?: 'high' | 'low';
}

export interface SpooledMessage {
  envelope: Envelope;
  /** Bytes of the message as stored (Received header included). */
  size: number;
  file: string;
  /** The message bytes, when the writer still held them in memory (not spilled). */
  body?: Buffer;
}

const MAGIC = 'BHQ1 ';
const TRAILER_PREFIX = '\nBHQ-END ';
const TRAILER_LEN = TRAILER_PREFIX.length + 12 + 1; // fixed width: 12-digit length + "\n"
const SPILL_BYTES = 256 * 1024;

let sequence = 0;
/** Sortable, unique queue id: time, a per-process sequence and randomness. */
export function newMessageId(): string {
  sequence = (sequence + 1) % 36 ** 3;
  return (
    Date.now().toString(36).padStart(9, '0') +
    sequence.toString(36).padStart(3, '0') +
    randomBytes(3).toString('hex')
  ).toUpperCase();
}

/** fsync of a directory, shared by everyone who asked while the previous one ran. */
class DirectorySync {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.running) {
      this.running = this.run().finally(() => (this.running = undefined));
      return this.running;
    }
    // A sync already in flight may have started before our rename: wait for the next one.
    if (!this.next) {
      this.next = this.running.then(() => {
        this.next = undefined;
        return this.sync();
      });
    }
    return this.next;
  }

  private async run(): Promise<void> {
    const fh = await fsp.open(this.dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

export class SpoolWriter {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private fh: fsp.FileHandle | undefined;
  private headerWritten = false;
  private closed = false;
  /** The spill writes in flight, chained in order. */
  private flushing: Promise<void> | undefined;
  size = 0;

  constructor(
    private readonly spool: Spool,
    readonly envelope: Envelope,
  ) {}

  get file(): string {
    return this.spool.fileFor(this.envelope.id);
  }

  /** Appends message bytes; spills to disk once the message is large. */
  async write(chunk: Buffer): Promise<void> {
    if (this.closed) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.size += chunk.length;
    if (this.buffered >= SPILL_BYTES) await this.flushToFile();
  }

  private headerBuffer(): Buffer {
    const json = JSON.stringify(this.envelope);
    return Buffer.from(`${MAGIC}${json}\n`, 'utf8');
  }

  private flushToFile(): Promise<void> {
    // The parts are taken now: abort() may clear the buffers while the file is being opened.
    const parts = this.headerWritten ? this.chunks : [this.headerBuffer(), ...this.chunks];
    this.headerWritten = true;
    this.chunks = [];
    this.buffered = 0;
    this.flushing = (this.flushing ?? Promise.resolve()).then(async () => {
      if (!this.fh) this.fh = await fsp.open(this.file, 'wx', 0o600);
      await this.fh.writev(parts);
    });
    return this.flushing;
  }

  /** Makes the message durable. Resolves only once data and directory entry are on disk. */
  async commit(): Promise<SpooledMessage> {
    if (this.closed) throw new Error('spool writer already closed');
    // From here on the file is the commit's to finish or to remove; abort() leaves it alone.
    this.closed = true;
    // The envelope may have learnt header facts (Message-ID, subject) since the header
    // was written; only an unspilled message can still carry them.
    const trailer = Buffer.from(`${TRAILER_PREFIX}${String(this.size).padStart(12, '0')}\n`);
    let body: Buffer | undefined;
    try {
      if (!this.fh) {
        body = Buffer.concat(this.chunks);
        this.fh = await fsp.open(this.file, 'wx', 0o600);
        await this.fh.writev([this.headerBuffer(), body, trailer]);
      } else {
        await this.fh.writev([...this.chunks, trailer]);
      }
      this.chunks = [];
      await this.fh.datasync();
      await this.fh.close();
      this.fh = undefined;
      await this.spool.syncDirectory();
    } catch (err) {
      // Not acknowledged, so not kept: a later recovery must not deliver it behind our back.
      await this.removeFile();
      throw err;
    }
    return { envelope: this.envelope, size: this.size, file: this.file, ...(body ? { body } : {}) };
  }

  /** Drops a message that was not accepted (client vanished, size exceeded, ...). */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.chunks = [];
    // A spill may be under way (its open or write still pending): let it settle first, or
    // the file it creates would outlive the abort.
    if (!this.flushing) return;
    await this.flushing.catch(() => undefined);
    await this.removeFile();
  }

  private async removeFile(): Promise<void> {
    this.chunks = [];
    if (this.fh) {
      await this.fh.close().catch(() => undefined);
      this.fh = undefined;
    }
    await fsp.unlink(this.file).catch(() => undefined);
  }
}

export interface RecoveryReport {
  messages: SpooledMessage[];
  /** Files removed because they were never completed (never acknowledged). */
  incomplete: string[];
  /** Files moved to corrupt/ because their trailer does not match. */
  corrupt: string[];
}

export class Spool {
  readonly dir: string;
  private readonly dirSync: DirectorySync;

  /** @param queueDir the directory of one queue, e.g. <data>/queue/pre-submission */
  constructor(queueDir: string) {
    this.dir = queueDir;
    this.dirSync = new DirectorySync(queueDir);
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
  }

  fileFor(id: string): string {
    return path.join(this.dir, `${id}.msg`);
  }

  createWriter(envelope: Envelope): SpoolWriter {
    return new SpoolWriter(this, envelope);
  }

  syncDirectory(): Promise<void> {
    return this.dirSync.sync();
  }

  /** Reads one spooled message file; undefined when it is incomplete. Throws when corrupt. */
  static async readFile(file: string): Promise<{ envelope: Envelope; message: Buffer } | undefined> {
    const data = await fsp.readFile(file);
    const nl = data.indexOf(0x0a);
    if (nl === -1 || data.subarray(0, MAGIC.length).toString() !== MAGIC) return undefined;
    if (data.length < nl + 1 + TRAILER_LEN) return undefined;
    const trailer = data.subarray(data.length - TRAILER_LEN).toString('latin1');
    if (!trailer.startsWith(TRAILER_PREFIX) || !trailer.endsWith('\n')) return undefined;
    const declared = Number(trailer.slice(TRAILER_PREFIX.length, -1));
    const message = data.subarray(nl + 1, data.length - TRAILER_LEN);
    if (message.length !== declared)
      throw new Error(`length ${message.length} does not match trailer ${declared}`);
    const envelope = JSON.parse(data.subarray(MAGIC.length, nl).toString('utf8')) as Envelope;
    return { envelope, message };
  }

  /** Startup scan: every complete message, with partial files removed. */
  async recover(): Promise<RecoveryReport> {
    await this.init();
    const report: RecoveryReport = { messages: [], incomplete: [], corrupt: [] };
    const names = (await fsp.readdir(this.dir)).filter((n) => n.endsWith('.msg')).sort();
    for (const name of names) {
      const file = path.join(this.dir, name);
      try {
        const read = await Spool.readFile(file);
        if (!read) {
          await fsp.unlink(file);
          report.incomplete.push(name);
          continue;
        }
        report.messages.push({ envelope: read.envelope, size: read.message.length, file });
      } catch {
        const corruptDir = path.join(path.dirname(this.dir), 'corrupt');
        await fsp.mkdir(corruptDir, { recursive: true });
        await fsp.rename(file, path.join(corruptDir, name));
        report.corrupt.push(name);
      }
    }
    return report;
  }
}
