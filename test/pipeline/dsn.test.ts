// Non-delivery and delivery reports produced by the categorizer and the store driver, read
// back from the sender's Maildir and parsed with Python's email package (issue 3, items 3, 4).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { copiesOf, waitFor, waitForMessages } from './maildir.js';
import { parseDsn, queuedMessageCount, sendMail, trackingEvents, type ParsedDsn } from './mail.js';

const ALICE = 'alice@example.com';
const POSTMASTER = 'postmaster@example.com';

let srv: RunningServer;
before(async () => {
  srv = await startServer({
    engine: true,
    mutate: (org) => {
      const user = (name: string, extra: Record<string, unknown> = {}) => ({
        name,
        addresses: [`${name.toLowerCase()}@example.com`],
        mailbox: { server: 'MAIL1' },
        ...extra,
      });
      const d = org.directory;
      d.users.push(
        user('Bob'),
        user('Restricted', { restrictions: { acceptFrom: ['Postmaster'] } }),
        user('Secure', { restrictions: { authenticatedOnly: true } }),
        user('Small', { quotaKb: 2 }),
        user('Tiny', { maxReceiveSizeKb: 2 }),
        user('LoopA', { forwardTo: 'LoopB' }),
        user('LoopB', { forwardTo: 'LoopA' }),
      );
      d.groups = [
        {
          name: 'Closed',
          addresses: ['closed@example.com'],
          members: ['Bob'],
          restrictions: { rejectFrom: ['Alice'] },
        },
        { name: 'Managers', addresses: ['managers@example.com'], members: ['Postmaster'] },
        {
          name: 'Board',
          addresses: ['board@example.com'],
          members: ['Bob'],
          restrictions: { acceptFrom: ['Managers'] },
        },
      ];
    },
  });
});
after(async () => {
  await srv?.stop();
  if (srv) cleanup(srv.dir);
});

/** A body of about `kb` kilobytes. */
const bodyOf = (kb: number) => `${'x'.repeat(78)}\r\n`.repeat(Math.ceil((kb * 1024) / 80));

/** The first DSN about queue message `id`, as it arrived in `sender`'s Maildir. */
async function dsnFor(id: string, sender = ALICE): Promise<{ raw: string; dsn: ParsedDsn }> {
  const [m] = await waitForMessages(srv.dataDir, sender, `${id}N1.`);
  return { raw: m!.content.toString('utf8'), dsn: parseDsn(m!.content) };
}

/** Checks a single-recipient NDR and returns it. */
async function expectNdr(id: string, recipient: string, status: string, sender = ALICE): Promise<ParsedDsn> {
  const { dsn } = await dsnFor(id, sender);
  assert.equal(dsn.contentType, 'multipart/report');
  assert.equal(dsn.reportType, 'delivery-status');
  assert.equal(dsn.perRecipient.length, 1, JSON.stringify(dsn.perRecipient));
  const r = dsn.perRecipient[0]!;
  assert.equal(r['Final-Recipient'], `rfc822; ${recipient}`);
  assert.equal(r['Action'], 'failed');
  assert.equal(r['Status'], status);
  assert.match(dsn.text, /Your message did not reach some or all of the intended recipients/);
  assert.ok(dsn.text.includes(`#${status}>`), dsn.text);
  return dsn;
}

/** Waits until `id` is fully processed (left the queues) so its absent DSN is conclusive. */
const waitDone = (id: string) =>
  waitFor(`message ${id} to leave the queues`, () => queuedMessageCount(srv.dataDir, id) === 0);

