// The guide's remaining directory behaviours, as a user sees them (issue 15):
// - hidden membership (hideMembership): NDRs for members name the group, never a member;
// - hidden from address lists (hidden): VRFY does not show the user, and an NDR for it,
//   reached through a group, names only the group;
// - resolve anonymous e-mail [003:5805-5813, 2987-3068]: the From line a recipient reads
//   in the delivered Maildir file shows the directory display name only for authenticated
//   senders (as themselves) or on a virtual server that resolves anonymous mail.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { hashPassword } from '../../src/directory/passwords.js';
import { dataPayload, parseDsn, type ParsedDsn } from './mail.js';
import { waitForMessages } from './maildir.js';

const HOST = '127.0.83.2';
const PORT = 48020;
const RESOLVING_PORT = 48021;
const PASSWORD = 'kim secret';

let srv: RunningServer;
before(async () => {
  const passwordHash = await hashPassword(PASSWORD);
  srv = await startServer({
    engine: true,
    host: HOST,
    port: PORT,
    mutate: (org) => {
      const servers = org.routingGroups[0].servers[0];
      const vs = servers.virtualServers[0];
      vs.vrfy = true;
      vs.authentication = { basicWithoutTls: true };
      servers.virtualServers.push({
        name: 'Cross-forest',
        ip: HOST,
        port: RESOLVING_PORT,
        resolveAnonymousEmail: true,
      });
      const user = (name: string, local: string, extra: Record<string, unknown> = {}) => ({
        name,
        addresses: [`${local}@example.com`],
        mailbox: { server: 'MAIL1' },
        ...extra,
      });
      const d = org.directory;
      d.users.push(
        user('Bob', 'bob'),
        user('Kim Akers', 'kim', { passwordHash }),
        user('Full', 'full', { quotaKb: 1 }),
        user('Crowded', 'crowded', { quotaKb: 1 }),
        user('Secret Agent', 'agent', { hidden: true, quotaKb: 1 }),
      );
      d.contacts = [{ name: 'Ted Bremer', addresses: ['ted@adatum.test'], targetAddress: 'ted@adatum.test' }];
      d.groups = [
        {
          name: 'Board',
          addresses: ['board@example.com'],
          members: ['Bob', 'Full', 'Crowded'],
          hideMembership: true,
        },
        { name: 'Staff', addresses: ['staff@example.com'], members: ['Bob', 'Crowded', 'Secret Agent'] },
      ];
    },
  });
});
after(async () => {
  await srv?.stop();
  if (srv) cleanup(srv.dir);
});

let counter = 0;

