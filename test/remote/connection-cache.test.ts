// The outbound connection cache: a session that runs out of mail waits 2 s for the next run
// to the same next hop, and a job that meets a cached session the peer has just given up
// goes again on a fresh one. The peer here is scripted (a few lines of SMTP over node:net),
// because the second case needs a receiver that drops a session at an exact moment.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Resolver } from 'node:dns/promises';
import {
  RemoteDelivery,
  type DeliveryJob,
  type Destination,
} from '../../src/delivery/remote/remote-delivery.js';
import { newMessageId, type Envelope } from '../../src/queue/spool.js';
import { sleep } from './peers.js';

interface Peer {
  port: number;
  /** Per connection, the commands it received. */
  sessions: string[][];
  close(): Promise<void>;
}

/**
 * A minimal receiver. `dropSecondMail`: on its first connection, the second MAIL FROM gets
 * "421" and the connection is closed, as a server whose idle timer just fired would.
 */
async function scriptedPeer(o: { dropSecondMail?: boolean } = {}): Promise<Peer> {
  const sessions: string[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const seen: string[] = [];
    const index = sessions.push(seen) - 1;
    let inData = false;
    let mails = 0;
    let buffer = '';
    socket.write('220 peer.test ESMTP\r\n');
    socket.on('data', (d) => {
      buffer += d.toString('latin1');
      for (let nl = buffer.indexOf('\r\n'); nl !== -1; nl = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            seen.push('.');
            socket.write('250 2.0.0 queued\r\n');
          }
          continue;
        }
        seen.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') socket.write('250-peer.test\r\n250 PIPELINING\r\n');
        else if (verb === 'MAIL') {
          mails++;
          if (o.dropSecondMail && index === 0 && mails === 2) {
            socket.end('421 4.4.2 peer.test idle timeout, closing\r\n');
            return;
          }
          socket.write('250 2.1.0 ok\r\n');
        } else if (verb === 'RCPT') socket.write('250 2.1.5 ok\r\n');
        else if (verb === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'RSET') socket.write('250 2.0.0 ok\r\n');
        else if (verb === 'QUIT') socket.end('221 2.0.0 bye\r\n');
        else socket.write('500 5.5.1 unknown\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sessions,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const remote = new RemoteDelivery({
  heloName: 'mail1.test.example',
  port: 25,
  timeoutMs: 5000,
  heloOnly: false,
  tls: 'none',
  verifyCertificate: false,
  resolver: new Resolver(),
  maxMessagesPerConnection: 100,
});
after(() => remote.close());

function job(outcomes: unknown[]): DeliveryJob {
  const envelope: Envelope = {
    id: newMessageId(),
    receivedAt: new Date().toISOString(),
    server: 'MAIL1',
    virtualServer: 'Default SMTP Virtual Server',
    client: { ip: '127.0.0.1', port: 1, helo: 'client.test', tls: false },
    sender: 'alice@example.com',
    body: '7BIT',
    smtputf8: false,
    recipients: [{ address: 'bob@peer.test' }],
  };
  return {
    envelope,
    recipients: envelope.recipients,
    load: async () => Buffer.from('Subject: cached\r\n\r\nhello\r\n'),
    done: (outcome) => outcomes.push(outcome),
  };
}

const codes = (outcomes: unknown[]) =>
  outcomes.map((o) =>
    'error' in (o as object)
      ? `error ${(o as { error: { code: number } }).error.code}`
      : (o as { results: { reply: { code: number } }[] }).results.map((r) => r.reply.code).join(','),
  );

test('a second run to the same next hop carries on over the idle session, which QUITs after 2 s', async () => {
  const peer = await scriptedPeer();
  try {
    const d: Destination = { type: 'server', name: 'PEER', host: '127.0.0.1', port: peer.port };
    const outcomes: unknown[] = [];
    await remote.run(d, [job(outcomes)], 1);
    await remote.run(d, [job(outcomes)], 1);
    assert.deepEqual(codes(outcomes), ['250', '250']);
    assert.equal(peer.sessions.length, 1, 'one connection carried both messages');
    assert.equal(peer.sessions[0]!.filter((l) => l.startsWith('MAIL FROM')).length, 2);
    assert.ok(!peer.sessions[0]!.includes('QUIT'), 'still open right after the run');
    await sleep(2500);
    assert.equal(peer.sessions[0]!.at(-1), 'QUIT', 'closed with QUIT once idle for 2 s');
  } finally {
    await peer.close();
  }
});

test('a job that meets a cached session the peer just dropped (421) goes again on a fresh one', async () => {
  const peer = await scriptedPeer({ dropSecondMail: true });
  try {
    const d: Destination = { type: 'server', name: 'PEER2', host: '127.0.0.1', port: peer.port };
    const outcomes: unknown[] = [];
    await remote.run(d, [job(outcomes)], 1);
    await remote.run(d, [job(outcomes)], 1);
    assert.deepEqual(codes(outcomes), ['250', '250'], 'both delivered, no deferral recorded');
    assert.equal(peer.sessions.length, 2, 'the second message went over a new connection');
    assert.equal(peer.sessions[1]!.filter((l) => l.startsWith('MAIL FROM')).length, 1);
  } finally {
    await peer.close();
  }
});
