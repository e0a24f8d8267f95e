// A next hop that accepts the connection and then drops it in the middle of the pipelined
// MAIL/RCPT/DATA. The operator finds the message in Retry with the reason, and the server
// keeps running. (The DATA reply read ahead in the pipelined batch used to become an
// unhandled rejection that killed the process, and again on every retry after a restart;
// fixed in src/smtp/client/client.ts by 2502f30.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, freePort, cleanup, type RunningServer } from '../helpers/server.js';
import { bhJson, compose, send, waitFor } from './ops.js';

let server: RunningServer;
let dropper: net.Server;
let peerPort: number;
const sockets = new Set<net.Socket>();

before(async () => {
  peerPort = await freePort();
  // The misbehaving peer: a banner, EHLO with PIPELINING, then the connection is cut.
  dropper = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write('220 dropper.test ESMTP\r\n');
    s.on('data', (d) => {
      const text = d.toString();
      if (/^EHLO/i.test(text)) s.write('250-dropper.test\r\n250 PIPELINING\r\n');
      else if (/^MAIL/i.test(text)) s.destroy();
    });
  });
  await new Promise<void>((resolve) => dropper.listen(peerPort, '127.0.0.1', resolve));
  server = await startServer({
    engine: true,
    mutate: (org) => {
      const vs = org.routingGroups[0].servers[0].virtualServers[0];
      vs.relay = { list: ['127.0.0.1'] };
      vs.delivery = { smartHost: `[127.0.0.1]:${peerPort}`, glitchRetryCount: 0, outbound: { first: '10m' } };
    },
  });
});

after(async () => {
  await server?.stop();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (dropper ? dropper.close(() => resolve()) : resolve()));
  if (server) cleanup(server.dir);
});

test('a peer that drops the connection mid-transaction leaves the message in Retry and the server running', async () => {
  const Q = `[127.0.0.1]:${peerPort}`;
  await send(
    server.port,
    'alice@example.com',
    ['bob@remote.test'],
    compose({
      from: 'alice@example.com',
      to: ['bob@remote.test'],
      subject: 'dropped',
      messageId: `<ops.drop.${process.pid}@client.test>`,
      body: 'The peer hangs up.\n',
    }),
  );
  const outcome = await waitFor(
    'the message in Retry, or the server gone',
    async () => {
      if (server.proc.exitCode !== null || server.proc.signalCode !== null) return { crashed: true as const };
      const q = (
        await bhJson<{ name: string; state: string; lastError?: string }[]>([
          'queue',
          'list',
          '--api',
          server.api!,
          '--data-dir',
          server.dataDir,
        ])
      ).find((x) => x.name === Q);
      return q?.state === 'Retry' ? q : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 200 },
  );
  assert.ok(!('crashed' in outcome), `the server died:\n${server.output().slice(-1500)}`);
  assert.match(outcome.lastError ?? '', /^451 4\.4\.2 Connection to 127\.0\.0\.1 closed/);
});
