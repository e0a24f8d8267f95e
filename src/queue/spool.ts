// The durable spool. A message is one file: a header line with the envelope as JSON, the
// message bytes, and a trailer that marks the file complete (Postfix's END record, in
// spirit). 250 is sent only after the file's data is fsync'd and its directory entry is
// fsync'd too; directory syncs are coalesced across concurrent sessions (group commit).
//
// A file without a valid trailer was never acknowledged: recovery deletes it. A file with
// a trailer that does not match its contents is moved to corrupt/ for an administrator.
//
// Files are recycled, not deleted: a finished message's file is renamed into <spool>-free
// and the next message is written over it. Creating and unlinking hundreds of inodes a
// second is what the kernel charged most for (ext4 scans past recently deleted inodes on
// every create); a rename and an overwrite cost a fraction. Because a recycled file still
// holds an older message until it is overwritten, a file counts as complete only when its
// header names the file's own queue id and its trailer carries the id, the length and the
// CRC-32 of the message bytes.
//
// The writes of a message held in memory, and all recycling, happen on spool I/O threads
// (spool-worker.ts): one message to a thread and one reply, instead of six asynchronous
// calls the main thread pays for. A message large enough to spill while it arrives is
// written from here, to a new file.
import { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Worker } from 'node:worker_threads';
import type { SpoolJob, SpoolReply, SpoolWorkerData } from './spool-worker.js';
import type { Envelope } from './envelope.js';

export type { Envelope, RecipientEnvelope } from './envelope.js';

export interface SpooledMessage {
  envelope: Envelope;
  /** Bytes of the message as stored (Received header included). */
  size: number;
  file: string;
  /** The message bytes, when the writer still held them in memory (not spilled). */
  body?: Buffer;
}

const MAGIC = 'BHQ2 ';
const TRAILER_PREFIX = '\nBHQ-END ';
// Fixed width: "<12-digit length> <8-hex crc32> <queue id, padded to 32>\n".
const TRAILER_LEN = TRAILER_PREFIX.length + 12 + 1 + 8 + 1 + 32 + 1;
const SPILL_BYTES = 256 * 1024;
/** Recycled files kept for reuse; beyond this, finished files are unlinked. */
const FREE_POOL_MAX = 4096;
/** Spool I/O threads: enough for fsyncs to overlap, few enough to stay cheap. */
const IO_THREADS = 4;

/**
 * The format before recycling (files were never reused then): "BHQ1 " and a trailer with
 * the length only. Still read, so mail queued before an upgrade is delivered.
 */
const LEGACY_MAGIC = 'BHQ1 ';
const LEGACY_TRAILER_LEN = TRAILER_PREFIX.length + 12 + 1;

function readLegacy(data: Buffer): { envelope: Envelope; message: Buffer } | undefined {
  const nl = data.indexOf(0x0a);
  if (nl === -1 || data.length < nl + 1 + LEGACY_TRAILER_LEN) return undefined;
  const trailer = data.subarray(data.length - LEGACY_TRAILER_LEN).toString('latin1');
  if (!trailer.startsWith(TRAILER_PREFIX) || !trailer.endsWith('\n')) return undefined;
  const declared = Number(trailer.slice(TRAILER_PREFIX.length, -1));
  const message = data.subarray(nl + 1, data.length - LEGACY_TRAILER_LEN);
  if (message.length !== declared)
    throw new Error(`length ${message.length} does not match trailer ${declared}`);
  const envelope = JSON.parse(data.subarray(LEGACY_MAGIC.length, nl).toString('utf8')) as Envelope;
  return { envelope, message };
}

async function writeDurably(file: string, text: string): Promise<void> {
  const fh = await fsp.open(file, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

function trailerFor(id: string, size: number, crc: number): Buffer {
  return Buffer.from(
    `${TRAILER_PREFIX}${String(size).padStart(12, '0')} ${crc.toString(16).padStart(8, '0')} ${id.padEnd(32)}\n`,
    'latin1',
  );
}

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
  /** The archive mark as the header on disk carries it (a spilled header is written early). */
  private archivedInHeader: string | undefined;
  private closed = false;
  /** The spill writes in flight, chained in order. */
  private flushing: Promise<void> | undefined;
  private crc = 0;
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
    this.crc = crc32(chunk, this.crc);
    if (this.buffered >= SPILL_BYTES) await this.flushToFile();
  }

  private headerBuffer(): Buffer {
    this.archivedInHeader = this.envelope.archived;
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
    const trailer = trailerFor(this.envelope.id, this.size, this.crc);
    let body: Buffer;
    if (!this.fh) {
      body = Buffer.concat(this.chunks);
      this.chunks = [];
      try {
        await this.spool.writeWhole(this.file, [this.headerBuffer(), body, trailer]);
      } catch (err) {
        // Not acknowledged, so not kept. The I/O thread removes what it wrote when it can;
        // a thread that died could not.
        await fsp.rm(this.file, { force: true });
        throw err;
      }
      return { envelope: this.envelope, size: this.size, file: this.file, body };
    }
    try {
      await this.fh.writev([...this.chunks, trailer]);
      this.chunks = [];
      await this.fh.datasync();
      await this.fh.close();
      this.fh = undefined;
      // Archived by a verdict that came after the header was written (the header From of
      // a large message): the mark goes beside the file, durable before the 250.
      if (this.envelope.archived !== undefined && this.archivedInHeader === undefined)
        await writeDurably(Spool.archiveMarkFor(this.file), this.envelope.archived);
      await this.spool.syncDirectory();
    } catch (err) {
      // Not acknowledged, so not kept: a later recovery must not deliver it behind our back.
      await this.removeFile();
      await fsp.rm(Spool.archiveMarkFor(this.file), { force: true });
      throw err;
    }
    return { envelope: this.envelope, size: this.size, file: this.file };
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
    await this.spool.recycle(this.file);
  }
}

