// NAME      queue schema: tables, indexes, counting triggers, migrations of queue.db
// DESCRIPTION
//   messages: one row a message (its spool file, envelope, freeze flag).
//   recipients: one row a recipient, moving through the named queues. An open row has
//   state 'ready' or 'retry'; a final one 'done' until its message is finished.
//   remote_queues: one row a next hop with mail, holding the queue's own retry time
//   (the next hop is down) so a dead destination costs one attempt per interval.
//   queue_counts: per queue, open messages/recipients/bytes and hold counts, kept by
//   triggers in the same transaction as the rows: the viewer and /metrics never scan.
//   Every query a stage runs per batch is served by an index on due rows.
// MIGRATION  user_version 0/1 (before typed holds) -> 2: next_hop = 'hold' becomes
//   hold_reason (from the last error's words), remote queues and counts are built once.
//   2 -> 3: recipients.concealed (0 for every existing row).
import type Database from 'better-sqlite3';

export const SCHEMA_VERSION = 3;

const TABLES = `
  CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, file TEXT NOT NULL, sender TEXT NOT NULL, size INTEGER NOT NULL,
    received_at INTEGER NOT NULL, envelope TEXT NOT NULL, frozen INTEGER NOT NULL DEFAULT 0,
    is_dsn INTEGER NOT NULL DEFAULT 0, dsn_count INTEGER NOT NULL DEFAULT 0);
  CREATE TABLE IF NOT EXISTS recipients (
    id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, address TEXT NOT NULL, original TEXT NOT NULL,
    orcpt TEXT, notify TEXT, queue TEXT NOT NULL, next_hop TEXT, state TEXT NOT NULL,
    outcome TEXT, status TEXT, diagnostic TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL DEFAULT 0, first_failure INTEGER, last_error TEXT,
    dsn_pending TEXT, delay_notified INTEGER NOT NULL DEFAULT 0, route TEXT,
    recheck INTEGER NOT NULL DEFAULT 0, remote INTEGER NOT NULL DEFAULT 0, remote_mta TEXT,
    hold_reason TEXT, deadline INTEGER, concealed INTEGER NOT NULL DEFAULT 0);
  CREATE TABLE IF NOT EXISTS queue_flags (name TEXT PRIMARY KEY, frozen INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS remote_queues (
    name TEXT PRIMARY KEY, destination TEXT NOT NULL, retry_at INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, last_error TEXT);
  CREATE TABLE IF NOT EXISTS queue_counts (
    queue TEXT PRIMARY KEY, messages INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
    recipients INTEGER NOT NULL DEFAULT 0, retrying INTEGER NOT NULL DEFAULT 0,
    scheduled INTEGER NOT NULL DEFAULT 0, remote_held INTEGER NOT NULL DEFAULT 0);
`;

const INDEXES = `
  DROP INDEX IF EXISTS recipients_remote;
  DROP INDEX IF EXISTS recipients_message;
  CREATE INDEX IF NOT EXISTS recipients_work ON recipients(queue, state, next_attempt);
  CREATE INDEX IF NOT EXISTS recipients_by_message ON recipients(message_id, queue, state);
  CREATE INDEX IF NOT EXISTS recipients_dsn ON recipients(dsn_pending) WHERE dsn_pending IS NOT NULL;
  CREATE INDEX IF NOT EXISTS recipients_held ON recipients(next_attempt) WHERE hold_reason IS NOT NULL;
  CREATE INDEX IF NOT EXISTS recipients_remote_retry ON recipients(next_attempt)
    WHERE remote = 1 AND state = 'retry';
  CREATE INDEX IF NOT EXISTS recipients_deadline ON recipients(deadline) WHERE deadline IS NOT NULL;
  CREATE INDEX IF NOT EXISTS messages_received ON messages(received_at);
`;

/** A retrying row counts as Retry unless a schedule or ETRN/TURN holds it. */
const RETRYING_HOLD = `IFNULL(ROW.hold_reason, '') NOT IN ('schedule', 'remote-triggered')`;

