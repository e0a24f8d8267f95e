// Delay DSNs carry what the receiver said in their machine-readable part (RFC 3464 §2.3):
// Postfix's smtp-sink answers 450 at RCPT (one recipient) or after DATA (the whole message),
// the delay notification time is one second, and the delay DSN's message/delivery-status
// part says `Action: delayed`, the receiver's 4.x.x status, `Remote-MTA` and the reply as
// `Diagnostic-Code`, as a failure DSN does. Parsed with Python's email package.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { cannotRun, SmtpSink } from './peers.js';
import { submit, waitForDsns } from './mail.js';

const NET = '127.0.76';
const BRIDGEHEAD = `${NET}.31`;
const RCPT_SINK = `${NET}.32`;
const DATA_SINK = `${NET}.33`;
const SINK_PORT = 47631;
const SMTP_PORT = 47632;
const ALICE = 'alice@example.com';

const skip = cannotRun('smtpSink');

describe('delay DSNs say who deferred and what it said', { skip }, () => {
  let dir: string;
  let srv: RunningServer;
  const sinks: SmtpSink[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bh-delay-dsn-'));
    chmodSync(dir, 0o755); // smtp-sink runs as nobody and dumps below
    sinks.push(await SmtpSink.start(path.join(dir, 'rcpt'), RCPT_SINK, SINK_PORT, ['-r', 'RCPT']));
    sinks.push(await SmtpSink.start(path.join(dir, 'data'), DATA_SINK, SINK_PORT, ['-r', '.']));
    srv = await startServer({
      engine: true,
      host: BRIDGEHEAD,
      port: SMTP_PORT,
      dir: mkdtempSync(path.join(dir, 'bh-')),
      mutate: (org) => {
        const vs = org.routingGroups[0].servers[0].virtualServers[0];
        vs.relay = { list: ['127.0.0.1', BRIDGEHEAD] };
        vs.delivery = {
          glitchRetryInterval: '1s',
          glitchRetryCount: 5,
          outbound: { delayNotification: '1s', expiration: '1h' },
        };
        org.routingGroups[0].connectors = [
          {
            type: 'smtp',
            name: 'Deferred at RCPT',
            addressSpaces: ['SMTP:rcpt.test:1'],
            smartHosts: [`[${RCPT_SINK}]:${SINK_PORT}`],
          },
          {
            type: 'smtp',
            name: 'Deferred after DATA',
            addressSpaces: ['SMTP:data.test:1'],
            smartHosts: [`[${DATA_SINK}]:${SINK_PORT}`],
          },
        ];
      },
    });
  });

  after(async () => {
    await srv?.stop();
    for (const s of sinks) await s.stop();
    if (dir) cleanup(dir);
  });

  for (const [where, domain, sink] of [
    ['RCPT', 'rcpt.test', RCPT_SINK],
    ['the end of DATA', 'data.test', DATA_SINK],
  ] as const) {
    test(`450 at ${where}: Action delayed, the 4.x.x status, Remote-MTA and Diagnostic-Code`, async () => {
      const m = await submit(
        { port: SMTP_PORT, host: BRIDGEHEAD },
        { from: ALICE, to: [`bob@${domain}`], subject: `deferred at ${where}` },
      );
      const [delay] = await waitForDsns(srv.dataDir, ALICE, m, 1, 20_000);
      assert.equal(delay!.subject, `Delayed: deferred at ${where}`);
      assert.equal(delay!.recipients.length, 1, JSON.stringify(delay!.recipients));
      const r = delay!.recipients[0]!;
      assert.equal(r['Final-Recipient'], `rfc822; bob@${domain}`);
      assert.equal(r['Action'], 'delayed');
      assert.equal(r['Status'], '4.3.0', 'the status the receiver gave');
      assert.equal(r['Remote-MTA'], `dns; ${sink}`);
      assert.equal(r['Diagnostic-Code'], 'smtp; 450 4.3.0 Error: command failed');
      assert.ok(r['Will-Retry-Until'], 'and until when it keeps trying');
      // The human part says the same, for people.
      assert.match(delay!.human, /Error: command failed/);
    });
  }
});
