// The counting triggers agree with a scan after any sequence of row changes, and a queue
// database from before typed holds is migrated on open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { openSchema, SCHEMA_VERSION } from './schema.js';

function scan(db: Database.Database) {
  return db
    .prepare(
      `SELECT queue, COUNT(DISTINCT message_id) AS messages, COUNT(*) AS recipients,
         SUM(state = 'retry' AND IFNULL(hold_reason, '') NOT IN ('schedule', 'remote-triggered')) AS retrying,
         SUM(hold_reason IS 'schedule') AS scheduled, SUM(hold_reason IS 'remote-triggered') AS remote_held,
         (SELECT SUM(size) FROM messages WHERE id IN (SELECT message_id FROM recipients x
            WHERE x.queue = r.queue AND x.state != 'done')) AS bytes
       FROM recipients r WHERE state != 'done' GROUP BY queue ORDER BY queue`,
    )
    .all();
}

function counted(db: Database.Database) {
  return db
    .prepare(
      `SELECT queue, messages, recipients, retrying, scheduled, remote_held, bytes FROM queue_counts
       WHERE recipients > 0 ORDER BY queue`,
    )
    .all();
}

test('queue counts kept by triggers equal a scan after random changes', () => {
  const db = new Database(':memory:');
  openSchema(db);
  const queues = ['A', 'B', 'C'];
  const states = ['ready', 'retry', 'done'];
  const holds = [null, 'schedule', 'remote-triggered', 'link-down'];
  let seed = 7;
  const pick = <T>(list: T[]): T => list[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % list.length]!;
  for (let m = 0; m < 30; m++) {
    db.prepare(
      `INSERT INTO messages (id, file, sender, size, received_at, envelope) VALUES (?, '', '', ?, 0, '{}')`,
    ).run(`m${m}`, 100 + m);
    for (let r = 0; r < 1 + (m % 4); r++)
      db.prepare(
        `INSERT INTO recipients (message_id, address, original, queue, state) VALUES (?, 'a', 'a', ?, 'ready')`,
      ).run(`m${m}`, pick(queues));
  }
  for (let i = 0; i < 400; i++) {
    const id = 1 + ((i * 37) % 70);
    db.prepare('UPDATE recipients SET queue = ?, state = ?, hold_reason = ? WHERE id = ?').run(
      pick(queues),
      pick(states),
      pick(holds),
      id,
    );
    if (i % 97 === 0) db.prepare('DELETE FROM recipients WHERE message_id = ?').run(`m${i % 30}`);
    assert.deepEqual(counted(db), scan(db), `after change ${i}`);
  }
});

test('a version 1 database: hold sentinels become typed holds, counts and remote queues are built', () => {
  const db = new Database(':memory:');
  db.exec(`
    CREATE TABLE messages (id TEXT PRIMARY KEY, file TEXT NOT NULL, sender TEXT NOT NULL, size INTEGER NOT NULL,
      received_at INTEGER NOT NULL, envelope TEXT NOT NULL, frozen INTEGER NOT NULL DEFAULT 0,
      is_dsn INTEGER NOT NULL DEFAULT 0, dsn_count INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE recipients (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, address TEXT NOT NULL,
      original TEXT NOT NULL, orcpt TEXT, notify TEXT, queue TEXT NOT NULL, next_hop TEXT, state TEXT NOT NULL,
      outcome TEXT, status TEXT, diagnostic TEXT, attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt INTEGER NOT NULL DEFAULT 0, first_failure INTEGER, last_error TEXT, dsn_pending TEXT,
      delay_notified INTEGER NOT NULL DEFAULT 0, route TEXT, recheck INTEGER NOT NULL DEFAULT 0,
      remote INTEGER NOT NULL DEFAULT 0, remote_mta TEXT);
    CREATE TABLE queue_flags (name TEXT PRIMARY KEY, frozen INTEGER NOT NULL);
    INSERT INTO messages VALUES ('m1', 'f', 'a@x', 10, 0, '{}', 0, 0, 0), ('m2', 'f', 'a@x', 20, 0, '{}', 0, 0, 0);
    INSERT INTO recipients (message_id, address, original, queue, next_hop, state, last_error, remote) VALUES
      ('m1', 'b@y', 'b@y', 'Conn', 'hold', 'retry', 'Connector schedule: outside its windows', 0),
      ('m1', 'c@y', 'c@y', 'Conn', 'hold', 'retry', 'Remote triggered delivery: held until ...', 0),
      ('m2', 'd@z', 'd@z', 'Final destination currently unreachable', 'hold', 'retry', 'no path', 0),
      ('m2', 'e@w', 'e@w', 'w.test', '{"type":"dns","domain":"w.test"}', 'retry', '451 4.4.1 down', 1);
  `);
  assert.deepEqual(openSchema(db), { migratedFrom: 0 });
  assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  const holds = db.prepare('SELECT hold_reason, next_hop FROM recipients ORDER BY id').all();
  assert.deepEqual(holds, [
    { hold_reason: 'schedule', next_hop: null },
    { hold_reason: 'remote-triggered', next_hop: null },
    { hold_reason: 'link-down', next_hop: null },
    { hold_reason: null, next_hop: '{"type":"dns","domain":"w.test"}' },
  ]);
  assert.deepEqual(db.prepare('SELECT name, destination FROM remote_queues').all(), [
    { name: 'w.test', destination: '{"type":"dns","domain":"w.test"}' },
  ]);
  assert.deepEqual(counted(db), scan(db));
  // Opening again changes nothing.
  assert.deepEqual(openSchema(db), {});
});

test('a version 2 database gains recipients.concealed, 0 for the rows it has', () => {
  const db = new Database(':memory:');
  openSchema(db);
  db.exec('ALTER TABLE recipients DROP COLUMN concealed');
  db.pragma('user_version = 2');
  db.exec(
    `INSERT INTO recipients (message_id, address, original, queue, state) VALUES ('m', 'a@x', 'a@x', 'Q', 'ready')`,
  );
  assert.deepEqual(openSchema(db), { migratedFrom: 2 });
  assert.deepEqual(db.prepare('SELECT concealed FROM recipients').all(), [{ concealed: 0 }]);
  assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
});
