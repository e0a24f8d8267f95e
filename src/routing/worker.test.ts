// The routing stage's decisions against a fake queue core (a plain object, no casts): a
// recipient with an open next hop moves to its remote queue, a connector schedule holds
// one with a typed reason, a routing failure is final with the NDR its NOTIFY asks for,
// and held mail past its expiration fails with 4.4.7.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { RoutingWorker, type RoutingQueue } from './worker.js';
import type { NextHop } from './next-hop.js';
import type { RecipientRow } from '../queue/store/rows.js';
import type { RoutingFacts } from '../queue/store/holds.js';
import type { Placement } from '../queue/store/queue-store.js';
import { dsnFor } from '../dsn/notify.js';

const now = Date.now();
const row = (
  id: number,
  address: string,
  over: Partial<RecipientRow & RoutingFacts> = {},
): RecipientRow & RoutingFacts => ({
  id,
  message_id: `m${id}`,
  address,
  original: address,
  orcpt: null,
  notify: null,
  queue: 'Messages waiting to be routed',
  next_hop: null,
  state: 'ready',
  outcome: null,
  status: null,
  diagnostic: null,
  attempts: 0,
  next_attempt: 0,
  first_failure: null,
  last_error: null,
  dsn_pending: null,
  delay_notified: 0,
  route: JSON.stringify({ kind: 'remote', domain: address.split('@')[1] }),
  recheck: 0,
  remote: 0,
  remote_mta: null,
  hold_reason: null,
  deadline: null,
  concealed: 0,
  sender: 'alice@example.com',
  received_at: now - 1000,
  size: 100,
  is_dsn: 0,
  priority: null,
  header_message_id: null,
  ...over,
});

test('routing places, holds and fails recipients through the queue core it is given', async () => {
  const placed: [number, Placement][] = [];
  const held: [number, string, string, number][] = [];
  const failed: [number, string, string | null][] = [];
  const woke: string[] = [];
  const finished: string[] = [];
  const rows = [
    row(1, 'a@open.test'),
    row(2, 'b@schedule.test'),
    row(3, 'c@restricted.test'),
    row(4, 'd@schedule.test', {
      received_at: now - 3 * 86400_000,
      queue: 'Nightly',
      hold_reason: 'schedule',
      state: 'retry',
    }),
  ];
  const queue: RoutingQueue = {
    store: {
      place: (id, _address, p) => void placed.push([id, p]),
      queueFrozen: () => false,
      transaction: (fn) => fn(),
      holds: {
        dueForRouting: () => rows,
        fail: (id, status, _diagnostic, _text, dsn) => void failed.push([id, status, dsn]),
        hold: (id, q, reason, until) => void held.push([id, q, reason, until]),
        nextHoldDue: () => undefined,
        releaseHoldsFor: () => undefined,
      },
      remoteQueues: {
        all: () => [],
        returnToRouting: () => ({ returned: 0, kept: 0 }),
        releaseAll: () => undefined,
      },
    },
    wake: (stage) => void woke.push(stage),
    finish: async (ids) => void finished.push(...ids),
  };
  const route = (r: { kind: string; domain?: string }): NextHop =>
    r.domain === 'open.test'
      ? { queue: 'open.test', destination: { type: 'dns', domain: 'open.test' } }
      : r.domain === 'schedule.test'
        ? {
            queue: 'Nightly',
            retryAt: now + 3600_000,
            hold: 'schedule',
            reason: 'Connector schedule: outside its windows',
          }
        : {
            fail: {
              code: 550,
              status: '5.7.1',
              text: 'The sender is not allowed to send to this address space.',
            },
          };
  const retry = {
    glitchInterval: 60,
    glitchCount: 3,
    first: 600,
    second: 600,
    third: 600,
    subsequent: 900,
    delayNotification: 43200,
    expiration: 172800,
  };
  const worker = new RoutingWorker(queue, {
    route: (r) => route(r as { kind: string; domain?: string }),
    notifyPolicy: dsnFor,
    remoteRetry: retry,
    recordFailures: () => undefined,
    log: pino({ level: 'silent' }),
  });
  assert.equal(await worker.runBatch(), false);
  assert.deepEqual(
    placed.map(([id, p]) => [id, p.queue, p.remote, p.nextHop, p.deadline]),
    [[1, 'open.test', true, '{"type":"dns","domain":"open.test"}', now - 1000 + 43200_000]],
  );
  assert.deepEqual(held, [[2, 'Nightly', 'schedule', now + 3600_000]]);
  assert.deepEqual(failed, [
    [3, '5.7.1', 'failure'],
    [4, '4.4.7', 'failure'],
  ]);
  assert.deepEqual(woke, ['dsn', 'remote delivery']);
  assert.deepEqual(finished.sort(), ['m3', 'm4']);
});

