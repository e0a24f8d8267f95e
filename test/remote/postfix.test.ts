// Remote delivery to a real Postfix (a private instance on 127.0.0.2, found through dnsmasq):
// a 554 after DATA returns an NDR quoting the remote text and the send protocol log shows the
// exchange [001]; a 550 at RCPT fails one recipient while the other is delivered; a 450 waits
// in its remote queue until the receiver accepts; a greylisting peer (postgrey) is retried,
// never lost [004]; a receiver that always defers ends in a delay DSN, then 4.4.7 [000].
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { cannotRun, Dnsmasq, PostfixPeer, Postgrey, sharedPort, sleep, waitFor } from './peers.js';
import {
  dsnsAbout,
  loopbackDelivery,
  queueRows,
  sendLog,
  sessionsMentioning,
  transactionMentioning,
  submit,
  waitForDsns,
  type Submitted,
} from './mail.js';

const RECEIVER = '127.0.0.2';
const ALICE = 'alice@example.com';
const SCAN_FAILURE = 'Permanent scan failure. Email Session ID: {4C209928-2-3A6A8C0-1FFFF}';
const BUSY = '450 4.2.0 Mailbox busy, try again later';

const skip = cannotRun('dnsmasq', 'postfix', 'postgrey');

describe('remote delivery to a private Postfix', { skip }, () => {
  let dir: string;
  let port: number;
  let dns: Dnsmasq;
  let greylist: Postgrey;
  let postfix: PostfixPeer;
  let srv: RunningServer;
  const others: RunningServer[] = [];

  const rcptAccess = (extra: Record<string, string> = {}) => ({
    'busy@pf.test': BUSY,
    'glitch@pf.test': BUSY,
    // Everything for grey.test goes through the greylisting policy service.
    'grey.test': 'greylist',
    ...extra,
  });

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bh-remote-postfix-'));
    chmodSync(dir, 0o755); // the postfix, nobody and postgrey users reach their directories below
    port = await sharedPort([RECEIVER]);
    dns = await Dnsmasq.start([
      '--mx-host=pf.test,mail.pf.test,10',
      '--mx-host=grey.test,mail.pf.test,10',
      `--host-record=mail.pf.test,${RECEIVER}`,
    ]);
    greylist = await Postgrey.start(path.join(dir, 'postgrey'), 2);
    postfix = await PostfixPeer.start({
      dir: path.join(dir, 'postfix'),
      ip: RECEIVER,
      port,
      hostname: 'mail.pf.test',
      domains: ['pf.test', 'grey.test'],
      mailboxes: [
        'ok@pf.test',
        'later@pf.test',
        'busy@pf.test',
        'glitch@pf.test',
        'scanfail@pf.test',
        'grace@grey.test',
      ],
      rcptAccess: rcptAccess({ 'later@pf.test': BUSY }),
      endOfDataAccess: { 'scanfail@pf.test': `554 5.7.1 ${SCAN_FAILURE}` },
      restrictionClasses: { greylist: `check_policy_service inet:127.0.0.1:${greylist.port}` },
    });
    srv = await startServer({
      engine: true,
      dir: mkdtempSync(path.join(dir, 'bh-')),
      mutate: (org) => loopbackDelivery(org, { dns: dns.server, outboundPort: port }),
    });
  });

  after(async () => {
    await srv?.stop();
    for (const s of others) await s.stop();
    await postfix?.stop();
    await greylist?.stop();
    await dns?.stop();
    if (dir) cleanup(dir);
  });

  function waitForPostfix(address: string, m: Submitted, timeoutMs = 15_000): Promise<string> {
    return waitFor(
      `"${m.subject}" in ${address}'s Maildir at Postfix`,
      () => postfix.delivered(address).find((d) => d.includes(`Message-ID: ${m.messageId}`)),
      timeoutMs,
      100,
    );
  }

  function waitUntilDequeued(s: RunningServer, m: Submitted): Promise<boolean> {
    return waitFor(`message ${m.id} to leave the queues`, () => queueRows(s.dataDir, m.id).length === 0);
  }

  test('554 after DATA → NDR quoting the remote text; the send protocol log shows the exchange', async () => {
    const m = await submit(srv, { from: ALICE, to: ['scanfail@pf.test'], subject: 'quarterly figures' });
    const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
    assert.equal(ndr!.contentType, 'multipart/report');
    assert.equal(ndr!.reportType, 'delivery-status');
    assert.equal(ndr!.subject, 'Undeliverable: quarterly figures');
    assert.equal(ndr!.to, ALICE);
    assert.equal(ndr!.recipients.length, 1);
    const r = ndr!.recipients[0]!;
    assert.equal(r['Final-Recipient'], 'rfc822; scanfail@pf.test');
    assert.equal(r['Action'], 'failed');
    assert.equal(r['Status'], '5.7.1');
    assert.equal(r['Remote-MTA'], 'dns; mail.pf.test');
    // The remote server's reply, as it was received (RFC 3464 §2.3.6).
    assert.equal(
      r['Diagnostic-Code'],
      `smtp; 554 5.7.1 <scanfail@pf.test>: Recipient address rejected: ${SCAN_FAILURE}`,
    );
    assert.match(ndr!.human, /Your message did not reach some or all of the intended recipients\./);
    assert.ok(ndr!.human.includes(SCAN_FAILURE), ndr!.human);
    assert.match(ndr!.human, /#5\.7\.1>/);
    assert.equal(ndr!.original?.messageId, m.messageId);
    assert.equal(postfix.delivered('scanfail@pf.test').length, 0, 'Postfix kept nothing');
    assert.match(postfix.maillog(), /reject: END-OF-MESSAGE from .*554 5\.7\.1 .*Permanent scan failure/);
    await waitUntilDequeued(srv, m);

    // The exchange as [001] shows it: the message goes out, the 554 comes back after DATA.
    // The session is kept for the connection cache's 2 s, then ends with QUIT.
    const s = await waitFor('the session carrying the message to end', () => {
      const found = sessionsMentioning(sendLog(srv.dataDir), 'RCPT TO:<scanfail@pf.test>');
      assert.equal(found.length, 1, 'one session carried the message');
      return found[0]!.at(-1) === '-' ? found[0] : undefined;
    });
    const at = (re: RegExp) => {
      const i = s.findIndex((l) => re.test(l));
      assert.ok(i >= 0, `${re} in the protocol log:\n${s.join('\n')}`);
      return i;
    };
    const steps = [
      at(new RegExp(`^\\* attempting to connect to 127\\.0\\.0\\.2:${port}$`)),
      at(/^\+$/),
      at(/^< 220 mail\.pf\.test ESMTP/),
      at(/^> EHLO mail1\.test\.example$/),
      at(/^> MAIL FROM:<alice@example\.com>( |$)/),
      at(/^> RCPT TO:<scanfail@pf\.test>$/),
      at(/^> DATA$/),
      at(/^< 354 /),
      at(/^\* sending message \(\d+ bytes\)$/),
      at(/^< 554 5\.7\.1 .*Permanent scan failure\. Email Session ID: \{4C209928-2-3A6A8C0-1FFFF\}$/),
      at(/^> QUIT$/),
      at(/^-$/),
    ];
    assert.deepEqual(
      steps,
      [...steps].sort((a, b) => a - b),
      `the exchange in order:\n${s.join('\n')}`,
    );
  });

  test('550 5.1.1 at RCPT for one of two recipients → NDR for that one, the other delivered', async () => {
    const m = await submit(srv, { from: ALICE, to: ['ok@pf.test', 'nosuch@pf.test'], subject: 'two of us' });
    const delivered = await waitForPostfix('ok@pf.test', m);
    assert.match(delivered, /^Subject: two of us$/m);
    const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
    assert.equal(ndr!.subject, 'Undeliverable: two of us');
    assert.deepEqual(
      ndr!.recipients.map((r) => r['Final-Recipient']),
      ['rfc822; nosuch@pf.test'],
      'only the refused recipient is reported',
    );
    const r = ndr!.recipients[0]!;
    assert.equal(r['Action'], 'failed');
    assert.equal(r['Status'], '5.1.1');
    assert.equal(
      r['Diagnostic-Code'],
      'smtp; 550 5.1.1 <nosuch@pf.test>: Recipient address rejected: User unknown in virtual mailbox table',
    );
    assert.doesNotMatch(ndr!.human, /ok@pf\.test on /, 'the delivered recipient is not listed as failed');
    await waitUntilDequeued(srv, m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 1, 'one NDR, nothing for the delivered one');
  });

  test('every recipient refused at RCPT → one NDR listing each, nothing delivered', async () => {
    const m = await submit(srv, {
      from: ALICE,
      to: ['nobody1@pf.test', 'nobody2@pf.test'],
      subject: 'nobody home',
    });
    const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
    assert.deepEqual(
      ndr!.recipients.map((r) => [r['Final-Recipient'], r['Action'], r['Status']]),
      [
        ['rfc822; nobody1@pf.test', 'failed', '5.1.1'],
        ['rfc822; nobody2@pf.test', 'failed', '5.1.1'],
      ],
    );
    await waitUntilDequeued(srv, m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 1);
    // The pipelined DATA met "no valid recipients"; no message content was sent.
    const [session] = sessionsMentioning(sendLog(srv.dataDir), 'RCPT TO:<nobody1@pf.test>');
    assert.ok(session, 'the session is in the protocol log');
    const transaction = transactionMentioning(session, 'RCPT TO:<nobody1@pf.test>');
    assert.ok(!transaction.some((l) => l.startsWith('* sending message')), transaction.join('\n'));
  });

  test('450 at RCPT → retried from its remote queue, delivered once the receiver accepts', async () => {
    const m = await submit(srv, { from: ALICE, to: ['later@pf.test'], subject: 'try later' });
    // Visible in the queue named after the domain, waiting for its next retry [004].
    const rows = await waitFor(
      'two deferred attempts',
      () => {
        const r = queueRows(srv.dataDir, m.id);
        return r.length === 1 && r[0]!.attempts >= 2 && r[0]!.state === 'retry' ? r : undefined;
      },
      15_000,
    );
    assert.equal(rows[0]!.queue, 'pf.test');
    assert.equal(rows[0]!.address, 'later@pf.test');
    assert.match(rows[0]!.last_error ?? '', /^450 4\.2\.0 .*Mailbox busy, try again later/);
    const refusals = postfix.maillog().match(/NOQUEUE: reject: RCPT .*450 4\.2\.0 <later@pf\.test>/g) ?? [];
    assert.ok(refusals.length >= 2, `Postfix refused at least twice:\n${postfix.maillog()}`);
    assert.equal(postfix.delivered('later@pf.test').length, 0);

    // The receiver's administrator lifts the deferral.
    await postfix.setRecipientAccess(rcptAccess());
    const delivered = await waitForPostfix('later@pf.test', m, 20_000);
    assert.match(delivered, /^Subject: try later$/m);
    await waitUntilDequeued(srv, m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0, 'no DSN: delivered well within every limit');
    assert.equal(postfix.delivered('later@pf.test').length, 1, 'exactly one copy');
  });

  test('greylisting peer (postgrey): the first attempt is deferred, a retry delivers it', async () => {
    const m = await submit(srv, { from: ALICE, to: ['grace@grey.test'], subject: 'greylisted' });
    const rows = await waitFor('the greylisting deferral in the queue', () => {
      const r = queueRows(srv.dataDir, m.id);
      return r.length === 1 && r[0]!.state === 'retry' ? r : undefined;
    });
    assert.equal(rows[0]!.queue, 'grey.test');
    assert.match(rows[0]!.last_error ?? '', /^450 4\.2\.0 .*Greylisted/);
    const delivered = await waitForPostfix('grace@grey.test', m, 20_000);
    assert.match(delivered, /^X-Greylist: delayed \d+ seconds by postgrey/m);
    assert.match(postfix.maillog(), /450 4\.2\.0 <grace@grey\.test>: Recipient address rejected: Greylisted/);
    await waitUntilDequeued(srv, m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0);
    assert.equal(postfix.delivered('grace@grey.test').length, 1, 'exactly one copy');
  });

  test('glitch retry: a deferral is retried glitchRetryCount times, then waits for the schedule', async () => {
    const glitchy = await startServer({
      engine: true,
      dir: mkdtempSync(path.join(dir, 'bh-glitch-')),
      mutate: (org) =>
        loopbackDelivery(org, {
          dns: dns.server,
          outboundPort: port,
          delivery: { glitchRetryInterval: '1s', glitchRetryCount: 2 },
          outbound: { first: '1h' },
        }),
    });
    others.push(glitchy);
    const m = await submit(glitchy, { from: ALICE, to: ['glitch@pf.test'], subject: 'glitch retry' });
    // The first attempt and two glitch retries a second apart; then the first scheduled retry.
    const rows = await waitFor(
      'three attempts',
      () => {
        const r = queueRows(glitchy.dataDir, m.id);
        return r[0] && r[0].attempts >= 3 ? r : undefined;
      },
      10_000,
    );
    assert.equal(rows[0]!.state, 'retry');
    assert.equal(rows[0]!.queue, 'pf.test');
    const wait = rows[0]!.next_attempt - Date.now();
    assert.ok(wait > 55 * 60_000 && wait <= 60 * 60_000, `next attempt in about an hour (${wait} ms)`);
    await sleep(2500);
    assert.equal(queueRows(glitchy.dataDir, m.id)[0]?.attempts, 3, 'no further glitch retries');
    const refusals = postfix.maillog().match(/NOQUEUE: reject: RCPT .*450 4\.2\.0 <glitch@pf\.test>/g) ?? [];
    assert.equal(refusals.length, 3, 'the receiver saw exactly three attempts');
    assert.equal(dsnsAbout(glitchy.dataDir, ALICE, m).length, 0);
  });

  test('a receiver that always defers: delay DSN first, then the 4.4.7 NDR at expiration', async () => {
    const expiring = await startServer({
      engine: true,
      dir: mkdtempSync(path.join(dir, 'bh-expiry-')),
      mutate: (org) =>
        loopbackDelivery(org, {
          dns: dns.server,
          outboundPort: port,
          outbound: { delayNotification: '2s', expiration: '6s' },
        }),
    });
    others.push(expiring);
    const t0 = Date.now();
    const m = await submit(expiring, { from: ALICE, to: ['busy@pf.test'], subject: 'stuck in the queue' });
    const [delay] = await waitForDsns(expiring.dataDir, ALICE, m, 1, 15_000);
    assert.equal(delay!.subject, 'Delayed: stuck in the queue');
    assert.match(delay!.human, /Delivery of your message has been delayed/);
    const d = delay!.recipients[0]!;
    assert.equal(d['Final-Recipient'], 'rfc822; busy@pf.test');
    assert.equal(d['Action'], 'delayed');
    assert.match(d['Status']!, /^4\.\d+\.\d+$/);
    assert.ok(d['Will-Retry-Until'], 'the delay DSN says until when it keeps trying');
    const arrival = Date.parse(delay!.perMessage['Arrival-Date']!);
    const until = Date.parse(d['Will-Retry-Until']!);
    assert.ok(
      Math.abs(until - arrival - 6000) <= 1000,
      `Will-Retry-Until is arrival + 6 s (${until - arrival} ms)`,
    );
    // Between the two, the message still sits in its queue, retrying.
    const rows = queueRows(expiring.dataDir, m.id);
    assert.equal(rows[0]?.queue, 'pf.test');
    assert.equal(rows[0]?.state, 'retry');

    const dsns = await waitForDsns(expiring.dataDir, ALICE, m, 2, 20_000);
    assert.ok(Date.now() - t0 >= 6000, 'the NDR comes after the expiration time');
    assert.equal(dsns.length, 2, 'one delay DSN and one NDR');
    const ndr = dsns[1]!;
    assert.equal(ndr.subject, 'Undeliverable: stuck in the queue');
    const r = ndr.recipients[0]!;
    assert.equal(r['Final-Recipient'], 'rfc822; busy@pf.test');
    assert.equal(r['Action'], 'failed');
    assert.equal(r['Status'], '4.4.7');
    assert.equal(
      r['Diagnostic-Code'],
      'smtp; 450 4.2.0 <busy@pf.test>: Recipient address rejected: Mailbox busy, try again later',
    );
    // The text an administrator knows from [000].
    assert.match(ndr.human, /Your message did not reach some or all of the intended recipients\./);
    assert.match(ndr.human, /Could not deliver the message in the time limit specified\./);
    assert.match(ndr.human, /Mailbox busy, try again later/, 'and the last error behind it');
    assert.match(ndr.human, /#4\.4\.7>/);
    await waitUntilDequeued(expiring, m);
    assert.equal(postfix.delivered('busy@pf.test').length, 0);
  });
});