export interface RecoveryReport {
  /** Complete messages the queue database did not know, read whole (a crash came between). */
  messages: SpooledMessage[];
  /** Queue ids of every complete message file in the spool, known or not. */
  onDisk: Set<string>;
  /** Files removed because they were never completed (never acknowledged). */
  incomplete: string[];
  /** Files moved to corrupt/ because their trailer does not match. */
  corrupt: string[];
}

export class Spool {
  readonly dir: string;
  /** Finished files waiting to be written over. */
  readonly freeDir: string;
  private readonly dirSync: DirectorySync;
  private workers: Worker[] = [];
  private next = 0;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly workerOf = new Map<number, Worker>();
  /** Finished files ready to be written over. */
  private readonly free: string[] = [];
  /** Names pool files apart across runs: a run id and a counter. */
  private readonly run = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  private freeCounter = 0;
  /** Jobs in flight per thread: a thread with work keeps the process alive, an idle one not. */
  private readonly inFlight = new Map<Worker, number>();

  /** @param queueDir the directory of one queue, e.g. <data>/spool */
  constructor(queueDir: string) {
    this.dir = queueDir;
    this.freeDir = `${queueDir}-free`;
    this.dirSync = new DirectorySync(queueDir);
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fsp.mkdir(this.freeDir, { recursive: true, mode: 0o700 });
    if (this.workers.length) return;
    for (const name of await fsp.readdir(this.freeDir)) {
      const file = path.join(this.freeDir, name);
      // Beyond what the pool may keep, leftovers go now.
      if (this.free.length >= FREE_POOL_MAX) await fsp.rm(file, { force: true });
      else this.free.push(file);
    }
    for (let i = 0; i < IO_THREADS; i++) this.workers.push(this.startWorker({ dir: this.dir }));
  }

  private startWorker(workerData: SpoolWorkerData): Worker {
    const w = new Worker(new URL('./spool-worker.js', import.meta.url), { workerData });
    w.on('message', (replies: SpoolReply[]) => {
      for (const r of replies) {
        const p = this.pending.get(r.seq);
        if (!p) continue;
        this.pending.delete(r.seq);
        this.workerOf.delete(r.seq);
        this.settled(w);
        if (r.error) p.reject(Object.assign(new Error(r.error), { code: r.code }));
        else p.resolve();
      }
    });
    const fail = (err: Error) => {
      // Jobs in flight on a thread that died were never answered: fail them, start another.
      for (const [seq, owner] of this.workerOf) {
        if (owner !== w) continue;
        this.workerOf.delete(seq);
        this.pending.get(seq)?.reject(err);
        this.pending.delete(seq);
      }
      this.inFlight.delete(w);
      const i = this.workers.indexOf(w);
      if (i !== -1) this.workers[i] = this.startWorker(workerData);
    };
    w.on('error', fail);
    w.on('exit', (code) => {
      if (this.workers.includes(w)) fail(new Error(`spool I/O thread exited (${code})`));
    });
    // Idle threads must not keep a process alive that has nothing else to do.
    w.unref();
    return w;
  }

  private settled(w: Worker): void {
    const n = (this.inFlight.get(w) ?? 1) - 1;
    this.inFlight.set(w, n);
    if (n === 0) w.unref();
  }

