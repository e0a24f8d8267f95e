// The LMTP driver against scripted servers for what a real Dovecot will not do on demand:
// no PIPELINING, a refusing greeting, a store that stops answering or hangs up after the
// message. (test/delivery/lmtp.test.ts runs it against a real Dovecot.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { LmtpStore } from './lmtp.js';
import type { CopyResult, StoreCopy } from './store-driver.js';

const HOST = '127.0.82.3';

/**
 * A server that answers each line it reads through `answer`: undefined says nothing, a
 * reply ending in "!" is sent before the server hangs up.
 */
async function scripted(
  greeting: string | undefined,
  answer: (line: string, seen: string[]) => string | undefined,
): Promise<{ port: number; seen: string[]; close: () => Promise<void> }> {
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    if (greeting) s.write(`${greeting}\r\n`);
    let buffer = '';
    let inData = false;
    s.on('data', (d) => {
      buffer += d.toString('utf8');
      for (let i = buffer.indexOf('\r\n'); i >= 0; i = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (inData && line !== '.') continue;
        inData = false;
        seen.push(line);
        const reply = answer(line, seen);
        if (reply?.endsWith('\r\n!'))
          s.end(reply.slice(0, -1)); // reply, then hang up
        else if (reply !== undefined) s.write(reply);
        if (line === 'DATA' && reply?.startsWith('354')) inData = true;
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const copy = (address: string, n: number): StoreCopy => ({
  mailbox: { store: 'S', address, quotaKb: null },
  recipient: address,
  uniqueId: `Q.${n}`,
  recheck: false,
});
const summary = (r: CopyResult) => ('error' in r ? `${r.error.code} ${r.error.status}` : 'ok');
const store = (port: number, timeoutMs = 5000, rcptTo = '{address}') =>
  new LmtpStore({ store: 'S', endpoint: { host: HOST, port }, lhloName: 'mail1.test', rcptTo, timeoutMs });
const message = { sender: 'kim@x.test', body: Buffer.from('Subject: t\r\n\r\n.hi\r\n') };

test('without PIPELINING: one command at a time, per-recipient replies after the message', async () => {
  const srv = await scripted('220 lmtp ready', (line) => {
    if (line.startsWith('LHLO')) return '250-lmtp\r\n250 ENHANCEDSTATUSCODES\r\n';
    if (line.startsWith('MAIL')) return '250 2.1.0 OK\r\n';
    if (line === 'RCPT TO:<b>') return '550 5.1.1 <b> unknown\r\n';
    if (line.startsWith('RCPT')) return '250 2.1.5 OK\r\n';
    if (line === 'DATA') return '354 go\r\n';
    if (line === '.') return '250 2.0.0 <a> Saved\r\n452 4.2.2 <c> Mailbox full for now\r\n';
    if (line === 'QUIT') return '221 bye\r\n';
    return undefined;
  });
  try {
    const results = await store(srv.port, 5000, '{localPart}').deliver(message, [
      copy('a@example.com', 1),
      copy('b@example.com', 2),
      copy('c@example.com', 3),
    ]);
    assert.deepEqual(results.map(summary), ['ok', '550 5.1.1', '452 4.2.2']);
    assert.deepEqual(srv.seen, [
      'LHLO mail1.test',
      'MAIL FROM:<kim@x.test>',
      'RCPT TO:<a>',
      'RCPT TO:<b>',
      'RCPT TO:<c>',
      'DATA',
      '.',
      'QUIT',
    ]);
  } finally {
    await srv.close();
  }
});

test('a greeting that refuses: every copy waits (4.4.2), none bounces', async () => {
  const srv = await scripted('554 5.3.2 not now', () => undefined);
  try {
    const results = await store(srv.port).deliver(message, [copy('a@x', 1), copy('b@x', 2)]);
    assert.deepEqual(results.map(summary), ['451 4.4.2', '451 4.4.2']);
    assert.match(
      'error' in results[0]! ? results[0].error.message : '',
      /is not taking mail: 554 5\.3\.2 not now/,
    );
  } finally {
    await srv.close();
  }
});

test('a store that does not answer: every copy waits after the time-out (4.4.2)', async () => {
  const srv = await scripted(undefined, () => undefined);
  try {
    const results = await store(srv.port, 300).deliver(message, [copy('a@x', 1)]);
    assert.deepEqual(results.map(summary), ['451 4.4.2']);
    assert.match('error' in results[0]! ? results[0].error.message : '', /did not answer in time/);
  } finally {
    await srv.close();
  }
});

test('nobody listening: every copy waits (4.4.1)', async () => {
  const srv = await scripted(undefined, () => undefined);
  const port = srv.port;
  await srv.close();
  const results = await store(port).deliver(message, [copy('a@x', 1), copy('b@x', 2)]);
  assert.deepEqual(results.map(summary), ['451 4.4.1', '451 4.4.1']);
});

test('the store hangs up after the first reply to the message: that copy counts, the other waits (4.4.2)', async () => {
  const srv = await scripted('220 lmtp ready', (line) => {
    if (line.startsWith('LHLO')) return '250-lmtp\r\n250 PIPELINING\r\n';
    if (line.startsWith('MAIL')) return '250 2.1.0 OK\r\n';
    if (line.startsWith('RCPT')) return '250 2.1.5 OK\r\n';
    if (line === 'DATA') return '354 go\r\n';
    if (line === '.') return '250 2.0.0 <a> Saved\r\n!';
    return undefined;
  });
  try {
    const s = store(srv.port);
    const results = await s.deliver(message, [copy('a@x', 1), copy('b@x', 2)]);
    assert.deepEqual(results.map(summary), ['ok', '451 4.4.2']);
    assert.match(
      'error' in results[1]! ? results[1].error.message : '',
      /Connection to S \(127\.0\.82\.3:\d+\) closed/,
    );
  } finally {
    await srv.close();
  }
});
