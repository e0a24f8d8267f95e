import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandedPlacement, placeRecipient, type PlacementInput } from './placement.js';
import { dsnFor } from '../dsn/notify.js';

const input = (over: Partial<PlacementInput>): PlacementInput => ({
  route: { kind: 'remote', domain: 'fabrikam.test' },
  currentQueue: 'Messages awaiting directory lookup',
  notify: undefined,
  sender: 'alice@example.com',
  remoteDeadline: 1234,
  ...over,
});

test('a failed resolution is final in its queue, with the NDR NOTIFY asks for', () => {
  const p = placeRecipient(
    input({
      route: { kind: 'failed', code: 550, status: '5.1.1', text: 'unknown' },
      currentQueue: 'DSN messages pending submission',
    }),
    dsnFor,
  );
  assert.equal(p.queue, 'DSN messages pending submission');
  assert.equal(p.state, 'done');
  assert.equal(p.outcome, 'failed');
  assert.equal(p.diagnostic, 'smtp; 550 5.1.1 unknown');
  assert.equal(p.dsn, 'failure');
  assert.equal(
    placeRecipient(
      input({ route: { kind: 'failed', code: 550, status: '5.1.1', text: 'x' }, notify: ['NEVER'] }),
      dsnFor,
    ).dsn,
    null,
  );
});

test('a local mailbox goes to Local delivery; no deadline, no next hop', () => {
  const p = placeRecipient(
    input({
      route: { kind: 'local', store: 'Mailbox Store', mailboxAddress: 'bob@example.com', quotaKb: null },
    }),
    dsnFor,
  );
  assert.deepEqual(
    [p.queue, p.state, p.remote, p.nextHop, p.deadline],
    ['Local delivery', 'ready', false, null, null],
  );
});

test('an open next hop takes the recipient at once; otherwise routing waits for it', () => {
  const direct = placeRecipient(
    input({ nextHop: { queue: 'fabrikam.test', destination: '{"type":"dns"}' } }),
    dsnFor,
  );
  assert.deepEqual(
    [direct.queue, direct.remote, direct.nextHop, direct.deadline],
    ['fabrikam.test', true, '{"type":"dns"}', 1234],
  );
  const waiting = placeRecipient(input({}), dsnFor);
  assert.deepEqual(
    [waiting.queue, waiting.remote, waiting.nextHop],
    ['Messages waiting to be routed', false, 'fabrikam.test'],
  );
  assert.equal(
    placeRecipient(input({ route: { kind: 'server', server: 'MAIL2' } }), dsnFor).nextHop,
    'MAIL2',
  );
  assert.equal(
    placeRecipient(input({ route: { kind: 'forwardHost', host: 'fw.test' } }), dsnFor).nextHop,
    'fw.test',
  );
});

test('an expanded recipient is final as expanded; a DSN only with NOTIFY=SUCCESS', () => {
  assert.equal(expandedPlacement('q', undefined, 'alice@example.com', dsnFor).dsn, null);
  const p = expandedPlacement('q', ['SUCCESS'], 'alice@example.com', dsnFor);
  assert.deepEqual(
    [p.queue, p.state, p.outcome, p.status, p.dsn],
    ['q', 'done', 'expanded', '2.0.0', 'expanded'],
  );
});
