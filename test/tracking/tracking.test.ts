// Message tracking with its writer thread: a search sees every event written before it,
// close() commits the last batch, purges run on the writer, a failing write is reported and
// tracking goes on, and with tracking switched off no thread starts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { MessageTracking, type TrackingEvent } from '../../src/tracking/tracking.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-tracking-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const fresh = () => path.join(dir, `tracking-${++n}.db`);
const on = { enabled: true, logSubject: false, retentionDays: 7 };

function event(i: number, recipients = ['Bob@Example.com', 'carol@example.com']): TrackingEvent {
  return {
    event: 'RECEIVE',
    source: 'SMTP',
    internalMessageId: `id-${i}`,
    messageId: `<m${i}@test>`,
    sender: 'Alice@Example.com',
    recipients,
    totalBytes: 100 + i,
    subject: 'not kept',
  };
}

/** Counts rows with a connection of its own, as another process would. */
function count(file: string): { events: number; recipients: number } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      events: (db.prepare('SELECT count(*) AS c FROM events').get() as { c: number }).c,
      recipients: (db.prepare('SELECT count(*) AS c FROM event_recipients').get() as { c: number }).c,
    };
  } finally {
    db.close();
  }
}

test('a search sees every event written before it, with the fields as before', async () => {
  const t = new MessageTracking(fresh(), 'mail1.test.example', on);
  try {
    const seen: string[] = [];
    t.listeners.push((e) => seen.push(e.internalMessageId));
    for (let i = 0; i < 50; i++) t.write(event(i));
    assert.equal(seen.length, 50, 'listeners run synchronously');
    assert.ok(t.writerRunning);
    const all = await t.search({});
    assert.equal(all.length, 50);
    assert.deepEqual(
      all.map((r) => r.internalMessageId),
      Array.from({ length: 50 }, (_, i) => `id-${i}`),
    );
    const r = all[7]!;
    assert.equal(r.serverHostname, 'mail1.test.example');
    assert.equal(r.sender, 'alice@example.com');
    assert.deepEqual(r.recipients, ['Bob@Example.com', 'carol@example.com']);
    assert.equal(r.recipientCount, 2);
    assert.equal(r.totalBytes, 107);
    assert.equal(r.subject, undefined, 'logSubject is off');
    assert.equal((await t.search({ recipient: 'BOB@example.com' })).length, 50);
    assert.equal((await t.search({ messageId: '<m3@test>' })).length, 1);
    // Written after the first search, seen by the next one at once.
    t.write(event(99, ['dave@example.com']));
    assert.equal((await t.search({ recipient: 'dave@example.com' }))[0]?.internalMessageId, 'id-99');
  } finally {
    await t.close();
  }
  assert.equal(t.writerRunning, false);
});

test('close() commits the events still pending', async () => {
  const file = fresh();
  const t = new MessageTracking(file, 'mail1.test.example', on);
  for (let i = 0; i < 20; i++) t.write(event(i));
  await t.close();
  assert.deepEqual(count(file), { events: 20, recipients: 40 });
  t.write(event(21)); // after close: counted by listeners only, never an error
  await t.close();
});

test('retention purge runs on the writer and counts what it deleted', async () => {
  const t = new MessageTracking(fresh(), 'mail1.test.example', on);
  try {
    for (let i = 0; i < 5; i++) t.write(event(i));
    assert.equal(await t.prune(), 0);
    assert.equal(await t.prune(Date.now() + 8 * 86400_000), 5);
    assert.deepEqual(await t.search({}), []);
    assert.deepEqual(await t.search({ recipient: 'bob@example.com' }), []);
  } finally {
    await t.close();
  }
});