/** Adds (sign +1) or removes (-1) one open row's share of its queue's counts. */
function countRow(row: 'NEW' | 'OLD', sign: '+' | '-'): string {
  // Another open row of the same message in the same queue: the message is counted once.
  // A separate statement, so the check runs once per row change (in the SET list SQLite
  // paid for it several times over).
  const others = `EXISTS (SELECT 1 FROM recipients o WHERE o.message_id = ${row}.message_id
      AND o.queue = ${row}.queue AND o.state IN ('ready', 'retry') AND o.id != ${row}.id)`;
  return `
    INSERT INTO queue_counts (queue) VALUES (${row}.queue) ON CONFLICT DO NOTHING;
    UPDATE queue_counts SET
      recipients = recipients ${sign} 1,
      retrying = retrying ${sign} (${row}.state = 'retry' AND ${RETRYING_HOLD.replace(/ROW/g, row)}),
      scheduled = scheduled ${sign} (${row}.hold_reason IS 'schedule'),
      remote_held = remote_held ${sign} (${row}.hold_reason IS 'remote-triggered')
    WHERE queue = ${row}.queue;
    UPDATE queue_counts SET
      messages = messages ${sign} 1,
      bytes = bytes ${sign} IFNULL((SELECT size FROM messages WHERE id = ${row}.message_id), 0)
    WHERE queue = ${row}.queue AND NOT ${others};`;
}

const TRIGGERS = `
  CREATE TRIGGER IF NOT EXISTS recipients_count_insert AFTER INSERT ON recipients
    WHEN NEW.state != 'done' BEGIN ${countRow('NEW', '+')} END;
  CREATE TRIGGER IF NOT EXISTS recipients_count_delete AFTER DELETE ON recipients
    WHEN OLD.state != 'done' BEGIN ${countRow('OLD', '-')} END;
  CREATE TRIGGER IF NOT EXISTS recipients_count_leave AFTER UPDATE OF queue, state, hold_reason ON recipients
    WHEN OLD.state != 'done' BEGIN ${countRow('OLD', '-')} END;
  CREATE TRIGGER IF NOT EXISTS recipients_count_enter AFTER UPDATE OF queue, state, hold_reason ON recipients
    WHEN NEW.state != 'done' BEGIN ${countRow('NEW', '+')} END;
`;

/** Creates or migrates the schema; returns what the migration did, for the log. */
export function openSchema(db: Database.Database): { migratedFrom?: number } {
  const version = db.pragma('user_version', { simple: true }) as number;
  const existed = db.prepare(`SELECT 1 FROM sqlite_master WHERE name = 'recipients'`).get() !== undefined;
  db.exec(TABLES);
  const columns = new Set((db.pragma('table_info(recipients)') as { name: string }[]).map((c) => c.name));
  const migrate = db.transaction(() => {
    if (!columns.has('hold_reason')) db.exec('ALTER TABLE recipients ADD COLUMN hold_reason TEXT');
    if (!columns.has('deadline')) db.exec('ALTER TABLE recipients ADD COLUMN deadline INTEGER');
    if (!columns.has('concealed'))
      db.exec('ALTER TABLE recipients ADD COLUMN concealed INTEGER NOT NULL DEFAULT 0');
    // Holds were a 'hold' next hop with the reason only in the error text.
    db.exec(`
      UPDATE recipients SET hold_reason = CASE
          WHEN last_error LIKE 'Connector schedule%' THEN 'schedule'
          WHEN last_error LIKE 'Remote triggered delivery%' THEN 'remote-triggered'
          WHEN last_error LIKE 'no server%' OR last_error LIKE 'no route%' THEN 'no-route'
          ELSE 'link-down' END,
        next_hop = NULL
      WHERE next_hop = 'hold';
      INSERT OR IGNORE INTO remote_queues (name, destination)
        SELECT queue, MAX(next_hop) FROM recipients WHERE remote = 1 AND state != 'done' GROUP BY queue;
      DELETE FROM queue_counts;
      INSERT INTO queue_counts (queue, messages, bytes, recipients, retrying, scheduled, remote_held)
        SELECT queue, COUNT(DISTINCT r.message_id),
          (SELECT IFNULL(SUM(size), 0) FROM messages WHERE id IN
            (SELECT message_id FROM recipients x WHERE x.queue = r.queue AND x.state != 'done')),
          COUNT(*), SUM(state = 'retry' AND IFNULL(hold_reason, '') NOT IN ('schedule', 'remote-triggered')), SUM(hold_reason IS 'schedule'),
          SUM(hold_reason IS 'remote-triggered')
        FROM recipients r WHERE state != 'done' GROUP BY queue;
    `);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
  if (version < SCHEMA_VERSION) migrate();
  db.exec(INDEXES);
  // Triggers are dropped and made again: a new version's counting replaces the old.
  for (const name of ['insert', 'delete', 'leave', 'enter'])
    db.exec(`DROP TRIGGER IF EXISTS recipients_count_${name}`);
  db.exec(TRIGGERS);
  return version < SCHEMA_VERSION && existed ? { migratedFrom: version } : {};
}
