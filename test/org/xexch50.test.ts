// XEXCH50 between organisation servers: the submitter's authenticated identity travels with
// the message, so a restriction checked on the next server (a group expanded on its
// expansion server, "authenticated senders only") sees the same sender the first one did.
// Anonymous sessions are refused the verb.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Organisation, SmtpSession, waitFor } from './cluster.js';
import { hashPassword } from '../../src/directory/passwords.js';

let org: Organisation;
const PASSWORD = 'properties travel';

before(async () => {
  const hash = await hashPassword(PASSWORD);
  org = await Organisation.create({
    secret: 'xexch50-secret',
    groups: [
      {
        name: 'First Routing Group',
        servers: [
          { name: 'A1', address: '127.0.65.1' },
          { name: 'B1', address: '127.0.65.2' },
        ],
      },
    ],
    directory: {
      users: [
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'A1' }, passwordHash: hash },
        { name: 'Carol', addresses: ['carol@example.com'], mailbox: { server: 'B1' } },
      ],
      contacts: [{ name: 'Ted Bremer', addresses: ['ted@adatum.test'], targetAddress: 'ted@adatum.test' }],
      groups: [
        {
          name: 'Staff',
          addresses: ['staff@example.com'],
          members: ['Carol'],
          expansionServer: 'B1',
          restrictions: { authenticatedOnly: true },
        },
      ],
    },
    mutate: (o) => {
      for (const s of o.routingGroups[0].servers)
        s.virtualServers[0].authentication = { basicWithoutTls: true };
      // A1 resolves anonymous e-mail (the cross-forest bridgehead [003:3029-3068]); B1 does not.
      o.routingGroups[0].servers[0].virtualServers[0].resolveAnonymousEmail = true;
    },
  });
  await org.startAll();
});

after(async () => {
  await org?.destroy();
});

async function send(authenticated: boolean, subject: string): Promise<void> {
  const a = org.info('A1');
  const c = await SmtpSession.connect(a.address, a.smtpPort);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    if (authenticated) {
      const token = Buffer.from(`\0alice@example.com\0${PASSWORD}`).toString('base64');
      assert.equal(await c.cmd(`AUTH PLAIN ${token}`), '235 2.7.0 Authentication successful.');
    }
    assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<staff@example.com>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    assert.match(await c.cmd(`Subject: ${subject}\r\n\r\nhello staff\r\n.`), /^250 2\.6\.0 /);
    await c.cmd('QUIT');
  } finally {
    c.close();
  }
}

test('an authenticated sender reaches a restricted group expanded on another server', async () => {
  await send(true, 'authenticated to staff');
  await waitFor('the message in carol@example.com on B1', async () =>
    org.mailbox('B1', 'carol@example.com').some((m) => m.content.includes('Subject: authenticated to staff')),
  );
});

test('an anonymous sender gets 5.7.1 from the expansion server, not a delivery', async () => {
  await send(false, 'anonymous to staff');
  await waitFor(
    'the 5.7.1 NDR in alice@example.com on A1',
    async () =>
      org
        .mailbox('A1', 'alice@example.com')
        .some((m) => m.content.includes('Status: 5.7.1') && m.content.includes('anonymous to staff')),
    20_000,
  );
  assert.ok(!org.mailbox('B1', 'carol@example.com').some((m) => m.content.includes('anonymous to staff')));
});

test('"resolve anonymous e-mail" on the receiving server holds where the mailbox is', async () => {
  const a = org.info('A1');
  const c = await SmtpSession.connect(a.address, a.smtpPort);
  try {
    await c.reply();
    await c.cmd('EHLO adatum.test');
    assert.match(await c.cmd('MAIL FROM:<ted@adatum.test>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<carol@example.com>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    const message = 'From: ted@adatum.test\r\nSubject: cross-forest\r\n\r\nhello carol\r\n.';
    assert.match(await c.cmd(message), /^250 2\.6\.0 /);
    await c.cmd('QUIT');
  } finally {
    c.close();
  }
  const copy = await waitFor('the message in carol@example.com on B1', async () =>
    org.mailbox('B1', 'carol@example.com').find((m) => m.content.includes('Subject: cross-forest')),
  );
  assert.match(copy.content, /^From: Ted Bremer <ted@adatum\.test>\r$/m);
});

test('XEXCH50 is advertised in an organisation, and refused from an anonymous session', async () => {
  const b = org.info('B1');
  const c = await SmtpSession.connect(b.address, b.smtpPort);
  try {
    await c.reply();
    const ehlo = await c.cmd('EHLO outsider.test');
    assert.match(ehlo, /XEXCH50/);
    await c.cmd('MAIL FROM:<x@outsider.test>');
    await c.cmd('RCPT TO:<carol@example.com>');
    assert.equal(await c.cmd('XEXCH50 10 2'), '504 5.7.4 Need to authenticate first');
  } finally {
    c.close();
  }
});