test('a failed write is reported, its events are held and written once the database takes them', async () => {
  const file = fresh();
  const t = new MessageTracking(file, 'mail1.test.example', on);
  const errors: Error[] = [];
  t.onError = (err) => errors.push(err);
  try {
    t.write(event(1));
    await t.flushed();
    // Break the writer's second insert from outside, as a damaged database would.
    const other = new Database(file);
    other.exec('DROP TABLE event_recipients');
    t.write(event(2));
    await t.flushed();
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /1 event\(s\) not recorded: .*event_recipients/);
    assert.ok(t.writerRunning, 'the writer thread is still there');
    other.exec('CREATE TABLE event_recipients (event_id INTEGER NOT NULL, recipient TEXT NOT NULL)');
    other.close();
    t.write(event(3));
    const ids = (await t.search({})).map((r) => r.internalMessageId);
    assert.deepEqual(ids, ['id-1', 'id-2', 'id-3'], 'the failed batch was held and written, in order');
    // Events 2 and 3, two recipients each (event 1's went with the dropped table).
    assert.equal(count(file).recipients, 4, 'event 2 was written whole, once');
  } finally {
    await t.close();
  }
});

test('beyond maxHeldEvents events are lost, and a GAP event says how many and when', async () => {
  const file = fresh();
  const t = new MessageTracking(file, 'mail1.test.example', { ...on, maxHeldEvents: 2 });
  const warnings: string[] = [];
  t.onError = () => undefined;
  t.onWarning = (text) => warnings.push(text);
  try {
    t.write(event(1));
    await t.flushed();
    const other = new Database(file);
    other.exec('DROP TABLE event_recipients');
    const first = Date.now();
    for (let i = 2; i <= 6; i++) {
      t.write(event(i));
      await t.flushed();
    }
    const last = Date.now();
    assert.equal(warnings.length, 1, warnings.join('\n'));
    other.exec('CREATE TABLE event_recipients (event_id INTEGER NOT NULL, recipient TEXT NOT NULL)');
    other.close();
    const rows = await t.search({});
    assert.deepEqual(
      rows.map((r) => `${r.event} ${r.internalMessageId}`),
      ['RECEIVE id-1', 'RECEIVE id-2', 'RECEIVE id-3', 'GAP '],
    );
    const gap = rows[3]!;
    assert.equal(gap.source, 'TRACKING');
    const m = /^3 event\(s\) not recorded between (\S+) and (\S+): .*event_recipients/.exec(
      gap.messageInfo ?? '',
    );
    assert.ok(m, gap.messageInfo);
    assert.ok(Date.parse(m[1]!) >= first - 5 && Date.parse(m[2]!) <= last + 5, gap.messageInfo);
    assert.equal(gap.dateTime, m[1]);
    // Found by time, as the administrator searching that period would.
    assert.equal(
      (await t.search({ event: 'GAP', start: new Date(first - 5), end: new Date(last + 5) })).length,
      1,
    );
  } finally {
    await t.close();
  }
});

test('with tracking switched off no writer thread starts', async () => {
  const file = fresh();
  const t = new MessageTracking(file, 'mail1.test.example', { ...on, enabled: false });
  let heard = 0;
  t.listeners.push(() => heard++);
  t.write(event(1));
  t.write(event(2));
  assert.equal(heard, 2);
  assert.deepEqual(await t.search({}), []);
  assert.equal(await t.prune(), 0);
  assert.equal(t.writerRunning, false);
  await t.close();
  assert.deepEqual(count(file), { events: 0, recipients: 0 });
});

test('an idle writer thread never keeps the process alive, and a busy one finishes first', () => {
  const file = fresh();
  const module = fileURLToPath(new URL('../../src/tracking/tracking.js', import.meta.url));
  // No close(): the process must still end by itself, after the batch is committed.
  const script = `
    import { MessageTracking } from ${JSON.stringify(module)};
    const t = new MessageTracking(${JSON.stringify(file)}, 'x', { enabled: true, logSubject: false, retentionDays: 7 });
    for (let i = 0; i < 10; i++) t.write({ event: 'SUBMIT', source: 'X', internalMessageId: 'i' + i, recipients: ['a@b'] });
  `;
  const child = path.join(dir, 'no-close.mjs');
  writeFileSync(child, script);
  const r = spawnSync(process.execPath, [child], {
    timeout: 20_000,
    encoding: 'utf8',
  });
  assert.equal(r.error, undefined, 'the process ended by itself');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.deepEqual(count(file), { events: 10, recipients: 10 });
});
