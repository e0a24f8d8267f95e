// The categorizer stage against a fake queue core (a plain object, no casts) when the
// directory cannot answer: nothing is decided, each recipient waits for the directory's
// retry interval, and the message's own clock still runs (a delay notice when due, 4.4.7
// with a failure DSN at expiry), so an outage never keeps mail forever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { CategorizerWorker, type CategorizerQueue } from './worker.js';
import type { MessageRow, RecipientRow } from '../queue/store/rows.js';
import type { Verdict } from '../queue/outcomes.js';
import { dsnFor } from '../dsn/notify.js';
import { DirectoryUnavailableError } from '../directory/unavailable.js';

const now = Date.now();
const HOUR = 3600_000;

const message = (id: string, ageMs: number): MessageRow => ({
  id,
  file: `${id}.msg`,
  sender: 'alice@example.com',
  size: 100,
  received_at: now - ageMs,
  envelope: JSON.stringify({ messageId: `<${id}@test>`, recipients: ['bob@example.com'], client: {} }),
  frozen: 0,
  is_dsn: 0,
  dsn_count: 0,
});

const row = (id: number, messageId: string, over: Partial<RecipientRow> = {}): RecipientRow => ({
  id,
  message_id: messageId,
  address: 'bob@example.com',
  original: 'bob@example.com',
  orcpt: null,
  notify: null,
  queue: 'Messages awaiting directory lookup',
  next_hop: null,
  state: 'retry',
  outcome: null,
  status: null,
  diagnostic: null,
  attempts: 3,
  next_attempt: 0,
  first_failure: null,
  last_error: null,
  dsn_pending: null,
  delay_notified: 0,
  route: null,
  recheck: 0,
  remote: 0,
  remote_mta: null,
  hold_reason: null,
  deadline: null,
  concealed: 0,
  ...over,
});

test('a directory that cannot answer defers, and the message still gets its delay notice and expiry', async () => {
  const messages = [message('fresh', 60_000), message('late', 13 * HOUR), message('old', 3 * 24 * HOUR)];
  const rows: Record<string, RecipientRow> = {
    fresh: row(1, 'fresh'),
    late: row(2, 'late'),
    old: row(3, 'old', { delay_notified: 1 }),
  };
  const recorded: { id: number; verdict: Verdict }[] = [];
  const woke: string[] = [];
  const failures: string[] = [];
  const queue: CategorizerQueue = {
    store: {
      dueMessages: () => messages,
      dueRowsOf: (id) => [rows[id]!],
      defer: (fn) => fn(),
      flush: () => undefined,
      place: () => undefined,
      insertPlaced: () => undefined,
      queueFrozen: () => false,
      transaction: (fn) => fn(),
      record: (results) => void recorded.push(...results.map((r) => ({ id: r.row.id, verdict: r.verdict }))),
      nextRetryIn: () => undefined,
    },
    bodies: { head: async () => '' },
    activeMessages: new Set(),
    wake: (stage) => void woke.push(stage),
    finish: async () => undefined,
  };
  const worker = new CategorizerWorker(queue, {
    categorizer: {
      categorize: async () => {
        throw new DirectoryUnavailableError('ldap://127.0.0.1:389: ECONNREFUSED');
      },
    },
    openNextHop: () => undefined,
    notifyPolicy: dsnFor,
    remoteRetry: {
      glitchInterval: 60,
      glitchCount: 3,
      first: 600,
      second: 600,
      third: 600,
      subsequent: 900,
      delayNotification: 12 * 3600,
      expiration: 2 * 24 * 3600,
    },
    track: () => undefined,
    recordFailures: (_source, _log, _message, failed) => void failures.push(...failed.map((f) => f.status)),
    log: pino({ level: 'silent' }),
    directoryRetrySeconds: 30,
  });
  await worker.runBatch();
  const verdict = (id: number) => recorded.find((r) => r.id === id)!.verdict;
  // Within its delay time: waits for the directory's interval, no DSN.
  const fresh = verdict(1);
  assert.equal(fresh.kind, 'retry');
  assert.ok(fresh.kind === 'retry' && Math.abs(fresh.nextAttempt - (now + 30_000)) < 5000);
  assert.equal(fresh.dsn, null);
  assert.ok(fresh.kind === 'retry' && fresh.status === '4.4.3');
  // Past the delay notification time: still waiting, and the sender is told.
  const late = verdict(2);
  assert.equal(late.kind, 'retry');
  assert.equal(late.dsn, 'delay');
  // Past expiration: 4.4.7 with a failure DSN, never kept forever.
  const old = verdict(3);
  assert.equal(old.kind, 'failed');
  assert.ok(old.kind === 'failed' && old.status === '4.4.7' && /directory/i.test(old.lastError));
  assert.equal(old.dsn, 'failure');
  assert.deepEqual(failures, ['4.4.7']);
  assert.ok(woke.includes('dsn'));
});
