// Mail whose next hop is this server itself [003:7746-7748]: the MX of a domain points at
// the server, or a connector's smart host is a name that resolves to it. Without a check
// the message would go out, come back in (the server relays for itself) and circle until
// its hop count ran out; it fails at once with 5.3.5 and an NDR, without a connection.
// dnsmasq (authoritative for .test) answers the lookups; the server listens on 127.0.86.1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { cannotRun, Dnsmasq } from './peers.js';
import { loopbackDelivery, mailbox, sendLog, submit, trackingEvents, waitForDsns } from './mail.js';

const SELF = '127.0.86.1';
const PORT = 48310;
const ALICE = 'alice@example.com';

/** Received header fields of the original the NDR returns (message/rfc822 or headers). */
function returnedReceived(ndr: string): number {
  const at = ndr.search(/Content-Type: (message\/rfc822|text\/rfc822-headers)/i);
  assert.ok(at > 0, 'the NDR returns the original');
  return ndr.slice(at).match(/^Received:/gim)?.length ?? 0;
}

describe('a next hop that is this server: 5.3.5 at once', { skip: cannotRun('dnsmasq') }, () => {
  let dir: string;
  let dns: Dnsmasq;
  let srv: RunningServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bh-loop-'));
    dns = await Dnsmasq.start([
      `--mx-host=loop.test,mx.loop.test,10`,
      `--host-record=mx.loop.test,${SELF}`,
      `--host-record=relay.hub.test,${SELF}`,
    ]);
    srv = await startServer({
      engine: true,
      host: SELF,
      port: PORT,
      dir,
      mutate: (org) => {
        loopbackDelivery(org, { dns: dns.server, outboundPort: PORT });
        // The server relays for itself too: without the check, mail would come back in.
        org.routingGroups[0].servers[0].virtualServers[0].relay = { list: ['127.0.0.1', SELF] };
        org.routingGroups[0].connectors = [
          {
            name: 'Hub',
            type: 'smtp',
            addressSpaces: ['SMTP:hub.test:1'],
            smartHosts: [`relay.hub.test:${PORT}`],
          },
        ];
      },
    });
  });

  after(async () => {
    await srv?.stop();
    await dns?.stop();
    if (dir) cleanup(dir);
  });

  for (const [to, via] of [
    ['bob@loop.test', 'its MX is this server'],
    ['carol@hub.test', "the connector's smart host is this server"],
  ] as const) {
    test(`${via}: NDR 5.3.5, no connection, tracking FAIL`, async () => {
      const m = await submit(srv, { from: ALICE, to: [to], subject: `loop ${to}` });
      const [ndr] = await waitForDsns(srv.dataDir, ALICE, m);
      const r = ndr!.recipients[0]!;
      assert.equal(r['Final-Recipient'], `rfc822; ${to}`);
      assert.equal(r['Action'], 'failed');
      assert.equal(r['Status'], '5.3.5');
      assert.match(ndr!.human, /#5\.3\.5>/);
      assert.match(ndr!.human, /loop/i);
      const raw = mailbox(srv.dataDir, ALICE).find((x) => x.content.includes(`In-Reply-To: ${m.messageId}`));
      assert.equal(returnedReceived(raw!.content), 1, 'the message never came back in');
      const fail = trackingEvents(srv.dataDir, m.id).filter((e) => e.event === 'FAIL');
      assert.equal(fail.length, 1, JSON.stringify(trackingEvents(srv.dataDir, m.id)));
      assert.match(fail[0]!.recipient_status ?? '', /5\.3\.5/);
      // No outbound SMTP session was opened: the send log is empty.
      assert.deepEqual(sendLog(srv.dataDir), []);
    });
  }
});
