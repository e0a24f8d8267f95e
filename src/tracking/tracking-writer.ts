// The message tracking writer thread. Why: inserting each tick's events (a row in a table
// with four indexes plus one event_recipients row per recipient, one transaction a batch)
// cost about 7-8% of the main thread in the relay benchmark, and the main thread is the
// bottleneck. This worker owns the only connection that writes tracking.db; MessageTracking
// sends it one batch a tick with postMessage and keeps a separate read connection for
// searches (WAL lets them run side by side). Messages are handled strictly in order, and
// each is answered with its sequence number, so the main thread knows what is committed.
// A failure (disk full, locked, corrupt) is answered as an error and the thread goes on;
// the main thread holds the batch and sends it again.
import { parentPort, workerData } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import {
  batchWriter,
  openTrackingDb,
  pruneEvents,
  type EventRowValues,
  type FromWriter,
  type ToWriter,
  type WriterData,
} from './schema.js';

const port = parentPort;
if (!port) throw new Error('tracking-writer.js runs only as the worker thread of MessageTracking');
const { file } = workerData as WriterData;

let db: Database.Database | undefined;
let writeBatch: ((rows: EventRowValues[]) => void) | undefined;

/** The connection, opened on first use and again after a failed open. */
function connection(): { db: Database.Database; writeBatch: (rows: EventRowValues[]) => void } {
  if (!db || !writeBatch) {
    const opened = openTrackingDb(file);
    try {
      writeBatch = batchWriter(opened);
    } catch (err) {
      opened.close();
      throw err;
    }
    db = opened;
  }
  return { db, writeBatch };
}

port.on('message', (m: ToWriter) => {
  const reply: FromWriter = { seq: m.seq, changes: 0 };
  try {
    switch (m.type) {
      case 'batch':
        connection().writeBatch(m.rows);
        reply.changes = m.rows.length;
        break;
      case 'prune':
        reply.changes = pruneEvents(connection().db, m.cutoff);
        break;
      case 'close':
        db?.close();
        db = undefined;
        writeBatch = undefined;
        break;
    }
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    reply.error =
      m.type === 'batch'
        ? `${m.rows.length} event(s) not recorded: ${text}`
        : m.type === 'prune'
          ? `retention purge failed: ${text}`
          : `closing the writer connection failed: ${text}`;
  }
  port.postMessage(reply);
});
