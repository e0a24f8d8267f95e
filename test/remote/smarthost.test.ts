// Smart hosts [SPEC §7, 003:787-1343]: with delivery.smartHost every remote message goes to
// that host instead of the recipient domain's MX, in one queue named after the smart host.
// (1) "[127.0.0.3]" → smtp-sink; the DNS server is never asked about the recipient domain.
// (2) "relay.test:<port>": a name looked up in DNS, and a port of its own.
// (3) A second Bridgehead as the smart host, refusing anonymous mail: the first one relays
// over STARTTLS (required) with AUTH and the message lands in a mailbox there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { hashPassword } from '../../src/directory/passwords.js';
import { cannotRun, Dnsmasq, sharedPort, SmtpSink, waitFor } from './peers.js';
import { dsnsAbout, loopbackDelivery, mailbox, queueRows, sendLog, submit, trackingEvents } from './mail.js';

const SINK = '127.0.0.3';
const SMART = '127.0.0.5';
const ALICE = 'alice@example.com';
const RELAY_LOGIN = 'relay@fabrikam.test';
const RELAY_PASSWORD = 'correct horse battery staple';

const skip = cannotRun('dnsmasq', 'smtpSink');

describe('smart hosts', { skip }, () => {
  let dir: string;
  let port: number;
  let dns: Dnsmasq;
  let sink: SmtpSink;
  const servers: RunningServer[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bh-remote-smarthost-'));
    chmodSync(dir, 0o755); // smtp-sink runs as nobody and dumps below
    port = await sharedPort([SINK, SMART]);
    // A DNS server that knows no mail domain, only the smart host's name.
    dns = await Dnsmasq.start([`--host-record=relay.test,${SINK}`]);
    sink = await SmtpSink.start(path.join(dir, 'sink'), SINK, port);
  });

  after(async () => {
    for (const s of servers) await s.stop();
    await sink?.stop();
    await dns?.stop();
    if (dir) cleanup(dir);
  });

  async function bridgehead(mutate: (org: Record<string, any>) => void, host?: string) {
    const s = await startServer({
      engine: true,
      dir: mkdtempSync(path.join(dir, 'bh-')),
      ...(host ? { host, port } : {}),
      mutate,
    });
    servers.push(s);
    return s;
  }

  test('"[127.0.0.3]": mail for any domain goes to the smart host, DNS is not asked', async () => {
    const srv = await bridgehead((org) =>
      loopbackDelivery(org, { dns: dns.server, outboundPort: port, delivery: { smartHost: `[${SINK}]` } }),
    );
    const m = await submit(srv, { from: ALICE, to: ['bob@elsewhere.test'], subject: 'via the smart host' });
    const dump = await waitFor(
      'the message at smtp-sink',
      () => sink.messages().find((d) => d.includes(`Message-ID: ${m.messageId}`) && d.includes(m.subject)),
      15_000,
      100,
    );
    assert.match(dump, /^X-Rcpt-Args: <bob@elsewhere\.test>/m);
    assert.match(dump, /^X-Mail-Args: <alice@example\.com>/m);
    await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, m.id).length === 0);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0);
    assert.doesNotMatch(dns.output, /elsewhere\.test/, 'no DNS query for the recipient domain');
    // Tracking records the send through the smart host's queue.
    const send = await waitFor('a SEND tracking event', () =>
      trackingEvents(srv.dataDir, m.id).find((e) => e.event === 'SEND'),
    );
    assert.equal(send.connector_id, `[${SINK}]`);
    assert.match(send.recipients ?? '', /bob@elsewhere\.test/);
  });

  test('"relay.test:<port>": a smart host by name is looked up in DNS, its port wins', async () => {
    // Nothing listens on the outbound port here: only the smart host's own port can work.
    const unused = await sharedPort([SINK]);
    const srv = await bridgehead((org) =>
      loopbackDelivery(org, {
        dns: dns.server,
        outboundPort: unused,
        delivery: { smartHost: `relay.test:${port}` },
      }),
    );
    const m = await submit(srv, { from: ALICE, to: ['carol@faraway.test'], subject: 'named smart host' });
    const dump = await waitFor(
      'the message at smtp-sink',
      () => sink.messages().find((d) => d.includes(`Message-ID: ${m.messageId}`)),
      15_000,
      100,
    );
    assert.match(dump, /^X-Rcpt-Args: <carol@faraway\.test>/m);
    await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, m.id).length === 0);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0);
    assert.match(dns.output, /query\[A\] relay\.test from 127\.0\.0\.1/);
    assert.doesNotMatch(dns.output, /faraway\.test/, 'no DNS query for the recipient domain');
    const send = await waitFor('a SEND tracking event', () =>
      trackingEvents(srv.dataDir, m.id).find((e) => e.event === 'SEND'),
    );
    assert.equal(send.connector_id, `relay.test:${port}`, 'one queue named after the smart host');
  });

  test('smart host requiring AUTH over STARTTLS: a second Bridgehead takes the relayed message', async () => {
    const passwordHash = await hashPassword(RELAY_PASSWORD);
    const smart = await bridgehead((org) => {
      const server = org.routingGroups[0].servers[0];
      server.name = 'SMART1';
      server.fqdn = 'smart.fabrikam.test';
      const vs = server.virtualServers[0];
      // No anonymous mail at all: only an authenticated client may send.
      vs.authentication = { anonymous: false, basic: true, requireTls: true };
      vs.delivery = { externalDnsServers: [dns.server] };
      org.recipientPolicies = [
        { name: 'Default', addresses: [{ address: '@fabrikam.test', authoritative: true }] },
      ];
      org.directory.users = [
        { name: 'Bob', addresses: ['bob@fabrikam.test'], mailbox: { server: 'SMART1' } },
        { name: 'Relay Account', addresses: [RELAY_LOGIN], mailbox: { server: 'SMART1' }, passwordHash },
      ];
    }, SMART);

    // Anonymous senders are refused there, so the message below can only arrive by AUTH.
    const anon = await RawSmtp.connect(port, SMART);
    try {
      assert.match(await anon.reply(), /^220 /);
      assert.match(await anon.cmd('EHLO probe.test'), /^250/);
      assert.match(await anon.cmd('MAIL FROM:<alice@example.com>'), /^530 5\.7\.\d /);
    } finally {
      anon.close();
    }

    const srv = await bridgehead((org) =>
      loopbackDelivery(org, {
        dns: dns.server,
        outboundPort: port,
        delivery: {
          smartHost: `[${SMART}]`,
          outboundSecurity: {
            auth: 'basic',
            username: RELAY_LOGIN,
            password: RELAY_PASSWORD,
            tls: 'required',
            verifyCertificate: false,
          },
        },
      }),
    );
    const m = await submit(srv, { from: ALICE, to: ['bob@fabrikam.test'], subject: 'relayed with AUTH' });
    const [delivered] = await waitFor(
      "the message in Bob's mailbox on the smart host",
      () => {
        const found = mailbox(smart.dataDir, 'bob@fabrikam.test').filter((f) =>
          f.content.includes(`Message-ID: ${m.messageId}`),
        );
        return found.length ? found : undefined;
      },
      15_000,
      100,
    );
    // Received by the smart host over TLS from an authenticated client, after our own hop.
    assert.match(
      delivered!.content,
      /^Received: from mail1\.test\.example \(\[127\.0\.0\.1\]\) by smart\.fabrikam\.test with ESMTPSA\r?$/m,
    );
    assert.match(
      delivered!.content,
      /^Received: from client\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example/m,
    );
    await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, m.id).length === 0);
    assert.equal(dsnsAbout(srv.dataDir, ALICE, m).length, 0);

    // Our send log: STARTTLS, then AUTH inside TLS, with the credentials masked.
    const log = sendLog(srv.dataDir).map((l) => `${l.event} ${l.data}`.trimEnd());
    const idx = (re: RegExp) => log.findIndex((l) => re.test(l));
    const steps = [
      idx(new RegExp(`^\\* attempting to connect to ${SMART.replace(/\./g, '\\.')}:${port}$`)),
      idx(/^> STARTTLS$/),
      idx(/^\* TLS negotiated: TLSv1\.[23]$/),
      idx(/^> AUTH PLAIN \*\*\*\*$/),
      idx(/^< 235 /),
      idx(/^> RCPT TO:<bob@fabrikam\.test>/),
    ];
    assert.ok(
      steps.every((i) => i >= 0),
      `every step is logged:\n${log.join('\n')}`,
    );
    assert.deepEqual(
      steps,
      [...steps].sort((a, b) => a - b),
      `in order:\n${log.join('\n')}`,
    );
    const token = Buffer.from(`\0${RELAY_LOGIN}\0${RELAY_PASSWORD}`).toString('base64');
    const sendDir = path.join(srv.dataDir, 'logs', 'protocol', 'send');
    for (const vs of readdirSync(sendDir))
      for (const f of readdirSync(path.join(sendDir, vs))) {
        const text = readFileSync(path.join(sendDir, vs, f), 'utf8');
        assert.ok(!text.includes(token) && !text.includes(RELAY_PASSWORD), 'no credentials in the log');
      }
  });
});
