// Remote delivery by DNS against a real DNS server on loopback (dnsmasq, authoritative for
// .test only) and Postfix's smtp-sink as the receiving MTA [SPEC §7, 003:787-1343]:
// MX in preference order with fail-over, A fallback, NXDOMAIN → 5.4.4, null MX → 5.1.2,
// DNS down → 4.4.3 and the message waits, a 554 after DATA → NDR quoting it [001], and the
// `dnsdiag` walk an administrator would run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI, cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { cannotRun, Dnsmasq, run, sharedPort, SmtpSink, waitFor } from './peers.js';
import {
  dsnsAbout,
  loopbackDelivery,
  queueRows,
  sendLog,
  submit,
  waitForDsns,
  type Submitted,
} from './mail.js';

const SINK = '127.0.0.3';
const SCANNER = '127.0.0.4';
const DEAD = '127.0.0.9';
const ALICE = 'alice@example.com';
const SCAN_FAILURE = '554 Permanent scan failure. Email Session ID: {4C209928-2-3A6A8C0-1FFFF}';

const skip = cannotRun('dnsmasq', 'smtpSink');

describe('remote delivery by DNS (dnsmasq + smtp-sink)', { skip }, () => {
  let dir: string;
  let port: number;
  let dns: Dnsmasq;
  let sink: SmtpSink;
  let scanner: SmtpSink;
  let srv: RunningServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bh-remote-dns-'));
    chmodSync(dir, 0o755); // smtp-sink runs as nobody and dumps below
    port = await sharedPort([SINK, SCANNER, DEAD]);
    dns = await Dnsmasq.start([
      `--mx-host=mx.test,mx1.mx.test,10`,
      `--host-record=mx1.mx.test,${SINK}`,
      // The preferred MX has an address where nothing listens; the backup takes the mail.
      `--mx-host=failover.test,dead.failover.test,10`,
      `--mx-host=failover.test,backup.failover.test,20`,
      `--host-record=dead.failover.test,${DEAD}`,
      `--host-record=backup.failover.test,${SINK}`,
      // No MX at all: the domain's A record is the mail host.
      `--host-record=a-only.test,${SINK}`,
      // RFC 7505 null MX: "0 ."
      `--mx-host=nullmx.test,.,0`,
      // 60 MX records: more than fits a UDP answer, so it comes truncated and again over TCP.
      ...Array.from({ length: 60 }, (_, i) => [
        `--mx-host=big.test,mail-exchanger-number-${i + 1}.big.test,10`,
        `--host-record=mail-exchanger-number-${i + 1}.big.test,${SINK}`,
      ]).flat(),
      `--mx-host=scan.test,filter.scan.test,10`,
      `--host-record=filter.scan.test,${SCANNER}`,
    ]);
    sink = await SmtpSink.start(path.join(dir, 'sink'), SINK, port);
    // A content filter in front of the receiver that fails every message after DATA [001].
    scanner = await SmtpSink.start(path.join(dir, 'scanner'), SCANNER, port, [
      '-E',
      '-f',
      '.',
      '-B',
      SCAN_FAILURE,
    ]);
    srv = await startServer({
      engine: true,
      dir: mkdtempSync(path.join(dir, 'bh-')),
      mutate: (org) => loopbackDelivery(org, { dns: dns.server, outboundPort: port }),
    });
  });

  after(async () => {
    await srv?.stop();
    await sink?.stop();
    await scanner?.stop();
    await dns?.stop();
    if (dir) cleanup(dir);
  });

  /** The sink's dump of `m` once the whole message is in. */
  function waitForSink(m: Submitted, timeoutMs = 15_000): Promise<string> {
    return waitFor(
      `"${m.subject}" at smtp-sink`,
      () => sink.messages().find((d) => d.includes(`Message-ID: ${m.messageId}`) && d.includes(m.subject)),
      timeoutMs,
      100,
    );
  }

  function waitUntilDequeued(m: Submitted): Promise<boolean> {
    return waitFor(`message ${m.id} to leave the queues`, () => queueRows(srv.dataDir, m.id).length === 0);
  }

  test('the message goes to the host named by the MX record', async () => {
    const m = await submit(srv, { from: ALICE, to: ['bob@mx.test'], subject: 'via MX' });
    const dump = await waitForSink(m);
    assert.match(dump, /^X-Mail-Args: <alice@example\.com>/m);
    assert.match(dump, /^X-Rcpt-Args: <bob@mx\.test>/m);
    assert.match(dump, /^X-Helo-Args: mail1\.test\.example$/m, 'EHLO with the server FQDN');
    // Bridgehead's own Received header travels with the message.
    assert.match(
      dump,
      /^Received: from client\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example with ESMTP/m,
    );
    await waitUntilDequeued(m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0, 'no DSN for a delivered message');
  });

  test('MX fail-over: nothing listens at the preferred MX, the next one takes the message', async () => {
    const m = await submit(srv, { from: ALICE, to: ['carol@failover.test'], subject: 'MX fail-over' });
    const dump = await waitForSink(m);
    assert.match(dump, /^X-Rcpt-Args: <carol@failover\.test>/m);
    await waitUntilDequeued(m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0);
    // The protocol log shows the refused preferred host, then the backup carrying the message.
    const log = sendLog(srv.dataDir).map((l) => `${l.event} ${l.data}`);
    const dead = log.lastIndexOf(`* attempting to connect to ${DEAD}:${port}`);
    assert.ok(dead >= 0, `an attempt at the preferred MX ${DEAD}:\n${log.join('\n')}`);
    const backup = log.indexOf(`* attempting to connect to ${SINK}:${port}`, dead);
    assert.ok(backup > dead, 'then an attempt at the backup MX');
    assert.ok(
      log.slice(backup).some((l) => l === '> RCPT TO:<carol@failover.test>'),
      'the backup MX carried the transaction',
    );
  });

  test('no MX record: the A record of the domain itself is the mail host', async () => {
    const m = await submit(srv, { from: ALICE, to: ['dave@a-only.test'], subject: 'A fallback' });
    const dump = await waitForSink(m);
    assert.match(dump, /^X-Rcpt-Args: <dave@a-only\.test>/m);
    await waitUntilDequeued(m);
  });

  test('a 60-record MX answer, truncated over UDP, is fetched again over TCP and used', async () => {
    const m = await submit(srv, { from: ALICE, to: ['ivan@big.test'], subject: 'many exchangers' });
    const dump = await waitForSink(m);
    assert.match(dump, /^X-Rcpt-Args: <ivan@big\.test>/m);
    await waitUntilDequeued(m);
    // dnsmasq answers TCP queries in a forked child: a query logged under another pid came by TCP.
    const askers = [
      ...dns.output.matchAll(/^dnsmasq\[(\d+)\]: query\[MX\] big\.test from 127\.0\.0\.1$/gm),
    ].map((q) => Number(q[1]));
    assert.ok(askers.includes(dns.pid!), `asked over UDP:\n${dns.output}`);
    assert.ok(
      askers.some((p) => p !== dns.pid),
      `and again over TCP:\n${dns.output}`,
    );
    const diag = await run(process.execPath, [CLI, 'dnsdiag', 'big.test', '--dns', dns.server], 30_000);
    const mx = diag.stdout.split('\n').find((l) => l.startsWith('  MX big.test → '));
    assert.equal(mx?.split(', ').length, 60, 'dnsdiag sees all 60 records');
  });

  test('554 after DATA (no enhanced status code) → NDR quoting the remote text', async () => {
    const m = await submit(srv, { from: ALICE, to: ['erin@scan.test'], subject: 'scanned away' });
    const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
    assert.equal(ndr!.contentType, 'multipart/report');
    assert.equal(ndr!.reportType, 'delivery-status');
    assert.equal(ndr!.subject, 'Undeliverable: scanned away');
    assert.equal(ndr!.recipients.length, 1);
    const r = ndr!.recipients[0]!;
    assert.equal(r['Final-Recipient'], 'rfc822; erin@scan.test');
    assert.equal(r['Action'], 'failed');
    assert.match(r['Status']!, /^5\.\d+\.\d+$/);
    assert.equal(r['Diagnostic-Code'], `smtp; ${SCAN_FAILURE}`, 'the reply as it was received');
    assert.match(r['Remote-MTA'] ?? '', /filter\.scan\.test/);
    assert.ok(ndr!.human.includes('Permanent scan failure. Email Session ID: {4C209928-2-3A6A8C0-1FFFF}'));
    assert.equal(ndr!.original?.messageId, m.messageId, 'the original comes back');
    await waitUntilDequeued(m);
  });

  test('NXDOMAIN → NDR 5.4.4', async () => {
    const m = await submit(srv, { from: ALICE, to: ['frank@nowhere.test'], subject: 'no such domain' });
    const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
    assert.equal(ndr!.subject, 'Undeliverable: no such domain');
    const r = ndr!.recipients[0]!;
    assert.equal(r['Final-Recipient'], 'rfc822; frank@nowhere.test');
    assert.equal(r['Action'], 'failed');
    assert.equal(r['Status'], '5.4.4');
    assert.match(ndr!.human, /Your message did not reach some or all of the intended recipients\./);
    assert.match(ndr!.human, /frank@nowhere\.test/);
    assert.match(ndr!.human, /NXDOMAIN/);
    assert.match(ndr!.human, /#5\.4\.4>/);
    assert.match(dns.output, /config nowhere\.test is NXDOMAIN/, 'the DNS server said NXDOMAIN');
    await waitUntilDequeued(m);
  });

  test('null MX (RFC 7505) → NDR 5.1.2', async () => {
    const m = await submit(srv, { from: ALICE, to: ['gina@nullmx.test'], subject: 'null MX' });
    const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
    const r = ndr!.recipients[0]!;
    assert.equal(r['Final-Recipient'], 'rfc822; gina@nullmx.test');
    assert.equal(r['Action'], 'failed');
    assert.equal(r['Status'], '5.1.2');
    assert.match(ndr!.human, /nullmx\.test does not accept mail/);
    await waitUntilDequeued(m);
  });

  test('dnsdiag walks MX, A and the delivery order against the same DNS server', async () => {
    const diag = (...args: string[]) => run(process.execPath, [CLI, 'dnsdiag', ...args], 30_000);
    const failover = await diag('failover.test', '--config', srv.configFile);
    assert.equal(failover.code, 0, failover.stderr);
    const lines = failover.stdout.split('\n');
    assert.ok(lines.includes(`DNS servers: ${dns.server}`), failover.stdout);
    // The MX line lists the records as the server returned them; the order line sorts them.
    const mx = lines.find((l) => l.startsWith('  MX failover.test → '));
    assert.deepEqual(mx?.slice('  MX failover.test → '.length).split(', ').sort(), [
      '10 dead.failover.test',
      '20 backup.failover.test',
    ]);
    assert.ok(lines.includes(`  A dead.failover.test → ${DEAD}`), failover.stdout);
    assert.ok(lines.includes(`  A backup.failover.test → ${SINK}`), failover.stdout);
    assert.ok(
      lines.includes(`  order: dead.failover.test [${DEAD}] → backup.failover.test [${SINK}]`),
      failover.stdout,
    );
    const tries = lines.slice(lines.indexOf('delivery would try, in order:') + 1).filter(Boolean);
    assert.deepEqual(tries, [
      `  dead.failover.test (preference 10) ${DEAD}:${port}`,
      `  backup.failover.test (preference 20) ${SINK}:${port}`,
    ]);

    const aOnly = await diag('a-only.test', '--dns', dns.server);
    assert.match(aOnly.stdout, /^ {2}MX a-only\.test → no MX records$/m);
    assert.match(aOnly.stdout, new RegExp(`^  A a-only\\.test → ${SINK.replace(/\./g, '\\.')}$`, 'm'));

    const nx = await diag('nowhere.test', '--config', srv.configFile);
    assert.match(nx.stdout, /^result: 5\.4\.4 .*NXDOMAIN.* \(permanent: NDR\)$/m);
    const nullMx = await diag('nullmx.test', '--config', srv.configFile);
    assert.match(nullMx.stdout, /^ {2}MX nullmx\.test → 0 \.$/m);
    assert.match(nullMx.stdout, /^result: 5\.1\.2 .* \(permanent: NDR\)$/m);
  });

  test('DNS server down → the message waits in its queue with 4.4.3, and goes once DNS answers', async () => {
    await dns.stop();
    const m = await submit(srv, { from: ALICE, to: ['hank@mx.test'], subject: 'DNS outage' });
    // Glitch retries come every second; the recipient stays visible in its remote queue.
    const rows = await waitFor(
      'two failed attempts with 4.4.3',
      () => {
        const r = queueRows(srv.dataDir, m.id);
        return r.length === 1 && r[0]!.attempts >= 2 ? r : undefined;
      },
      15_000,
    );
    assert.equal(rows[0]!.queue, 'mx.test');
    assert.equal(rows[0]!.state, 'retry');
    assert.match(rows[0]!.last_error ?? '', /^451 4\.4\.3 /);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0, 'a DNS outage is not an NDR');
    const diag = await run(process.execPath, [CLI, 'dnsdiag', 'mx.test', '--config', srv.configFile], 30_000);
    assert.match(diag.stdout, /^result: 4\.4\.3 .* \(transient: retry\)$/m);

    await dns.launch();
    const dump = await waitForSink(m, 20_000);
    assert.match(dump, /^X-Rcpt-Args: <hank@mx\.test>/m);
    await waitUntilDequeued(m);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0);
  });
});