test('an unknown user in an authoritative domain: the local sender gets a 5.1.1 NDR', async () => {
  const id = await sendMail(srv.port, {
    from: ALICE,
    to: ['nobody@example.com', 'bob@example.com'],
    subject: 'Quarterly figures',
    body: 'The figures are attached.\r\n',
  });
  const { raw, dsn } = await dsnFor(id);
  // The NDR is delivered like any message: from the null sender, to Alice.
  assert.match(raw, /^Return-Path: <>\r\nDelivered-To: alice@example\.com\r\n/);
  assert.equal(dsn.contentType, 'multipart/report');
  assert.equal(dsn.reportType, 'delivery-status');
  assert.deepEqual(dsn.parts, ['text/plain', 'message/delivery-status', 'message/rfc822']);
  assert.equal(dsn.subject, 'Undeliverable: Quarterly figures');
  assert.equal(dsn.to, ALICE);
  assert.equal(dsn.perMessage['Reporting-MTA'], 'dns; mail1.test.example');
  assert.ok(dsn.perMessage['Arrival-Date']);
  assert.equal(dsn.perMessage['Original-Envelope-Id'], undefined);
  assert.equal(dsn.perRecipient.length, 1, 'only the failed recipient is reported');
  const r = dsn.perRecipient[0]!;
  assert.equal(r['Final-Recipient'], 'rfc822; nobody@example.com');
  assert.equal(r['Action'], 'failed');
  assert.equal(r['Status'], '5.1.1');
  assert.match(r['Diagnostic-Code'] ?? '', /^smtp; 550 5\.1\.1 /);
  assert.match(dsn.text, /Your message did not reach some or all of the intended recipients/);
  assert.match(dsn.text, /nobody@example\.com/);
  assert.match(dsn.text, /#5\.1\.1/);
  // RET defaults to FULL: the whole original comes back.
  assert.match(dsn.returnedPayload, /Subject: Quarterly figures/);
  assert.match(dsn.returnedPayload, /The figures are attached\./);
  // Bob still got his copy; the tracking log has the failure and the DSN.
  await waitForMessages(srv.dataDir, 'bob@example.com', `${id}.`);
  await waitFor('FAIL and DSN events', () => {
    const e = trackingEvents(srv.dataDir, id).map((x) => x.event);
    const d = trackingEvents(srv.dataDir, `${id}N1`).map((x) => x.event);
    return e.includes('FAIL') && d.includes('DSN');
  });
});

test('acceptFrom on a user: others get 5.7.1, the listed sender gets through', async () => {
  const denied = await sendMail(srv.port, { from: ALICE, to: ['restricted@example.com'] });
  await expectNdr(denied, 'restricted@example.com', '5.7.1');
  const allowed = await sendMail(srv.port, { from: POSTMASTER, to: ['restricted@example.com'] });
  await waitForMessages(srv.dataDir, 'restricted@example.com', `${allowed}.`);
  assert.equal(copiesOf(srv.dataDir, 'restricted@example.com', denied), 0);
});

test('rejectFrom on a group refuses the named sender with 5.7.1', async () => {
  const denied = await sendMail(srv.port, { from: ALICE, to: ['closed@example.com'] });
  await expectNdr(denied, 'closed@example.com', '5.7.1');
  const allowed = await sendMail(srv.port, { from: POSTMASTER, to: ['closed@example.com'] });
  await waitForMessages(srv.dataDir, 'bob@example.com', `${allowed}.`);
  assert.equal(copiesOf(srv.dataDir, 'bob@example.com', denied), 0);
});

test('acceptFrom on a group naming another group accepts its members only', async () => {
  const denied = await sendMail(srv.port, { from: ALICE, to: ['board@example.com'] });
  await expectNdr(denied, 'board@example.com', '5.7.1');
  const allowed = await sendMail(srv.port, { from: POSTMASTER, to: ['board@example.com'] });
  await waitForMessages(srv.dataDir, 'bob@example.com', `${allowed}.`);
});

test('authenticatedOnly refuses an anonymous sender with 5.7.1', async () => {
  const id = await sendMail(srv.port, { from: ALICE, to: ['secure@example.com'] });
  await expectNdr(id, 'secure@example.com', '5.7.1');
  assert.equal(copiesOf(srv.dataDir, 'secure@example.com', id), 0);
});

test('a message over the mailbox quota fails with 5.2.2', async () => {
  const fits = await sendMail(srv.port, { from: ALICE, to: ['small@example.com'], body: 'short\r\n' });
  await waitForMessages(srv.dataDir, 'small@example.com', `${fits}.`);
  const big = await sendMail(srv.port, { from: ALICE, to: ['small@example.com'], body: bodyOf(4) });
  const dsn = await expectNdr(big, 'small@example.com', '5.2.2');
  assert.match(dsn.perRecipient[0]!['Diagnostic-Code'] ?? '', /^smtp; 552 5\.2\.2 /);
  assert.equal(copiesOf(srv.dataDir, 'small@example.com', big), 0);
});

test('a message over maxReceiveSizeKb fails with 5.2.3', async () => {
  const fits = await sendMail(srv.port, { from: ALICE, to: ['tiny@example.com'], body: 'short\r\n' });
  await waitForMessages(srv.dataDir, 'tiny@example.com', `${fits}.`);
  const big = await sendMail(srv.port, { from: ALICE, to: ['tiny@example.com'], body: bodyOf(4) });
  await expectNdr(big, 'tiny@example.com', '5.2.3');
  assert.equal(copiesOf(srv.dataDir, 'tiny@example.com', big), 0);
});

test('a forwarding loop fails with 5.4.6', async () => {
  const id = await sendMail(srv.port, { from: ALICE, to: ['loopa@example.com'] });
  await expectNdr(id, 'loopa@example.com', '5.4.6');
  assert.equal(copiesOf(srv.dataDir, 'loopa@example.com', id), 0);
  assert.equal(copiesOf(srv.dataDir, 'loopb@example.com', id), 0);
});

test('NOTIFY=NEVER suppresses the NDR', async () => {
  const id = await sendMail(srv.port, {
    from: ALICE,
    to: ['nobody@example.com'],
    rcptParams: { 'nobody@example.com': 'NOTIFY=NEVER' },
  });
  await waitFor('the FAIL event', () => trackingEvents(srv.dataDir, id).some((e) => e.event === 'FAIL'));
  await waitDone(id);
  assert.equal(queuedMessageCount(srv.dataDir, `${id}N1`), 0, 'no DSN was queued');
  assert.equal(copiesOf(srv.dataDir, ALICE, `${id}N1`), 0);
});

test('NOTIFY=SUCCESS yields a "delivered" DSN', async () => {
  const id = await sendMail(srv.port, {
    from: POSTMASTER,
    to: ['bob@example.com'],
    subject: 'Receipt please',
    rcptParams: { 'bob@example.com': 'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com' },
  });
  await waitForMessages(srv.dataDir, 'bob@example.com', `${id}.`);
  const { dsn } = await dsnFor(id, POSTMASTER);
  assert.equal(dsn.reportType, 'delivery-status');
  assert.equal(dsn.subject, 'Delivered: Receipt please');
  assert.equal(dsn.perRecipient.length, 1);
  const r = dsn.perRecipient[0]!;
  assert.equal(r['Final-Recipient'], 'rfc822; bob@example.com');
  assert.equal(r['Original-Recipient'], 'rfc822; bob@example.com');
  assert.equal(r['Action'], 'delivered');
  assert.match(r['Status'] ?? '', /^2\.\d+\.\d+$/);
  assert.doesNotMatch(dsn.text, /did not reach/);
});

test('RET=HDRS returns the headers only, ENVID comes back as Original-Envelope-Id', async () => {
  const id = await sendMail(srv.port, {
    from: ALICE,
    to: ['nobody@example.com'],
    mailParams: 'RET=HDRS ENVID=QQ314159',
    subject: 'Headers only',
    body: 'SECRET BODY TEXT\r\n',
  });
  const dsn = await expectNdr(id, 'nobody@example.com', '5.1.1');
  assert.equal(dsn.perMessage['Original-Envelope-Id'], 'QQ314159');
  assert.deepEqual(dsn.parts, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
  assert.match(dsn.returnedPayload, /Subject: Headers only/);
  assert.doesNotMatch(dsn.returnedPayload, /SECRET BODY TEXT/);
  const { raw } = await dsnFor(id);
  assert.doesNotMatch(raw, /SECRET BODY TEXT/);
});

test('never an NDR to the null sender: the message goes to badmail', async () => {
  const id = await sendMail(srv.port, {
    from: '',
    to: ['nobody@example.com'],
    subject: 'bounce of a bounce',
  });
  const bad = path.join(srv.dataDir, 'badmail', `${id}.bad`);
  await waitFor(`${bad}`, () => existsSync(bad));
  await waitDone(id);
  assert.match(readFileSync(bad, 'utf8'), /Subject: bounce of a bounce/);
  const report = path.join(srv.dataDir, 'badmail', `${id}.bdr`);
  await waitFor(`${report}`, () => existsSync(report));
  assert.match(readFileSync(report, 'utf8'), /^nobody@example\.com\t5\.1\.1\t/);
  assert.equal(queuedMessageCount(srv.dataDir, `${id}N1`), 0, 'no DSN was queued');
  await waitFor('the BADMAIL event', () =>
    trackingEvents(srv.dataDir, id).some((e) => e.event === 'BADMAIL'),
  );
  assert.ok(!trackingEvents(srv.dataDir, id).some((e) => e.event === 'DSN'));
});

test('an NDR that cannot be delivered is not bounced again: it goes to badmail', async () => {
  // The sender does not exist either: its NDR (from <>) fails 5.1.1 in turn.
  const id = await sendMail(srv.port, { from: 'ghost@example.com', to: ['nobody@example.com'] });
  const bad = path.join(srv.dataDir, 'badmail', `${id}N1.bad`);
  await waitFor(`${bad}`, () => existsSync(bad));
  await waitDone(`${id}N1`);
  assert.match(readFileSync(bad, 'utf8'), /multipart\/report; report-type=delivery-status/);
  assert.equal(queuedMessageCount(srv.dataDir, `${id}N1N1`), 0, 'no DSN about the DSN');
});
