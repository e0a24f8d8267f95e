// A next hop that is down (issue 11): its queue goes to Retry as a whole and is tried once
// per retry interval, one connection however many messages wait (Postfix's dead-destination
// cache). Mail that arrives meanwhile is deferred at once with the queue's error, without a
// connection; "queue retry" (force connection) makes one new attempt for all of them. The
// peer is a real TCP listener that answers every connection with 421 at the greeting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, freePort, cleanup, type RunningServer } from '../helpers/server.js';
import { bhJson, compose, send, sleep, waitFor } from './ops.js';

const TOKEN = 'dead-destination-admin';
let server: RunningServer;
let peer: net.Server;
let connections = 0;
let Q: string;
const sockets: net.Socket[] = [];
const stamp = `${process.pid}.${Date.now()}`;

interface QueueRow {
  name: string;
  state: string;
  messageCount: number;
  nextRetry?: string;
  lastError?: string;
}
interface MessageRow {
  id: string;
  state: string;
  recipients: { address: string; state: string; lastError?: string }[];
}
interface TrackRow {
  event: string;
  internalMessageId: string;
}

const api = () => ['--api', server.api!, '--token', TOKEN];
const queue = async () => (await bhJson<QueueRow[]>(['queue', 'list', ...api()])).find((q) => q.name === Q);

before(async () => {
  const port = await freePort();
  peer = net.createServer((s) => {
    connections++;
    sockets.push(s);
    s.on('error', () => undefined);
    s.end('421 4.3.2 busy.peer.test Service not available, closing transmission channel\r\n');
  });
  await new Promise<void>((resolve) => peer.listen(port, '127.0.0.1', resolve));
  Q = `[127.0.0.1]:${port}`;
  server = await startServer({
    engine: true,
    mutate: (org) => {
      const s = org.routingGroups[0].servers[0];
      s.adminApi = { host: '127.0.0.1', port: 0, token: TOKEN };
      const vs = s.virtualServers[0];
      vs.relay = { list: ['127.0.0.1'] };
      // Long intervals: nothing retries on its own while the test watches.
      vs.delivery = { smartHost: Q, glitchRetryCount: 0, outbound: { first: '10m', second: '10m' } };
    },
  });
  assert.ok(server.api, server.output());
});

after(async () => {
  await server?.stop();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (peer ? peer.close(() => resolve()) : resolve()));
  if (server) cleanup(server.dir);
});

const message = (n: number) =>
  compose({
    from: 'alice@example.com',
    to: [`r${n}@remote.test`],
    subject: `dead destination ${n}`,
    messageId: `<dead.${n}.${stamp}@client.test>`,
    body: 'The next hop is down.\n',
  });

test('the first message finds the next hop down: its queue goes to Retry after one connection', async () => {
  await send(server.port, 'alice@example.com', ['r0@remote.test'], message(0));
  const q = await waitFor('the queue in Retry', async () => {
    const found = await queue();
    return found?.state === 'Retry' ? found : undefined;
  });
  assert.equal(connections, 1);
  assert.match(q.lastError ?? '', /^421 4\.3\.2 /);
  assert.ok(Date.parse(q.nextRetry ?? '') > Date.now() + 8 * 60_000, `next retry ${q.nextRetry}`);
});

test('mail that arrives while the queue is in Retry is deferred with its error, without a connection', async () => {
  const ids: string[] = [];
  for (let n = 1; n <= 5; n++)
    ids.push(await send(server.port, 'alice@example.com', [`r${n}@remote.test`], message(n)));
  const q = await waitFor('six messages in the queue, all in Retry', async () => {
    const found = await queue();
    const messages = await bhJson<MessageRow[]>(['queue', 'find', '--queue', Q, ...api()]);
    return found?.messageCount === 6 && messages.every((m) => m.state === 'Retry') ? found : undefined;
  });
  assert.equal(q.state, 'Retry');
  await sleep(1000);
  assert.equal(connections, 1, 'no connection for mail that arrives at a queue in Retry');
  for (const id of ids) {
    const m = await bhJson<MessageRow>(['message', 'show', id, ...api()]);
    assert.equal(m.recipients[0]!.state, 'retry');
    assert.match(m.recipients[0]!.lastError ?? '', /^421 4\.3\.2 /);
    const events = await bhJson<TrackRow[]>(['track', '--id', id, ...api()]);
    assert.ok(
      events.some((e) => e.event === 'DEFER'),
      `a DEFER event for ${id}: ${JSON.stringify(events)}`,
    );
  }
});

test('queue retry (force connection) makes one new attempt for the whole queue', async () => {
  const before = connections;
  const retried = await bhJson<{ recipients: number }>(['queue', 'retry', Q, ...api()]);
  assert.equal(retried.recipients, 6);
  await waitFor('the queue back in Retry after the attempt', async () => {
    const q = await queue();
    return connections > before && q?.state === 'Retry' && q.messageCount === 6 ? q : undefined;
  });
  await sleep(1000);
  // Six messages need two sessions (one per four messages) and both find the peer down;
  // the queue then waits as a whole: never a connection per message.
  assert.ok(connections - before <= 2, `${connections - before} connections for the retry`);
});
