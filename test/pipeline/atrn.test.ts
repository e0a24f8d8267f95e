// ATRN / TURN (RFC 2645) serving a connector's queue for remote triggered delivery: the
// customer authenticates, asks for its domain, and the connection turns around so that
// Bridgehead delivers the held mail over it [003:534-539].
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { adminAuth, startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { hashPassword } from '../../src/directory/passwords.js';

let srv: RunningServer;
const PASSWORD = 'turn me around';

before(async () => {
  const hash = await hashPassword(PASSWORD);
  srv = await startServer({
    engine: true,
    mutate: (org) => {
      const server = org.routingGroups[0].servers[0];
      server.virtualServers[0].authentication = { basicWithoutTls: true };
      server.virtualServers[0].relay = { list: ['127.0.0.1'] };
      org.routingGroups[0].connectors = [
        {
          type: 'smtp',
          name: 'Customer',
          addressSpaces: ['SMTP:customer.test:1'],
          smartHosts: ['[127.0.0.1]:1'],
          queueForRemoteTriggeredDelivery: { enabled: true, accounts: ['Customer'] },
        },
      ];
      for (const name of ['Customer', 'Other']) {
        org.directory.users.push({
          name,
          addresses: [`${name.toLowerCase()}@example.com`],
          mailbox: { server: 'MAIL1' },
          passwordHash: hash,
        });
      }
    },
  });
});
after(async () => {
  await srv.stop();
  cleanup(srv.dir);
});

async function api(path: string): Promise<any> {
  return (await fetch(`${srv.api}${path}`, { headers: adminAuth(srv.dataDir) })).json();
}

async function held(): Promise<number> {
  const queues = (await api('/api/v1/queues')) as { name: string; messageCount: number; state: string }[];
  return queues.find((q) => q.name === 'Customer')?.messageCount ?? 0;
}

async function login(user: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect(srv.port);
  await c.reply();
  await c.cmd('EHLO customer-mx.test');
  const token = Buffer.from(`\0${user.toLowerCase()}@example.com\0${PASSWORD}`).toString('base64');
  assert.equal(await c.cmd(`AUTH PLAIN ${token}`), '235 2.7.0 Authentication successful.');
  return c;
}

/** Plays the customer's server on a reversed connection; resolves with the message received. */
function serveReversed(socket: net.Socket): Promise<{ commands: string[]; data: string }> {
  return new Promise((resolve, reject) => {
    const commands: string[] = [];
    let buffer = '';
    let inData = false;
    let data = '';
    const timer = setTimeout(() => reject(new Error(`no delivery; saw ${commands.join(' | ')}`)), 15_000);
    socket.setEncoding('utf8');
    socket.write('220 customer-mx.test ESMTP ready\r\n');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        if (inData) {
          const end = buffer.indexOf('\r\n.\r\n');
          if (end === -1) return;
          data = buffer.slice(0, end + 2);
          buffer = buffer.slice(end + 5);
          inData = false;
          socket.write('250 2.0.0 got it\r\n');
          continue;
        }
        const nl = buffer.indexOf('\r\n');
        if (nl === -1) return;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        commands.push(line);
        const verb = line.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO') socket.write('250-customer-mx.test\r\n250 PIPELINING\r\n');
        else if (verb === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') {
          socket.write('221 bye\r\n');
          clearTimeout(timer);
          socket.end();
          resolve({ commands, data });
          return;
        } else socket.write('250 2.0.0 ok\r\n');
      }
    });
  });
}

test('mail for the customer domain is held for remote triggered delivery (queue state Remote)', async () => {
  const c = await RawSmtp.connect(srv.port);
  await c.reply();
  await c.cmd('EHLO sender.test');
  await c.cmd('MAIL FROM:<alice@example.com>');
  assert.equal(await c.cmd('RCPT TO:<bob@customer.test>'), '250 2.1.5 bob@customer.test');
  await c.cmd('DATA');
  assert.match(await c.cmd('Subject: waiting for ATRN\r\n\r\nhello\r\n.'), /^250 2\.6\.0 /);
  await c.cmd('QUIT');
  const deadline = Date.now() + 10_000;
  while ((await held()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await held(), 1);
  const q = ((await api('/api/v1/queues')) as { name: string; state: string }[]).find(
    (x) => x.name === 'Customer',
  );
  assert.equal(q?.state, 'Remote');
});

test('ATRN needs authentication, and an account the connector lists', async () => {
  const anon = await RawSmtp.connect(srv.port);
  await anon.reply();
  await anon.cmd('EHLO x.test');
  assert.match(await anon.cmd('ATRN customer.test'), /^530 /);
  anon.close();
  const other = await login('Other');
  assert.match(await other.cmd('ATRN customer.test'), /^530 5\.7\.1 Access denied/);
  other.close();
  assert.equal(await held(), 1, 'still held');
});

test('ATRN from the customer account reverses the connection and delivers the held mail over it', async () => {
  const c = await login('Customer');
  assert.equal(await c.cmd('ATRN customer.test'), '250 2.0.0 OK now reversing the connection');
  const got = await serveReversed(c.socket);
  assert.match(got.commands[0]!, /^EHLO /);
  assert.ok(got.commands.includes('MAIL FROM:<alice@example.com>'), got.commands.join(' | '));
  assert.ok(
    got.commands.some((l) => l.startsWith('RCPT TO:<bob@customer.test>')),
    got.commands.join(' | '),
  );
  assert.match(got.data, /Subject: waiting for ATRN/);
  const deadline = Date.now() + 10_000;
  while ((await held()) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await held(), 0);
  const sends = (await api('/api/v1/tracking?event=SEND')) as { recipients: string[] }[];
  assert.ok(sends.some((e) => e.recipients.includes('bob@customer.test')));
});

test('nothing left: ATRN answers 453 You have no mail', async () => {
  const c = await login('Customer');
  assert.equal(await c.cmd('ATRN customer.test'), '453 4.3.0 You have no mail');
  assert.equal(await c.cmd('TURN'), '453 4.3.0 You have no mail');
  c.close();
});
