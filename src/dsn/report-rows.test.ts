import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CONCEALED_TEXT, reportRow, withoutRepeats, type ReportedRow } from './report-rows.js';

const row = (over: Partial<ReportedRow>): ReportedRow => ({
  address: 'bob@example.com',
  original: 'bob@example.com',
  concealed: 0,
  orcpt: null,
  outcome: null,
  status: null,
  diagnostic: null,
  last_error: null,
  dsn_pending: 'failure',
  remote_mta: null,
  ...over,
});

test('a failed recipient: its status, diagnostic and the error without its codes', () => {
  assert.deepEqual(
    reportRow(
      row({
        outcome: 'failed',
        status: '5.1.1',
        diagnostic: 'smtp; 550 5.1.1 unknown',
        last_error: '550 5.1.1 unknown user',
        orcpt: 'rfc822;Bob@Example.com',
      }),
      0,
    ),
    {
      finalRecipient: 'bob@example.com',
      originalRecipient: 'rfc822; Bob@Example.com',
      action: 'failed',
      status: '5.1.1',
      diagnostic: 'smtp; 550 5.1.1 unknown',
      text: 'unknown user',
    },
  );
  assert.equal(reportRow(row({ outcome: 'failed' }), 0).status, '5.0.0');
  assert.equal(
    reportRow(row({ outcome: 'failed', diagnostic: 'smtp; 554 5.4.4 no route' }), 0).text,
    'no route',
  );
});

test('delayed, delivered, relayed and expanded rows', () => {
  const delayed = reportRow(row({ dsn_pending: 'delay', last_error: '451 4.4.1 down' }), 86_400_000);
  assert.equal(delayed.action, 'delayed');
  assert.equal(delayed.status, '4.0.0');
  assert.equal(delayed.text, 'Delivery has been delayed: 451 4.4.1 down');
  assert.deepEqual(delayed.willRetryUntil, new Date(86_400_000));
  // With the last attempt's reply: its 4.x.x status, Diagnostic-Code and Remote-MTA.
  const refused = reportRow(
    row({
      dsn_pending: 'delay',
      status: '4.2.0',
      diagnostic: 'smtp; 450 4.2.0 busy',
      remote_mta: 'mx.test',
      last_error: '450 4.2.0 mx.test said: 450 4.2.0 busy',
    }),
    86_400_000,
  );
  assert.deepEqual(
    [refused.action, refused.status, refused.diagnostic, refused.remoteMta],
    ['delayed', '4.2.0', 'smtp; 450 4.2.0 busy', 'mx.test'],
  );
  assert.equal(
    reportRow(row({ dsn_pending: 'success', outcome: 'delivered', status: '2.0.0' }), 0).action,
    'delivered',
  );
  const relayed = reportRow(row({ dsn_pending: 'success', outcome: 'relayed', remote_mta: 'mx.test' }), 0);
  assert.equal(relayed.text, 'The message was relayed to mx.test.');
  assert.equal(relayed.remoteMta, 'mx.test');
  assert.equal(
    reportRow(row({ dsn_pending: 'expanded', outcome: 'expanded' }), 0).text,
    'The distribution list was expanded.',
  );
});

test('a concealed recipient is reported under the address the sender used, with nothing of its own', () => {
  const failed = (address: string) =>
    reportRow(
      row({
        address,
        original: 'board@example.com',
        concealed: 1,
        outcome: 'failed',
        status: '5.2.2',
        diagnostic: `smtp; 552 5.2.2 ${address} mailbox full`,
        last_error: `552 5.2.2 ${address} mailbox full`,
        remote_mta: 'store.example.com',
        orcpt: 'rfc822;board@example.com',
      }),
      0,
    );
  const reports = withoutRepeats([failed('kim@example.com'), failed('ted@example.com')]);
  assert.deepEqual(reports, [
    {
      finalRecipient: 'board@example.com',
      originalRecipient: 'rfc822; board@example.com',
      action: 'failed',
      status: '5.2.2',
      text: CONCEALED_TEXT,
    },
  ]);
  assert.doesNotMatch(JSON.stringify(reports), /kim|ted|store\.example/);
});