  private post(job: SpoolJob): Promise<void> {
    if (!this.workers.length) return Promise.reject(new Error('spool not initialised'));
    const w = this.workers[this.next++ % this.workers.length]!;
    const n = (this.inFlight.get(w) ?? 0) + 1;
    this.inFlight.set(w, n);
    if (n === 1) w.ref();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(job.seq, { resolve, reject });
      this.workerOf.set(job.seq, w);
      w.postMessage(job);
    });
  }

  /** Stops the spool I/O threads (after the last commit has been answered). */
  async close(): Promise<void> {
    const workers = this.workers;
    this.workers = [];
    await Promise.all(workers.map((w) => w.terminate()));
    for (const p of this.pending.values()) p.reject(new Error('spool closed'));
    this.pending.clear();
    this.workerOf.clear();
  }

  fileFor(id: string): string {
    return path.join(this.dir, `${id}.msg`);
  }

  /** Beside a message file: its archive reason, when the file's own header could not carry it. */
  static archiveMarkFor(file: string): string {
    return `${file}.archived`;
  }

  createWriter(envelope: Envelope): SpoolWriter {
    return new SpoolWriter(this, envelope);
  }

  syncDirectory(): Promise<void> {
    return this.dirSync.sync();
  }

  /** Writes a whole message file durably on a spool I/O thread (a recycled file if any). */
  writeWhole(file: string, parts: Buffer[]): Promise<void> {
    const reuse = this.free.pop();
    return this.post({ type: 'commit', seq: ++this.seq, file, parts, ...(reuse ? { reuse } : {}) });
  }

  /**
   * Takes a finished message's file out of the spool. The file leaves the spool directory
   * (recovery never sees it again) before this resolves, to be written over later.
   */
  recycle(file: string): Promise<void> {
    if (path.dirname(file) !== this.dir || !this.workers.length || this.free.length >= FREE_POOL_MAX)
      return fsp.unlink(file).catch(() => undefined);
    const to = path.join(this.freeDir, `${this.run}-${(this.freeCounter++).toString(36)}`);
    return this.post({ type: 'recycle', seq: ++this.seq, file, to }).then(
      () => void this.free.push(to),
      () => fsp.unlink(file).catch(() => undefined),
    );
  }

  /**
   * Reads one spooled message file; undefined when it is incomplete (never acknowledged, or
   * a recycled file caught before it was written over). Throws when corrupt: once the
   * trailer names this file's id the file was finished, so any other mismatch is damage.
   */
  static async readFile(file: string): Promise<{ envelope: Envelope; message: Buffer } | undefined> {
    const data = await fsp.readFile(file);
    if (data.subarray(0, LEGACY_MAGIC.length).toString('latin1') === LEGACY_MAGIC) return readLegacy(data);
    const expectedId = path.basename(file).replace(/\.msg$/, '');
    if (data.length < TRAILER_LEN) return undefined;
    const trailer = data.subarray(data.length - TRAILER_LEN).toString('latin1');
    if (!trailer.startsWith(TRAILER_PREFIX) || !trailer.endsWith('\n')) return undefined;
    const [lengthField, crcField, idField] = trailer.slice(TRAILER_PREFIX.length, -1).split(' ', 3);
    if (idField?.trimEnd() !== expectedId) return undefined;
    const nl = data.indexOf(0x0a);
    if (
      data.subarray(0, MAGIC.length).toString('latin1') !== MAGIC ||
      nl === -1 ||
      nl > data.length - TRAILER_LEN
    )
      throw new Error('header line damaged');
    const envelope = JSON.parse(data.subarray(MAGIC.length, nl).toString('utf8')) as Envelope;
    if (envelope.id !== expectedId) throw new Error(`header names ${envelope.id}`);
    const message = data.subarray(nl + 1, data.length - TRAILER_LEN);
    if (message.length !== Number(lengthField))
      throw new Error(`length ${message.length} does not match trailer ${lengthField}`);
    if (crc32(message).toString(16).padStart(8, '0') !== crcField)
      throw new Error(`CRC-32 of the message does not match trailer ${crcField}`);
    return { envelope, message };
  }

  /**
   * Startup scan. A file whose queue id the database knows (`isKnown`) was complete when its
   * rows were written (rows follow the fsync) and is not read: a restart with 200,000
   * queued messages reads only the few a crash caught between file and rows. Those are
   * read whole: incomplete ones are removed, damaged ones moved to corrupt/.
   */
  async recover(isKnown: (id: string) => boolean = () => false): Promise<RecoveryReport> {
    await this.init();
    const report: RecoveryReport = { messages: [], onDisk: new Set(), incomplete: [], corrupt: [] };
    const all = await fsp.readdir(this.dir);
    const names = all.filter((n) => n.endsWith('.msg')).sort();
    const present = new Set(all);
    // Archive marks whose message is gone (moved to badmail, or never acknowledged).
    for (const n of all)
      if (n.endsWith('.msg.archived') && !present.has(n.slice(0, -'.archived'.length)))
        await fsp.rm(path.join(this.dir, n), { force: true });
    for (const name of names) {
      const file = path.join(this.dir, name);
      const id = name.slice(0, -'.msg'.length);
      if (isKnown(id) && !present.has(`${name}.archived`)) {
        report.onDisk.add(id);
        continue;
      }
      try {
        const read = await Spool.readFile(file);
        if (!read) {
          await fsp.unlink(file);
          report.incomplete.push(name);
          continue;
        }
        const mark = await fsp.readFile(Spool.archiveMarkFor(file), 'utf8').catch(() => undefined);
        if (mark !== undefined) read.envelope.archived = mark;
        report.onDisk.add(id);
        report.messages.push({ envelope: read.envelope, size: read.message.length, file });
      } catch {
        const corruptDir = path.join(path.dirname(this.dir), 'corrupt');
        await fsp.mkdir(corruptDir, { recursive: true, mode: 0o700 });
        await fsp.rename(file, path.join(corruptDir, name));
        report.corrupt.push(name);
      }
    }
    return report;
  }
}
