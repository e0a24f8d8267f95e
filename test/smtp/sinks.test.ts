// Protocol event sinks (issue 11's extension point): a virtual server built in-process with
// sinks at connect, HELO, MAIL, RCPT and end of data; a raw SMTP client sees their verdicts
// as the server's own replies, in the order the session asks them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { validateOrganisation } from '../../src/config/load.js';
import { AcceptedDomains } from '../../src/directory/accepted-domains.js';
import { EmbeddedDirectory } from '../../src/directory/directory.js';
import { Spool, type SpooledMessage } from '../../src/queue/spool.js';
import type { ProtocolSink } from '../../src/sinks/sink.js';
import { VirtualServerRuntime } from '../../src/smtp/server/virtual-server.js';
import { baseOrganisation, cleanup, freePort } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';

let dir: string;
let spool: Spool;
let runtime: VirtualServerRuntime;
let port: number;
const asked: string[] = [];
const accepted: SpooledMessage[] = [];
const refuse = (code: number, status: string, text: string) => ({
  action: 'reject' as const,
  code,
  status,
  text,
});

const sink: ProtocolSink = {
  name: 'test sink',
  connect: (s) => (asked.push(`connect ${s.clientIp}`), { action: 'continue' }),
  helo: (_s, helo) => (
    asked.push(`helo ${helo}`),
    helo === 'bad.test' ? refuse(550, '5.7.1', 'HELO refused by sink') : { action: 'continue' }
  ),
  mailFrom: (_s, sender) => (asked.push(`mail ${sender}`), { action: 'continue' }),
  rcptTo: async (_s, recipient) => {
    asked.push(`rcpt ${recipient}`);
    return recipient.startsWith('spamtrap@')
      ? refuse(550, '5.7.1', 'Recipient refused by sink')
      : { action: 'continue' };
  },
  endOfData: (_s, m) => {
    asked.push(`data ${m.envelope.recipients.map((r) => r.address).join(',')}`);
    return /X-Virus: yes/.test(m.header)
      ? refuse(554, '5.7.1', 'Permanent scan failure')
      : { action: 'continue' };
  },
};

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-sinks-'));
  port = await freePort();
  const { org } = validateOrganisation(baseOrganisation(port), dir);
  spool = new Spool(path.join(dir, 'spool'));
  await spool.init();
  runtime = new VirtualServerRuntime({
    serverName: 'MAIL1',
    fqdn: 'mail1.test.example',
    config: org.routingGroups[0]!.servers[0]!.virtualServers[0]!,
    acceptedDomains: new AcceptedDomains(org.recipientPolicies),
    directory: new EmbeddedDirectory(org.directory),
    spool,
    orgMaxRecipients: null,
    log: pino({ level: 'silent' }),
    onAccepted: (m) => accepted.push(m),
    sinks: [sink],
  });
  await runtime.listen();
});

after(async () => {
  await runtime?.close();
  await spool?.close();
  if (dir) cleanup(dir);
});

const message = (extra = '') => `Subject: sinks\r\n${extra}\r\nHello.\r\n.`;

test('connect and HELO sinks: a refused HELO is the server refusing it', async () => {
  const c = await RawSmtp.connect(port);
  assert.match(await c.reply(), /^220 /);
  assert.equal(await c.cmd('EHLO bad.test'), '550 5.7.1 HELO refused by sink');
  assert.match(await c.cmd('EHLO good.test'), /^250-/);
  await c.cmd('QUIT');
  assert.deepEqual(asked.slice(0, 3), ['connect 127.0.0.1', 'helo bad.test', 'helo good.test']);
});

test('MAIL, RCPT and end-of-data sinks: a refused recipient, a message refused after DATA, one accepted', async () => {
  asked.length = 0;
  const c = await RawSmtp.connect(port);
  await c.reply();
  await c.cmd('EHLO client.test');
  assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250 /);
  assert.equal(await c.cmd('RCPT TO:<spamtrap@example.com>'), '550 5.7.1 Recipient refused by sink');
  assert.match(await c.cmd('RCPT TO:<alice@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  assert.equal(await c.cmd(message('X-Virus: yes\r\n')), '554 5.7.1 Permanent scan failure');
  assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250 /);
  assert.match(await c.cmd('RCPT TO:<alice@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  assert.match(await c.cmd(message()), /^250 2\.6\.0 /);
  await c.cmd('QUIT');
  assert.equal(accepted.length, 1, 'only the message the sinks let through was queued');
  assert.deepEqual(asked, [
    'connect 127.0.0.1',
    'helo client.test',
    'mail alice@example.com',
    'rcpt spamtrap@example.com',
    'rcpt alice@example.com',
    'data alice@example.com',
    'mail alice@example.com',
    'rcpt alice@example.com',
    'data alice@example.com',
  ]);
});
