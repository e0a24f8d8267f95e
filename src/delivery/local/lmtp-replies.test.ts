import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransportError } from '../../message/status.js';
import { lmtpRecipient, recipientTemplateProblem } from './lmtp-recipient.js';
import { replyOutcome, transactionResults, type LmtpReply } from './lmtp-replies.js';
import type { CopyResult } from './store-driver.js';

const r = (code: number, status: string | undefined, text: string): LmtpReply => ({
  code,
  ...(status ? { status } : {}),
  text: `${code} ${status ? `${status} ` : ''}${text}`,
});

/** A result as [code, status] ("ok" when delivered). */
function summary(c: CopyResult): string {
  return 'error' in c ? `${c.error.code} ${c.error.status}` : 'ok';
}

test('RCPT TO: the primary address by default, or a template over it', () => {
  assert.equal(lmtpRecipient('{address}', 'alice@example.com'), 'alice@example.com');
  assert.equal(lmtpRecipient('{localPart}', 'alice@example.com'), 'alice');
  assert.equal(lmtpRecipient('{localPart}+box@{domain}', 'a.b@example.com'), 'a.b+box@example.com');
  assert.equal(lmtpRecipient('{localPart}@mail.internal', 'odd@x@example.com'), 'odd@x@mail.internal');
});

test('a rcptTo template that cannot name a mailbox is refused with the reason', () => {
  assert.equal(recipientTemplateProblem('{address}'), undefined);
  assert.equal(recipientTemplateProblem('{localPart}'), undefined);
  assert.match(recipientTemplateProblem('{user}')!, /unknown placeholder \{user\}/);
  assert.match(recipientTemplateProblem('{domain}')!, /must contain \{address\} or \{localPart\}/);
  assert.match(recipientTemplateProblem('<{address}>')!, /angle brackets/);
});

test('reply outcomes: 2xx delivered, 4xx retry, 5xx NDR with the store text and status', () => {
  assert.deepEqual(replyOutcome(r(250, '2.0.0', '<a@x> Saved'), 'S'), { duplicate: false });
  const quota = replyOutcome(
    r(552, '5.2.2', '<full@x> Quota exceeded (mailbox for user is full)'),
    'Dovecot',
  );
  assert.ok('error' in quota);
  assert.equal(quota.error.code, 552);
  assert.equal(quota.error.status, '5.2.2');
  assert.ok(quota.error.permanent);
  assert.equal(
    quota.error.message,
    'Mailbox store Dovecot said: 552 5.2.2 <full@x> Quota exceeded (mailbox for user is full)',
  );
  assert.equal(
    (quota.error as unknown as { remoteReply: string }).remoteReply,
    '552 5.2.2 <full@x> Quota exceeded (mailbox for user is full)',
  );
  const busy = replyOutcome(r(451, '4.3.0', 'Temporary internal error'), 'S');
  assert.equal(summary(busy), '451 4.3.0');
  assert.ok('error' in busy && !busy.error.permanent);
  // No enhanced status: a default of the right class.
  assert.equal(summary(replyOutcome(r(550, undefined, 'no'), 'S')), '550 5.0.0');
  assert.equal(summary(replyOutcome(r(421, undefined, 'bye'), 'S')), '421 4.5.0');
  // Nonsense is never permanent.
  assert.equal(summary(replyOutcome(r(354, undefined, 'go on'), 'S')), '451 4.5.0');
});

test('a transaction: each recipient gets its RCPT refusal or its own reply after DATA', () => {
  const results = transactionResults(
    {
      mail: r(250, '2.1.0', 'OK'),
      rcpts: [
        r(250, '2.1.5', 'OK'),
        r(550, '5.1.1', 'unknown'),
        r(250, '2.1.5', 'OK'),
        r(250, '2.1.5', 'OK'),
      ],
      data: r(354, undefined, 'OK'),
      finals: [r(250, '2.0.0', 'Saved'), r(552, '5.2.2', 'Quota exceeded'), r(451, '4.3.0', 'later')],
    },
    'S',
  );
  assert.deepEqual(results.map(summary), ['ok', '550 5.1.1', '552 5.2.2', '451 4.3.0']);
});

test('MAIL or DATA refused: every recipient gets that reply; no DATA sent is a retry', () => {
  const rcpts = [r(250, '2.1.5', 'OK'), r(250, '2.1.5', 'OK')];
  assert.deepEqual(
    transactionResults({ mail: r(451, '4.3.0', 'busy'), rcpts, finals: [] }, 'S').map(summary),
    ['451 4.3.0', '451 4.3.0'],
  );
  assert.deepEqual(
    transactionResults(
      { mail: r(250, '2.1.0', 'OK'), rcpts, data: r(554, '5.6.0', 'no'), finals: [] },
      'S',
    ).map(summary),
    ['554 5.6.0', '554 5.6.0'],
  );
  assert.deepEqual(transactionResults({ mail: r(250, '2.1.0', 'OK'), rcpts, finals: [] }, 'S').map(summary), [
    '451 4.4.2',
    '451 4.4.2',
  ]);
});

test('the store went away after the message: replies received count, the rest retry, none bounce', () => {
  const lost = new TransportError(451, '4.4.2', 'Connection to the store closed');
  const results = transactionResults(
    {
      mail: r(250, '2.1.0', 'OK'),
      rcpts: [r(250, '2.1.5', 'OK'), r(250, '2.1.5', 'OK'), r(250, '2.1.5', 'OK')],
      data: r(354, undefined, 'OK'),
      finals: [r(250, '2.0.0', 'Saved')],
      lost,
    },
    'S',
  );
  assert.deepEqual(results.map(summary), ['ok', '451 4.4.2', '451 4.4.2']);
  assert.equal('error' in results[1]! && results[1].error, lost);
});