test('a link state change takes back the mail of unusable next hops, Active rows when their round ends', async () => {
  const remote = (name: string, destination: object) => ({
    name,
    destination: JSON.stringify(destination),
    retry_at: 0,
    failures: 0,
    last_error: null,
  });
  const queues = [
    remote('london1.org.test', { type: 'server', name: 'LONDON1', host: '127.0.0.1', port: 25 }),
    remote('tokyo1.org.test', { type: 'server', name: 'TOKYO1', host: '127.0.0.1', port: 25 }),
    remote('Internet .net', { type: 'smarthost', hosts: ['[192.0.2.1]'], connector: 'Internet .net' }),
    remote('contoso.com', { type: 'dns', domain: 'contoso.com' }),
  ];
  // London's queue holds m1 (Active in a round) and m2.
  const open = new Map([['london1.org.test', ['m1', 'm2']]]);
  const active = new Set(['london1.org.test|m1']);
  const returned: [string, string][] = [];
  const woke: string[] = [];
  const queue: RoutingQueue = {
    store: {
      place: () => undefined,
      queueFrozen: () => false,
      transaction: (fn) => fn(),
      holds: {
        dueForRouting: () => [],
        fail: () => undefined,
        hold: () => undefined,
        nextHoldDue: () => undefined,
        releaseHoldsFor: () => undefined,
      },
      remoteQueues: {
        all: () => queues,
        returnToRouting: (name, inRound) => {
          const ids = open.get(name) ?? [];
          const kept = ids.filter((id) => inRound(id));
          for (const id of ids.filter((x) => !inRound(x))) returned.push([name, id]);
          open.set(name, kept);
          return { returned: ids.length - kept.length, kept: kept.length };
        },
        releaseAll: () => undefined,
      },
    },
    wake: (stage) => void woke.push(stage),
    finish: async () => undefined,
  };
  const worker = new RoutingWorker(queue, {
    route: () => ({ queue: 'x', retryAt: 0, hold: 'no-route', reason: 'x' }),
    notifyPolicy: dsnFor,
    remoteRetry: {
      glitchInterval: 60,
      glitchCount: 3,
      first: 600,
      second: 600,
      third: 600,
      subsequent: 900,
      delayNotification: 43200,
      expiration: 172800,
    },
    recordFailures: () => undefined,
    log: pino({ level: 'silent' }),
    unusableNextHops: () => ({ servers: ['london1'], connectors: ['Internet .net'] }),
    inRound: (q, id) => active.has(`${q}|${id}`),
  });
  worker.releaseAfterLinkChange();
  assert.deepEqual(returned, [['london1.org.test', 'm2']]);
  assert.deepEqual(woke, ['routing']);
  // m1 is still Active: routing asks again soon.
  const due = worker.nextDue();
  assert.ok(due !== undefined && due <= Date.now() + 1000);
  await worker.runBatch();
  assert.deepEqual(returned, [['london1.org.test', 'm2']]);
  // Its attempt ended: the next batch takes it back, and nothing is left to ask again.
  active.clear();
  await worker.runBatch();
  assert.deepEqual(returned, [
    ['london1.org.test', 'm2'],
    ['london1.org.test', 'm1'],
  ]);
  assert.equal(worker.nextDue(), undefined);
});
