// The LDAP directory and an LMTP mailbox store together (issue 15, "What it must show"):
// users and nested groups come from a private slapd, their mailboxes live in a private
// Dovecot, mail is handed over LMTP and read back over IMAP with Python's imaplib. One slapd
// (ldap://127.0.84.1:48110) and one Dovecot (127.0.84.1: LMTP 48111, IMAP 48112) for the
// file; Bridgehead listens on 127.0.84.2:48120.
//   Which store: the user's `description` names it (attributes.mailboxStore), and an entry
//   without one is on defaultMailbox.store, "Dovecot". Alice, the sender who receives the
//   NDRs, names "Mailbox Store": Bridgehead's own Maildir.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { privateDovecot, type DovecotUser, type PrivateDovecot } from '../helpers/dovecot.js';
import { ldapGroup, ldapPerson, privateSlapd, type PrivateSlapd } from '../helpers/slapd.js';
import { bh } from '../ops/ops.js';
import { parseDsn, queueRows, trackingEvents, transaction, type Outgoing } from '../pipeline/mail.js';
import { sleep, waitFor, waitForMessages } from '../pipeline/maildir.js';

const HOST = '127.0.84.2';
const PORT = 48120;
const BASE = 'dc=example,dc=com';
const DOVECOT = { host: '127.0.84.1', lmtpPort: 48111, imapPort: 48112 };
const ALICE = 'alice@example.com'; // LDAP user on the Maildir store: sender, gets the NDRs
const EXTERNAL = 'kim@fourthcoffee.test';

const user = (address: string, quotaRule?: string): DovecotUser => ({
  address,
  password: 'secret',
  ...(quotaRule ? { quotaRule } : {}),
});
const DANA = user('dana@example.com'); // store named by her entry
const ERIN = user('erin@example.com'); // no store in the entry: defaultMailbox.store
const FULL = user('full@example.com', '*:storage=1K');

let dir: string;
let slapd: PrivateSlapd;
let dovecot: PrivateDovecot;
let srv: RunningServer;

const dn = (uid: string) => `uid=${uid},ou=people,${BASE}`;

function ldif(): string {
  return [
    ldapPerson(BASE, 'alice', 'Alice Example', ALICE, ['description: Mailbox Store']),
    ldapPerson(BASE, 'dana', 'Dana Example', DANA.address, [
      'description: Dovecot',
      'mailLocalAddress: d.example@example.com',
    ]),
    ldapPerson(BASE, 'erin', 'Erin Example', ERIN.address),
    ldapPerson(BASE, 'full', 'Full Example', FULL.address),
    ldapGroup(BASE, 'Tier Two', 'tier2@example.com', [dn('dana'), dn('erin')]),
    ldapGroup(BASE, 'Support', 'support@example.com', [`cn=Tier Two,ou=groups,${BASE}`, dn('dana')]),
  ].join('\n');
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-ldap-lmtp-'));
  slapd = privateSlapd({ dir: path.join(dir, 'slapd'), host: DOVECOT.host, port: 48110, base: BASE });
  await slapd.start();
  await slapd.add(ldif());
  dovecot = privateDovecot({ dir: path.join(dir, 'dovecot'), ...DOVECOT, users: [DANA, ERIN, FULL] });
  await dovecot.start();
  srv = await startServer({
    engine: true,
    host: HOST,
    port: PORT,
    dir,
    mutate: (org) => {
      const server = org.routingGroups[0].servers[0];
      server.mailboxStores = [
        { name: 'Mailbox Store' },
        { name: 'Dovecot', driver: 'lmtp', lmtp: { host: DOVECOT.host, port: DOVECOT.lmtpPort } },
      ];
      org.directory = {
        backend: 'ldap',
        ldap: {
          url: slapd.url,
          baseDn: BASE,
          bindDn: slapd.serviceDn,
          bindPasswordFile: slapd.bindPasswordFile,
          attributes: { mailboxStore: 'description' },
          defaultMailbox: { store: 'Dovecot' },
        },
      };
    },
  });
});

after(async () => {
  await srv?.stop();
  await dovecot?.stop();
  await slapd?.stop();
  if (dir) cleanup(dir);
});

async function send(o: Outgoing): Promise<string> {
  const c = await RawSmtp.connect(PORT, HOST, HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const id = await transaction(c, o);
    await c.cmd('QUIT');
    return id;
  } finally {
    c.close();
  }
}

/** The user's INBOX messages that carry `subject`, waited for over IMAP. */
function inboxWith(u: DovecotUser, subject: string, count = 1): Promise<string[]> {
  return waitFor(`${count} message(s) "${subject}" in ${u.address}'s INBOX`, () => {
    const found = dovecot.imapInbox(u).filter((m) => m.includes(`\r\nSubject: ${subject}\r\n`));
    return found.length >= count ? found : undefined;
  });
}

