// Crash safety end to end (issue 3, item 6): a bounded stream of messages over several
// connections while the server is SIGKILLed at random moments and restarted. Every
// recipient of every acknowledged message must end up with exactly one copy; nothing,
// acknowledged or not, may be delivered twice, and no Maildir file may be torn.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { startServer, launch, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { listNew, mailboxDir, sleep, waitFor } from './maildir.js';
import { queueRows, queuedMessageCount, transaction } from './mail.js';

const RECIPIENTS = ['alice@example.com', 'bob@example.com'];
const TOTAL = 200; // acknowledged messages wanted
const MAX_ATTEMPTS = 400; // transactions tried, lost ones included
const WORKERS = 4;
const PER_CONNECTION = 10;
const KILLS = 3;
const SEND_LIMIT_MS = 45_000;
const DRAIN_LIMIT_MS = 30_000;

let srv: RunningServer | undefined;
after(async () => {
  await srv?.stop();
  if (srv) cleanup(srv.dir);
});

test('acknowledged mail survives SIGKILLs: one copy per recipient, none twice', async (t) => {
  srv = await startServer({
    engine: true,
    mutate: (org) => {
      org.directory.users.push({ name: 'Bob', addresses: ['bob@example.com'], mailbox: { server: 'MAIL1' } });
    },
  });
  const first = srv;
  const deadline = Date.now() + SEND_LIMIT_MS;
  const acked = new Set<string>();
  let reserved = 0;
  let attempts = 0;
  let lost = 0;
  let down = false;
  const unexpected: string[] = [];

  const worker = async (w: number) => {
    while (reserved < TOTAL && attempts < MAX_ATTEMPTS && Date.now() < deadline) {
      if (down) {
        await sleep(20);
        continue;
      }
      let c: RawSmtp;
      try {
        c = await RawSmtp.connect(first.port);
      } catch {
        await sleep(50); // the server is being restarted
        continue;
      }
      try {
        if (!(await c.reply()).startsWith('220')) throw new Error('no greeting');
        if (!(await c.cmd('EHLO crash.test')).startsWith('250')) throw new Error('EHLO refused');
        for (let i = 0; i < PER_CONNECTION && reserved < TOTAL && attempts < MAX_ATTEMPTS; i++) {
          reserved++;
          attempts++;
          try {
            const id = await transaction(c, {
              from: 'sender@fourthcoffee.test',
              to: RECIPIENTS,
              subject: `crash stream ${w}.${attempts}`,
              body: `${'payload '.repeat(60)}\r\n`.repeat(4),
            });
            acked.add(id);
          } catch (err) {
            reserved--; // not acknowledged: it does not count
            lost++;
            throw err;
          }
        }
        await c.cmd('QUIT').catch(() => undefined);
      } catch (err) {
        // A connection cut by a kill is expected; any other refusal is a failure.
        if (!c.closed) unexpected.push(String(err));
      } finally {
        c.close();
      }
    }
  };

  const kills: string[] = [];
  const killer = async () => {
    for (let k = 1; k <= KILLS; k++) {
      // A random point in the k-th part of the stream, plus a random few milliseconds.
      const at = Math.floor(((k - 0.5 + Math.random() * 0.8 - 0.4) * TOTAL) / (KILLS + 0.5));
      const reached = await waitFor(
        `${at} acknowledged messages`,
        () => acked.size >= at || Date.now() > deadline,
        SEND_LIMIT_MS,
      );
      if (!reached || Date.now() > deadline) break;
      await sleep(Math.random() * 30);
      down = true;
      await srv!.kill9();
      kills.push(`kill ${k} after ${acked.size} acknowledged`);
      await sleep(Math.random() * 200);
      srv = await launch({
        dir: first.dir,
        configFile: first.configFile,
        port: first.port,
        host: first.host,
        hold: false,
      });
      down = false;
    }
  };

  await Promise.all([killer(), ...Array.from({ length: WORKERS }, (_, w) => worker(w))]);
  t.diagnostic(`${kills.join('; ')}; ${acked.size} acknowledged, ${lost} cut off, ${attempts} attempts`);
  assert.deepEqual(unexpected, [], 'errors other than a cut connection');
  assert.equal(kills.length, KILLS, 'every kill happened during the stream');
  assert.equal(acked.size, TOTAL, 'the stream completed within its limits');

  await waitFor(
    'the queues to drain',
    () => queuedMessageCount(first.dataDir) === 0,
    DRAIN_LIMIT_MS,
    100,
  ).catch((err: Error) => {
    // Say what is stuck where, for whoever reads the failure.
    const stuck = (queueRows(first.dataDir) ?? []).filter((r) => r.state !== 'done');
    const summary = new Map<string, number>();
    for (const r of stuck) {
      const key = `${r.queue}/${r.state}/${r.last_error ?? ''}`;
      summary.set(key, (summary.get(key) ?? 0) + 1);
    }
    throw new Error(`${err.message}; open recipients: ${JSON.stringify([...summary])}`);
  });

  for (const rcpt of RECIPIENTS) {
    const names = listNew(first.dataDir, rcpt);
    const perId = new Map<string, number>();
    for (const n of names) {
      const id = n.slice(0, n.indexOf('.'));
      perId.set(id, (perId.get(id) ?? 0) + 1);
      // Name says "S=<size>": a file torn by a crash would not match.
      const size = Number(/,S=(\d+)/.exec(n)?.[1]);
      assert.equal(statSync(path.join(mailboxDir(first.dataDir, rcpt), 'new', n)).size, size, n);
    }
    const twice = [...perId].filter(([, n]) => n > 1).map(([id]) => id);
    assert.deepEqual(twice, [], `messages delivered twice to ${rcpt}`);
    const missing = [...acked].filter((id) => !perId.has(id));
    assert.deepEqual(missing, [], `acknowledged messages missing from ${rcpt}`);
  }
  // Nothing is left behind in the spool once the queues are empty.
  const spoolLeft = readdirSync(path.join(first.dataDir, 'spool')).filter((n) => n.endsWith('.msg'));
  assert.deepEqual(spoolLeft, []);
});
