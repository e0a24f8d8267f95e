// What the main thread (reader) and the writer thread (tracking-writer.ts) share: the
// schema, the statements that write, and the messages they exchange.
import Database from 'better-sqlite3';

/** One events row in column order of INSERT_EVENT: primitives only, so cloning it is cheap. */
export type EventRowValues = (string | number | null)[];

/** Index in EventRowValues of `recipients` (a JSON array of addresses). */
export const RECIPIENTS_COLUMN = 7;

export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    server TEXT NOT NULL,
    event TEXT NOT NULL,
    source TEXT NOT NULL,
    internal_message_id TEXT NOT NULL,
    message_id TEXT,
    sender TEXT,
    recipients TEXT,
    recipient_status TEXT,
    recipient_count INTEGER,
    client_ip TEXT,
    server_ip TEXT,
    connector_id TEXT,
    total_bytes INTEGER,
    related_recipient TEXT,
    reference TEXT,
    subject TEXT,
    return_path TEXT,
    message_info TEXT,
    directionality TEXT
  );
  CREATE INDEX IF NOT EXISTS events_time ON events(time);
  CREATE INDEX IF NOT EXISTS events_mid ON events(message_id);
  CREATE INDEX IF NOT EXISTS events_imid ON events(internal_message_id);
  CREATE INDEX IF NOT EXISTS events_sender ON events(sender);
  CREATE TABLE IF NOT EXISTS event_recipients (event_id INTEGER NOT NULL, recipient TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS event_recipients_r ON event_recipients(recipient);
`;

const INSERT_EVENT = `INSERT INTO events (time, server, event, source, internal_message_id,
  message_id, sender, recipients, recipient_status, recipient_count, client_ip, server_ip, connector_id,
  total_bytes, related_recipient, reference, subject, return_path, message_info, directionality)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Opens the tracking database (WAL, synchronous=NORMAL) and creates the schema if missing. */
export function openTrackingDb(file: string): Database.Database {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(SCHEMA);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Writes batches of events: one transaction a batch, each event with its recipient index rows. */
export function batchWriter(db: Database.Database): (rows: EventRowValues[]) => void {
  const insert = db.prepare(INSERT_EVENT);
  const addRecipient = db.prepare('INSERT INTO event_recipients (event_id, recipient) VALUES (?, ?)');
  return db.transaction((rows: EventRowValues[]) => {
    for (const r of rows) {
      const info = insert.run(...r);
      for (const rcpt of JSON.parse(r[RECIPIENTS_COLUMN] as string) as string[]) {
        addRecipient.run(info.lastInsertRowid, rcpt.toLowerCase());
      }
    }
  });
}

/** Deletes events older than `cutoff` (ms since the epoch); returns how many. */
export function pruneEvents(db: Database.Database, cutoff: number): number {
  return db.transaction(() => {
    db.prepare('DELETE FROM event_recipients WHERE event_id IN (SELECT id FROM events WHERE time < ?)').run(
      cutoff,
    );
    return db.prepare('DELETE FROM events WHERE time < ?').run(cutoff).changes;
  })();
}

/** Main thread → writer. `seq` increases by one a message; the writer answers each in order. */
export type ToWriter =
  | { type: 'batch'; seq: number; rows: EventRowValues[] }
  | { type: 'prune'; seq: number; cutoff: number }
  | { type: 'close'; seq: number };

/** Writer → main thread: message `seq` is done (committed, or failed with `error`). */
export interface FromWriter {
  seq: number;
  /** Events written (batch) or deleted (prune). */
  changes: number;
  error?: string;
}

export interface WriterData {
  file: string;
}
