// Outbound connections come from the server's address (issue 12): a hop between two servers
// on 127.0.74.2 and 127.0.74.3 shows the sending server's address in the next hop's
// Received header, and a smart host (Postfix's smtp-sink) sees a virtual server's
// configured outbound.sourceAddress, so SPF, PTR and firewall rules for the server match.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Organisation, waitFor, type GroupSpec } from './cluster.js';
import { SmtpSink, cannotRun } from '../remote/peers.js';

const skip = cannotRun('smtpSink');
let org: Organisation;
let sink: SmtpSink;
let sinkDir: string;

before(async () => {
  if (skip) return;
  sinkDir = mkdtempSync(path.join(os.tmpdir(), 'bh-source-'));
  chmodSync(sinkDir, 0o755); // smtp-sink runs as nobody and dumps below
  const sinkPort = 47400;
  sink = await SmtpSink.start(sinkDir, '127.0.74.5', sinkPort);
  const group: GroupSpec = {
    name: 'Main',
    servers: [
      { name: 'A1', address: '127.0.74.2' },
      { name: 'A2', address: '127.0.74.3' },
    ],
  };
  org = await Organisation.create({
    groups: [group],
    directory: {
      users: [
        { name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'A1' } },
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'A1' } },
        { name: 'Bob', addresses: ['bob@example.com'], mailbox: { server: 'A2' } },
      ],
    },
    mutate: (o) => {
      for (const g of o.routingGroups)
        for (const s of g.servers)
          for (const vs of s.virtualServers) vs.relay = { mode: 'onlyList', list: ['127.0.0.0/8'] };
      // A2 sends Internet mail to the smart host from a source address of its own.
      const a2 = o.routingGroups[0].servers.find((s: any) => s.name === 'A2').virtualServers[0];
      a2.delivery.smartHost = `[127.0.74.5]:${sinkPort}`;
      a2.outbound = { sourceAddress: '127.0.74.4' };
    },
  });
  await org.startAll();
  await org.converged(undefined, 30_000);
});

after(async () => {
  await org?.destroy();
  await sink?.stop();
  if (sinkDir) rmSync(sinkDir, { recursive: true, force: true });
});

test(
  'a hop between servers comes from the sending server: Received at the next hop shows [127.0.74.2]',
  { skip },
  async () => {
    const { messageId } = await org.send('A1', { from: 'alice@example.com', to: ['bob@example.com'] });
    const m = await waitFor(
      "the message in bob's Maildir on A2",
      () =>
        org.mailbox('A2', 'bob@example.com').find((x) => x.content.includes(`Message-ID: <${messageId}>`)),
      20_000,
    );
    const received = m.content.split(/\r?\n(?=\S)/).filter((l) => l.startsWith('Received:'));
    // The newest Received (A2's, first) names A1's address, not 127.0.0.1.
    assert.match(received[0]!, /\(\[127\.0\.74\.2\]\) by a2\.org\.test/, received.join('\n'));
    assert.doesNotMatch(received[0]!, /\[127\.0\.0\.1\]/);
  },
);

test(
  'a smart host sees the configured outbound.sourceAddress (smtp-sink X-Client-Addr)',
  { skip },
  async () => {
    const { messageId } = await org.send('A2', { from: 'bob@example.com', to: ['zoe@fabrikam.test'] });
    const dump = await waitFor(
      'the message at smtp-sink',
      () => sink.messages().find((d) => d.includes(`Message-ID: <${messageId}>`)),
      20_000,
    ).catch(async (err: Error) => {
      const q = await org.cli(['queue', 'find', ...org.apiArgs('A2'), '--json']);
      throw new Error(`${err.message}\n${q.stdout}\n${sink.output}\n${sink.messages().length}`);
    });
    assert.match(dump, /^X-Client-Addr: 127\.0\.74\.4$/m, dump.slice(0, 400));
  },
);
