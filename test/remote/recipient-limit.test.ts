// A next hop's recipient limit (issue 12): a private Postfix with smtpd_recipient_limit = 3
// answers "452 4.5.3 Error: too many recipients" to the fourth RCPT and after. Bridgehead
// sends the rest in following transactions on the same connection at once (RFC 5321
// §4.5.3.1.10): all 8 recipients delivered, no NDR, and tracking and the send protocol
// log show the transactions.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { cannotRun, PostfixPeer, waitFor } from './peers.js';
import { loopbackDelivery, mailbox, sendLog, submit, trackingEvents } from './mail.js';

const RECEIVER = '127.0.74.6';
const PORT = 47401;
const ALICE = 'alice@example.com';
const RECIPIENTS = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `r${n}@pf.test`);

const skip = cannotRun('postfix');

describe('a next hop with a recipient limit', { skip }, () => {
  let dir: string;
  let postfix: PostfixPeer;
  let srv: RunningServer;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bh-rcpt-limit-'));
    chmodSync(dir, 0o755); // the postfix and nobody users reach their directories below
    postfix = await PostfixPeer.start({
      dir: path.join(dir, 'postfix'),
      ip: RECEIVER,
      port: PORT,
      hostname: 'mail.pf.test',
      domains: ['pf.test'],
      mailboxes: RECIPIENTS,
      mainCf: ['smtpd_recipient_limit = 3'],
    });
    srv = await startServer({
      engine: true,
      dir: mkdtempSync(path.join(dir, 'bh-')),
      host: '127.0.74.7',
      port: 47402,
      mutate: (org) =>
        loopbackDelivery(org, {
          dns: '127.0.74.8',
          outboundPort: PORT,
          delivery: { smartHost: `[${RECEIVER}]:${PORT}` },
          // A recipient left over for the retry interval would show: make it long.
          outbound: { first: '10m', second: '10m', third: '10m', subsequent: '10m' },
        }),
    });
  });

  after(async () => {
    await srv?.stop();
    await postfix?.stop();
    if (dir) cleanup(dir);
  });

  test('8 recipients, limit 3: all delivered in 3 transactions on one connection, no NDR', async () => {
    const m = await submit(srv, { from: ALICE, to: RECIPIENTS, subject: 'eight recipients' });
    for (const r of RECIPIENTS)
      await waitFor(
        `${r} delivered by Postfix`,
        () => postfix.delivered(r).find((d) => d.includes(`Message-ID: ${m.messageId}`)),
        20_000,
        100,
      );
    // No NDR for alice, no recipient left in a queue.
    assert.equal(
      mailbox(srv.dataDir, ALICE).filter((x) => x.content.includes(m.messageId)).length,
      0,
      'no NDR',
    );
    const events = await waitFor('SEND events for all 8', () => {
      const sent = trackingEvents(srv.dataDir, m.id).filter((e) => e.event === 'SEND');
      const all = sent.flatMap((e) => JSON.parse(e.recipients ?? '[]') as string[]);
      return all.length === 8 ? trackingEvents(srv.dataDir, m.id) : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(trackingEvents(srv.dataDir, m.id))}`);
    });
    assert.ok(!events.some((e) => e.event === 'FAIL' || e.event === 'DEFER'), JSON.stringify(events));
    const send = events.find((e) => e.event === 'SEND')!;
    assert.match(send.message_info ?? '', /^3 transactions \(the next hop's recipient limit: 452\)$/);
    // The send protocol log: 3 MAIL FROM in one session, 452 4.5.3 for the fourth RCPT.
    const lines = sendLog(srv.dataDir).filter((l) => l.event === '>' || l.event === '<');
    const mails = lines.filter((l) => l.data.startsWith('MAIL FROM:<alice@example.com>'));
    assert.equal(mails.length, 3, lines.map((l) => `${l.session} ${l.event} ${l.data}`).join('\n'));
    assert.equal(new Set(mails.map((l) => l.session)).size, 1, 'one connection');
    assert.ok(
      lines.some((l) => /^452 4\.5\.3 /.test(l.data)),
      'Postfix said 452 4.5.3',
    );
  });
});
