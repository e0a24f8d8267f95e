import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  deadlineFor,
  deadlineVerdict,
  expired,
  nextHopVerdict,
  verdictFor,
  type VerdictInput,
} from './outcomes.js';
import type { RetryPolicy } from './retry.js';

const policy: RetryPolicy = {
  glitchInterval: 60,
  glitchCount: 3,
  first: 600,
  second: 600,
  third: 600,
  subsequent: 900,
  delayNotification: 12 * 3600,
  expiration: 2 * 86400,
};
// Reports failures and delays unless told otherwise; the null sender gets failures only.
const notifyPolicy: VerdictInput['notifyPolicy'] = (kind, notify, sender) =>
  !sender
    ? kind === 'failure'
      ? kind
      : null
    : notify
      ? notify.includes(kind.toUpperCase())
        ? kind
        : null
      : kind === 'success'
        ? null
        : kind;
const now = Date.UTC(2026, 10, 26, 12);
const input = (over: Partial<VerdictInput>): VerdictInput => ({
  notify: undefined,
  sender: 'alice@example.com',
  receivedAt: now - 1000,
  attempts: 0,
  delayNotified: false,
  policy,
  now,
  notifyPolicy,
  ...over,
});
const transient = { code: 451, status: '4.4.1', message: 'Cannot connect', permanent: false };

test('delivered locally or relayed; a success DSN only when NOTIFY asks', () => {
  assert.deepEqual(verdictFor(input({})), {
    kind: 'delivered',
    outcome: 'delivered',
    dsn: null,
    remoteMta: null,
  });
  assert.deepEqual(verdictFor(input({ remoteMta: 'mx.test', notify: ['SUCCESS'] })), {
    kind: 'delivered',
    outcome: 'relayed',
    dsn: 'success',
    remoteMta: 'mx.test',
  });
});

test('a permanent failure is final, with the remote reply as the diagnostic', () => {
  const v = verdictFor(
    input({
      error: {
        code: 550,
        status: '5.1.1',
        message: 'mx said: no',
        permanent: true,
        remoteReply: '550 5.1.1 no',
      },
    }),
  );
  assert.deepEqual(v, {
    kind: 'failed',
    status: '5.1.1',
    diagnostic: 'smtp; 550 5.1.1 no',
    dsn: 'failure',
    lastError: '550 5.1.1 mx said: no',
    remoteMta: null,
  });
});

test('transient failures: glitch retries first, then the schedule; delay notice once after 12 h', () => {
  const first = verdictFor(input({ error: transient }));
  assert.equal(first.kind, 'retry');
  assert.equal(first.kind === 'retry' && first.nextAttempt, now + 60_000);
  const fourth = verdictFor(input({ error: transient, attempts: 3 }));
  assert.equal(fourth.kind === 'retry' && fourth.nextAttempt, now + 600_000);
  const late = verdictFor(input({ error: transient, attempts: 9, receivedAt: now - 13 * 3600_000 }));
  assert.ok(late.kind === 'retry' && late.delayNotified && late.dsn === 'delay');
  const again = verdictFor(
    input({ error: transient, attempts: 10, receivedAt: now - 14 * 3600_000, delayNotified: true }),
  );
  assert.ok(again.kind === 'retry' && again.dsn === null);
});

test('a transient refusal keeps what the delay DSN reports: 4.x.x status, the reply, the server', () => {
  const v = verdictFor(
    input({
      remoteMta: 'mx.test',
      error: {
        code: 450,
        status: '4.2.0',
        message: 'mx.test said: 450 4.2.0 busy',
        permanent: false,
        remoteReply: '450 4.2.0 busy',
      },
    }),
  );
  assert.ok(v.kind === 'retry');
  assert.deepEqual([v.status, v.diagnostic, v.remoteMta], ['4.2.0', 'smtp; 450 4.2.0 busy', 'mx.test']);
  // A 4xx reply with a 5.x.x status is still a delay: 4.0.0.
  const odd = verdictFor(input({ error: { ...transient, status: '5.7.1' } }));
  assert.ok(odd.kind === 'retry' && odd.status === '4.0.0');
});

test('past the expiration a transient failure is 4.4.7 with the last error', () => {
  const v = verdictFor(input({ error: transient, receivedAt: now - 3 * 86400_000 }));
  assert.equal(v.kind, 'failed');
  assert.equal(v.kind === 'failed' && v.status, '4.4.7');
  assert.match(
    v.kind === 'failed' ? v.lastError : '',
    /time limit specified\. Last error: 451 4\.4\.1 Cannot connect/,
  );
  // The null sender is owed its failure too: the DSN stage sets it aside as badmail.
  const nullSender = expired(input({ sender: '' }), '451 4.4.1 down');
  assert.equal(nullSender.kind === 'failed' && nullSender.dsn, 'failure');
});

test('a next hop that is down: the recipient waits for its queue, with its delay notice and expiry', () => {
  const retryAt = now + 600_000;
  const v = nextHopVerdict(input({ error: transient }), retryAt);
  assert.deepEqual(v, {
    kind: 'retry',
    nextAttempt: retryAt,
    lastError: '451 4.4.1 Cannot connect',
    status: '4.4.1',
    diagnostic: 'smtp; 451 4.4.1 Cannot connect',
    remoteMta: null,
    failedAt: now,
    delayNotified: false,
    dsn: null,
    deadline: now - 1000 + 12 * 3600_000,
  });
  assert.equal(
    nextHopVerdict(input({ error: transient, receivedAt: now - 3 * 86400_000 }), retryAt).kind,
    'failed',
  );
  assert.equal(deadlineFor(policy, 0, true), 2 * 86400_000);
  assert.equal(deadlineFor({ ...policy, delayNotification: 3 * 86400 }, 0, false), 2 * 86400_000);
});

test('a deadline without an attempt: the delay notice once, with the queue error; 4.4.7 at expiry', () => {
  const base = {
    receivedAt: now - 13 * 3600_000,
    now,
    policy,
    notify: undefined,
    sender: 'alice@example.com',
    notifyPolicy,
    lastError: null,
    queueError: '451 4.4.1 Cannot connect to 127.0.0.9:25: ECONNREFUSED',
  };
  assert.deepEqual(deadlineVerdict(base), {
    kind: 'delay-notice',
    dsn: 'delay',
    nextDeadline: now - 13 * 3600_000 + 2 * 86400_000,
    lastError: '451 4.4.1 Cannot connect to 127.0.0.9:25: ECONNREFUSED',
  });
  assert.equal((deadlineVerdict({ ...base, notify: ['FAILURE'] }) as { dsn: string | null }).dsn, null);
  const late = deadlineVerdict({ ...base, receivedAt: now - 2 * 86400_000 });
  assert.equal(late.kind, 'expired');
  const verdict = late.kind === 'expired' ? late.verdict : undefined;
  assert.equal(verdict?.kind === 'failed' && verdict.status, '4.4.7');
  assert.match(verdict?.kind === 'failed' ? verdict.lastError : '', /Last error: 451 4\.4\.1 Cannot connect/);
  const noError = deadlineVerdict({ ...base, receivedAt: now - 3 * 86400_000, queueError: null });
  assert.match(
    noError.kind === 'expired' && noError.verdict.kind === 'failed' ? noError.verdict.lastError : '',
    /the next hop was not reached in time/,
  );
});
