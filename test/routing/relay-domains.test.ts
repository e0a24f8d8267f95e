// A partner's domain and a shared address space on one real server, with Postfix's smtp-sink
// as the partner's smart host and as the "forward unresolved recipients" host (issue 17):
// - "Allow messages to be relayed to these domains" on a connector's address space lets an
//   anonymous client send to that domain through the connector's local bridgehead virtual
//   server only; other domains, and other virtual servers, still answer 550 5.7.1
//   [003:2404, 2461, 2939, 4548, 8707].
// - "Forward all mail with unresolved recipients to host" applies to authoritative domains:
//   unknown@example.com goes to that host; a non-authoritative domain is not affected and is
//   routed to its matching connector [003:2588, 2971, 5055]. Without the setting an unknown
//   user of an authoritative domain gets 5.1.1: test/pipeline/dsn.test.ts, first test.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { queueRows, transaction } from '../pipeline/mail.js';
import { cannotRun, SmtpSink, waitFor as poll } from '../remote/peers.js';

const HOST = '127.0.85.1';
const INBOUND_PORT = 48200;
const INTERNAL_PORT = 48201;
const PARTNER = { ip: '127.0.85.2', port: 48202 };
const FORWARD = { ip: '127.0.85.3', port: 48203 };

let srv: RunningServer;
let partner: SmtpSink;
let forward: SmtpSink;
const dirs: string[] = [];
const skip = cannotRun('smtpSink');

before(async () => {
  if (skip) return;
  const tmp = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'bh-relaydomains-'));
    chmodSync(d, 0o755); // smtp-sink runs as nobody and dumps below
    dirs.push(d);
    return d;
  };
  partner = await SmtpSink.start(tmp(), PARTNER.ip, PARTNER.port);
  forward = await SmtpSink.start(tmp(), FORWARD.ip, FORWARD.port);
  srv = await startServer({
    engine: true,
    host: HOST,
    port: INBOUND_PORT,
    mutate: (org) => {
      const server = org.routingGroups[0].servers[0];
      server.virtualServers[0].messages = { forwardUnresolvedTo: `[${FORWARD.ip}]:${FORWARD.port}` };
      server.virtualServers.push({ name: 'Internal SMTP Virtual Server', ip: HOST, port: INTERNAL_PORT });
      org.routingGroups[0].connectors = [
        {
          type: 'smtp',
          name: 'Partner',
          localBridgeheads: ['MAIL1/Default SMTP Virtual Server'],
          addressSpaces: [
            { type: 'SMTP', pattern: 'partner.example', cost: 1, allowRelay: true },
            'SMTP:shared.example:1',
          ],
          smartHosts: [`[${PARTNER.ip}]:${PARTNER.port}`],
        },
      ];
      org.recipientPolicies[0].addresses.push({ address: '@shared.example', authoritative: false });
    },
  });
});

after(async () => {
  await srv?.stop();
  await partner?.stop();
  await forward?.stop();
  if (srv) cleanup(srv.dir);
  for (const d of dirs) cleanup(d);
});

/** The RCPT reply an anonymous client gets from the virtual server on `port`. */
async function rcptReply(port: number, to: string): Promise<string> {
  const c = await RawSmtp.connect(port, HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'), /^250 /);
    const reply = await c.cmd(`RCPT TO:<${to}>`);
    await c.cmd('QUIT');
    return reply;
  } finally {
    c.close();
  }
}

async function send(port: number, from: string, to: string): Promise<string> {
  const c = await RawSmtp.connect(port, HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const id = await transaction(c, { from, to: [to], subject: `to ${to}`, body: 'Hello.\r\n' });
    await c.cmd('QUIT');
    return id;
  } finally {
    c.close();
  }
}

/** Polls; on failure the error carries the message's queue rows (where it waits, and why). */
async function waitFor(what: string, probe: () => boolean, timeoutMs: number, id: string): Promise<void> {
  try {
    await poll(what, probe, timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${JSON.stringify(queueRows(srv.dataDir, id), null, 1)}`);
  }
}

/** The smtp-sink dumps of the message sent to `rcpt` (its subject names it). */
const dumpsFor = (sink: SmtpSink, rcpt: string) =>
  sink.messages().filter((m) => m.includes(`Subject: to ${rcpt}`));

describe('relay domains and unresolved recipients', { skip }, () => {
  test('allowRelay on the address space: the local bridgehead virtual server accepts the partner domain', async () => {
    assert.equal(await rcptReply(INBOUND_PORT, 'ted@partner.example'), '250 2.1.5 ted@partner.example');
    assert.equal(
      await rcptReply(INBOUND_PORT, 'ted@elsewhere.example'),
      '550 5.7.1 Unable to relay for ted@elsewhere.example',
    );
    // A space without the flag is routed, not relayed for.
    assert.equal(
      await rcptReply(INBOUND_PORT, 'ted@shared-not.example'),
      '550 5.7.1 Unable to relay for ted@shared-not.example',
    );
    // The partner's domain is accepted, but a routing trick inside it is still relay.
    assert.equal(
      await rcptReply(INBOUND_PORT, 'ted%elsewhere.example@partner.example'),
      '550 5.7.1 Unable to relay for ted%elsewhere.example@partner.example',
    );
  });

  test('a virtual server that is not a local bridgehead of the connector still refuses', async () => {
    assert.equal(
      await rcptReply(INTERNAL_PORT, 'ted@partner.example'),
      '550 5.7.1 Unable to relay for ted@partner.example',
    );
  });

  test("relayed mail reaches the connector's smart host", async () => {
    const id = await send(INBOUND_PORT, 'kim@fourthcoffee.test', 'ted@partner.example');
    await waitFor(
      `${id} at the partner's smart host`,
      () => dumpsFor(partner, 'ted@partner.example').length > 0,
      20_000,
      id,
    );
    assert.match(dumpsFor(partner, 'ted@partner.example')[0]!, /Subject: to ted@partner\.example/);
    assert.equal(dumpsFor(forward, 'ted@partner.example').length, 0);
  });

  test('an unresolved recipient of an authoritative domain goes to forwardUnresolvedTo', async () => {
    const id = await send(INBOUND_PORT, 'alice@example.com', 'unix.user@example.com');
    await waitFor(
      `${id} at the forward host`,
      () => dumpsFor(forward, 'unix.user@example.com').length > 0,
      20_000,
      id,
    );
    assert.match(dumpsFor(forward, 'unix.user@example.com')[0]!, /Subject: to unix\.user@example\.com/);
    assert.equal(dumpsFor(partner, 'unix.user@example.com').length, 0);
  });

  test('an unresolved recipient of a non-authoritative domain takes its connector, not forwardUnresolvedTo', async () => {
    const id = await send(INBOUND_PORT, 'alice@example.com', 'lee@shared.example');
    await waitFor(
      `${id} at the partner's smart host`,
      () => dumpsFor(partner, 'lee@shared.example').length > 0,
      20_000,
      id,
    );
    assert.equal(dumpsFor(forward, 'lee@shared.example').length, 0);
  });
});
