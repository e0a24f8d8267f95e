// A spool I/O thread. The receive path used to make six asynchronous file system calls
// per message (rename, open, writev, fdatasync, close, and a share of a directory fsync),
// and the main thread paid for each one's request and completion: the largest cost of the
// relay path after SQLite. Here the same calls are made synchronously on a thread of
// their own, and the main thread pays for one message out and one reply back.
//
// The main thread keeps the pool of finished files (in <spool>-free) and names the one a
// new message is written over: no inode is created or unlinked in steady state. Jobs that
// arrive together are done together and share one fsync of the spool directory (group
// commit), before any of them is answered.
import { parentPort, workerData } from 'node:worker_threads';
import fs from 'node:fs';

export interface SpoolWorkerData {
  dir: string;
}

export type SpoolJob =
  /** Writes a whole message file; `reuse` is a pool file to write over, if any. */
  | { type: 'commit'; seq: number; file: string; parts: Uint8Array[]; reuse?: string }
  /** Moves a finished file into the pool under the name `to`. */
  | { type: 'recycle'; seq: number; file: string; to: string };

export interface SpoolReply {
  seq: number;
  error?: string;
  /** The system error code (ENOSPC, EIO, ...), so the receive side can tell a full disk. */
  code?: string;
}

const codeOf = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code;

const data = workerData as SpoolWorkerData;
const port = parentPort!;
let queued: SpoolJob[] = [];
let scheduled = false;

function openForWrite(file: string, reuse: string | undefined): { fd: number; previousLength: number } {
  if (reuse) {
    try {
      fs.renameSync(reuse, file);
      const fd = fs.openSync(file, fs.constants.O_WRONLY);
      return { fd, previousLength: fs.fstatSync(fd).size };
    } catch {
      // removed by hand from the pool directory: a new file it is
    }
  }
  return { fd: fs.openSync(file, 'wx', 0o600), previousLength: 0 };
}

function commit(job: Extract<SpoolJob, { type: 'commit' }>): void {
  const { fd, previousLength } = openForWrite(job.file, job.reuse);
  try {
    let written = 0;
    const total = job.parts.reduce((n, p) => n + p.length, 0);
    // writev may write less than asked: carry on from where it stopped.
    let parts = job.parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length));
    while (written < total) {
      const n = fs.writevSync(fd, parts, written);
      written += n;
      let skip = n;
      while (parts.length && skip >= parts[0]!.length) skip -= parts.shift()!.length;
      if (skip && parts.length) parts[0] = parts[0]!.subarray(skip);
      parts = parts.filter((p) => p.length > 0);
    }
    if (previousLength > total) fs.ftruncateSync(fd, total);
    fs.fdatasyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(job.file, { force: true });
    throw err;
  }
  fs.closeSync(fd);
}

function syncDirectory(): void {
  const fd = fs.openSync(data.dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function run(): void {
  scheduled = false;
  const jobs = queued;
  queued = [];
  const replies: SpoolReply[] = [];
  const committed: { seq: number; file: string }[] = [];
  for (const job of jobs) {
    try {
      if (job.type === 'commit') {
        commit(job);
        committed.push({ seq: job.seq, file: job.file });
      } else {
        fs.renameSync(job.file, job.to);
        replies.push({ seq: job.seq });
      }
    } catch (err) {
      replies.push({
        seq: job.seq,
        error: err instanceof Error ? err.message : String(err),
        code: codeOf(err),
      });
    }
  }
  if (committed.length) {
    try {
      syncDirectory();
      for (const c of committed) replies.push({ seq: c.seq });
    } catch (err) {
      // Not acknowledged, so not kept: a later recovery must not deliver them.
      const error = `fsync of the spool directory: ${err instanceof Error ? err.message : String(err)}`;
      for (const c of committed) {
        fs.rmSync(c.file, { force: true });
        replies.push({ seq: c.seq, error, code: codeOf(err) });
      }
    }
  }
  port.postMessage(replies);
}

port.on('message', (job: SpoolJob) => {
  queued.push(job);
  // Everything that arrived in this turn is done as one batch.
  if (!scheduled) {
    scheduled = true;
    setImmediate(run);
  }
});