/** Sends one message with the given From field; AUTH PLAIN first when `login` is given. */
async function send(o: {
  port?: number;
  from: string;
  headerFrom: string;
  to: string[];
  body?: string;
  login?: string;
}): Promise<string> {
  const c = await RawSmtp.connect(o.port ?? PORT, HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    if (o.login) {
      const token = Buffer.from(`\0${o.login}\0${PASSWORD}`).toString('base64');
      assert.equal(await c.cmd(`AUTH PLAIN ${token}`), '235 2.7.0 Authentication successful.');
    }
    assert.match(await c.cmd(`MAIL FROM:<${o.from}>`), /^250 /);
    for (const t of o.to) assert.match(await c.cmd(`RCPT TO:<${t}>`), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    const message = [
      `From: ${o.headerFrom}`,
      `To: ${o.to.join(', ')}`,
      `Subject: directory behaviours ${++counter}`,
      `Message-ID: <dirb.${process.pid}.${counter}@client.test>`,
      '',
      o.body ?? 'Hello.',
      '',
    ].join('\r\n');
    const done = await c.cmd(dataPayload(message));
    const id = /^250 2\.6\.0 <([0-9A-Z]+)@/.exec(done)?.[1];
    assert.ok(id, done);
    await c.cmd('QUIT');
    return id;
  } finally {
    c.close();
  }
}

/** The From field of message `id` as delivered into `mailbox`. */
async function deliveredFrom(mailbox: string, id: string): Promise<string> {
  const [m] = await waitForMessages(srv.dataDir, mailbox, `${id}.`);
  const head = m!.content.toString('utf8').split('\r\n\r\n')[0]!;
  return /^From: (.*)$/m.exec(head)?.[1] ?? '(none)';
}

async function ndrFor(id: string, sender: string): Promise<{ raw: string; dsn: ParsedDsn }> {
  const [m] = await waitForMessages(srv.dataDir, sender, `${id}N1.`);
  return { raw: m!.content.toString('utf8'), dsn: parseDsn(m!.content) };
}

/** The text and delivery-status parts: what the report says, without the returned message. */
const reportParts = (dsn: ParsedDsn) => `${dsn.text}\n${JSON.stringify(dsn.perRecipient)}`;

const BIG = `${'x'.repeat(78)}\r\n`.repeat(30);

test('hidden membership: a member over quota is reported under the group, no member named', async () => {
  const id = await send({
    from: 'alice@example.com',
    headerFrom: 'alice@example.com',
    to: ['board@example.com'],
    body: BIG,
  });
  await waitForMessages(srv.dataDir, 'bob@example.com', `${id}.`);
  const { dsn } = await ndrFor(id, 'alice@example.com');
  assert.equal(dsn.perRecipient.length, 1, JSON.stringify(dsn.perRecipient));
  const r = dsn.perRecipient[0]!;
  assert.equal(r['Final-Recipient'], 'rfc822; board@example.com');
  assert.equal(r['Action'], 'failed');
  assert.equal(r['Status'], '5.2.2');
  assert.equal(r['Diagnostic-Code'], undefined);
  assert.match(dsn.text, /board@example\.com/);
  assert.doesNotMatch(reportParts(dsn), /full@|crowded@|bob@|Full|Crowded/);
});

test('visible membership: the same failure names the member (and a hidden member only the group)', async () => {
  const id = await send({
    from: 'alice@example.com',
    headerFrom: 'alice@example.com',
    to: ['staff@example.com'],
    body: BIG,
  });
  const { dsn } = await ndrFor(id, 'alice@example.com');
  const finals = dsn.perRecipient.map((r) => r['Final-Recipient']).sort();
  assert.deepEqual(finals, ['rfc822; crowded@example.com', 'rfc822; staff@example.com']);
  assert.doesNotMatch(reportParts(dsn), /agent@|Secret Agent/);
});

test('a hidden user the sender named itself is reported under its own address', async () => {
  const id = await send({
    from: 'alice@example.com',
    headerFrom: 'alice@example.com',
    to: ['agent@example.com'],
    body: BIG,
  });
  const { dsn } = await ndrFor(id, 'alice@example.com');
  assert.deepEqual(
    dsn.perRecipient.map((r) => r['Final-Recipient']),
    ['rfc822; agent@example.com'],
  );
});

test('VRFY does not show a user hidden from address lists', async () => {
  const c = await RawSmtp.connect(PORT, HOST);
  await c.reply();
  await c.cmd('EHLO client.test');
  assert.equal(await c.cmd('VRFY <bob@example.com>'), '250 2.1.5 Bob <bob@example.com>');
  assert.equal(
    await c.cmd('VRFY <agent@example.com>'),
    '252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery',
  );
  await c.cmd('QUIT');
  c.close();
});

test('anonymous mail is never shown as a directory user: the forged display name is gone', async () => {
  const id = await send({
    from: 'kim@example.com',
    headerFrom: '"Kim Akers" <kim@example.com>, "Someone Else" <someone@else.test>',
    to: ['bob@example.com'],
  });
  assert.equal(
    await deliveredFrom('bob@example.com', id),
    'kim@example.com, "Someone Else" <someone@else.test>',
  );
});

test('authenticated mail shows the directory display name of the submitter, and only its own', async () => {
  const own = await send({
    login: 'kim@example.com',
    from: 'kim@example.com',
    headerFrom: 'kim@example.com',
    to: ['bob@example.com'],
  });
  assert.equal(await deliveredFrom('bob@example.com', own), 'Kim Akers <kim@example.com>');
  const other = await send({
    login: 'Kim Akers',
    from: 'kim@example.com',
    headerFrom: 'Bob <bob@example.com>',
    to: ['alice@example.com'],
  });
  assert.equal(await deliveredFrom('alice@example.com', other), 'bob@example.com');
});

test('resolve anonymous e-mail: a contact resolves to its display name; a hidden user does not', async () => {
  const ted = await send({
    port: RESOLVING_PORT,
    from: 'ted@adatum.test',
    headerFrom: 'ted@adatum.test',
    to: ['bob@example.com'],
  });
  assert.equal(await deliveredFrom('bob@example.com', ted), 'Ted Bremer <ted@adatum.test>');
  const agent = await send({
    port: RESOLVING_PORT,
    from: 'agent@example.com',
    headerFrom: 'Secret Agent <agent@example.com>',
    to: ['bob@example.com'],
  });
  assert.equal(await deliveredFrom('bob@example.com', agent), 'agent@example.com');
  // The same anonymous message on the default virtual server: not resolved.
  const plain = await send({
    from: 'ted@adatum.test',
    headerFrom: 'ted@adatum.test',
    to: ['bob@example.com'],
  });
  assert.equal(await deliveredFrom('bob@example.com', plain), 'ted@adatum.test');
});