/** Dovecot's LMTP session id from the Received header it added on top of a message. */
const dovecotId = (message: string) =>
  /\r\nReceived: from [^\r]*\r\n\tby [^\r]* with LMTP\r\n\tid (\S+)\r\n/.exec(message)?.[1];

test('directory lookup puts the LDAP users on the store their entry names, or on defaultMailbox.store', async () => {
  const expectations: [string, string][] = [
    [DANA.address, 'Dovecot'],
    [ERIN.address, 'Dovecot'],
    [ALICE, 'Mailbox Store'],
  ];
  for (const [address, store] of expectations) {
    const r = await bh(['directory', 'lookup', address, '-c', srv.configFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`mailbox: server MAIL1, store "${store}"`), r.stdout);
  }
});

test('mail to an LDAP user and to its proxy address goes over LMTP to Dovecot; IMAP reads it, headers intact', async () => {
  const id = await send({
    from: EXTERNAL,
    to: [DANA.address],
    subject: 'LDAP over LMTP',
    body: 'Hi Dana.\r\n',
  });
  const [message] = await inboxWith(DANA, 'LDAP over LMTP');
  const lines = message!.split('\r\n');
  assert.equal(lines[0], `Return-Path: <${EXTERNAL}>`);
  assert.equal(lines[1], `Delivered-To: ${DANA.address}`);
  assert.match(message!, /\r\n\tby [^\r]* with LMTP\r\n/);
  assert.match(
    message!,
    new RegExp(
      `\r\nReceived: from client\\.test [^\r]* by mail1\\.test\\.example with ESMTP\r\n\tid ${id}; `,
    ),
  );
  assert.match(
    message!,
    new RegExp(
      `\r\nFrom: <${EXTERNAL}>\r\nTo: <${DANA.address}>\r\nSubject: LDAP over LMTP\r\nMessage-ID: <pipeline\\.`,
    ),
  );
  assert.match(message!, /\r\n\r\nHi Dana\.\r\n$/);

  await send({ from: EXTERNAL, to: ['d.example@example.com'], subject: 'To the proxy address' });
  const [proxied] = await inboxWith(DANA, 'To the proxy address');
  // The store is given the user's primary address, whatever address the sender used.
  assert.match(proxied!, /^Return-Path: <kim@fourthcoffee\.test>\r\nDelivered-To: dana@example\.com\r\n/);
  assert.match(proxied!, /\r\nTo: <d\.example@example\.com>\r\n/);

  await send({ from: EXTERNAL, to: [ERIN.address], subject: 'On the default store' });
  await inboxWith(ERIN, 'On the default store');
  await waitFor('DELIVER tracked', () =>
    trackingEvents(srv.dataDir, id).some((e) => e.event === 'DELIVER' && e.recipients.includes(DANA.address)),
  );
});

test('a nested LDAP group whose members are on the LMTP store: one copy per member', async () => {
  const id = await send({ from: EXTERNAL, to: ['support@example.com'], subject: 'To Support' });
  const [toDana] = await inboxWith(DANA, 'To Support');
  const [toErin] = await inboxWith(ERIN, 'To Support');
  // Both members' copies went in one LMTP transaction: the same Dovecot session id.
  const session = dovecotId(toDana!);
  assert.ok(session, toDana);
  assert.equal(dovecotId(toErin!), session);
  await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, id)?.length === 0);
  await sleep(300);
  const copies = (u: DovecotUser) =>
    dovecot.imapInbox(u).filter((m) => m.includes('\r\nSubject: To Support\r\n')).length;
  assert.equal(copies(DANA), 1, 'Dana is in Support directly and through Tier Two: one copy');
  assert.equal(copies(ERIN), 1);
});

test("an LDAP user over quota in Dovecot: the LDAP sender gets an NDR 5.2.2 with the store's text", async () => {
  const id = await send({
    from: ALICE,
    to: [FULL.address, ERIN.address],
    subject: 'Too big for Full',
    body: `${'x'.repeat(78)}\r\n`.repeat(40),
  });
  await inboxWith(ERIN, 'Too big for Full');
  const [ndr] = await waitForMessages(srv.dataDir, ALICE, `${id}N1.`);
  const dsn = parseDsn(ndr!.content);
  assert.equal(dsn.perRecipient.length, 1, JSON.stringify(dsn.perRecipient));
  const r = dsn.perRecipient[0]!;
  assert.equal(r['Final-Recipient'], `rfc822; ${FULL.address}`);
  assert.equal(r['Action'], 'failed');
  assert.equal(r['Status'], '5.2.2');
  assert.match(r['Diagnostic-Code'] ?? '', /^smtp; 552 5\.2\.2 <full@example\.com> Quota exceeded/);
  assert.deepEqual(dovecot.imapInbox(FULL), [], 'nothing was saved for Full');
});
