// Mailbox stores with an LMTP driver (issue 15, "Mailbox stores"): a real server process
// delivers to a private Dovecot over LMTP, and the mail is read back over IMAP with
// Python's imaplib. One Dovecot for the whole file (127.0.82.1: LMTP 47910, IMAP 47911);
// Bridgehead listens on 127.0.82.2:47920.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { baseOrganisation, cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { privateDovecot, type DovecotUser, type PrivateDovecot } from '../helpers/dovecot.js';
import { transaction, parseDsn, queueRows, trackingEvents, type Outgoing } from '../pipeline/mail.js';
import { waitFor, waitForMessages } from '../pipeline/maildir.js';
import { bh, bhJson } from '../ops/ops.js';

const HOST = '127.0.82.2';
const PORT = 47920;
const DOVECOT = { host: '127.0.82.1', lmtpPort: 47910, imapPort: 47911 };
const ALICE = 'alice@example.com'; // a Maildir user: the sender, who receives the NDRs

const user = (address: string, quotaRule?: string): DovecotUser => ({
  address,
  password: 'secret',
  ...(quotaRule ? { quotaRule } : {}),
});
const DANA = user('dana@example.com');
const ERIN = user('erin@example.com');
const FULL = user('full@example.com', '*:storage=1K');
const LATE = user('late@example.com');
/** Dovecot knows this one by the local part only: the socket store's rcptTo says {localPart}. */
const FRANK = user('frank');

let dir: string;
let dovecot: PrivateDovecot;
let srv: RunningServer;

function configure(org: Record<string, any>): void {
  const server = org.routingGroups[0].servers[0];
  server.mailboxStores = [
    { name: 'Mailbox Store' },
    { name: 'Dovecot', driver: 'lmtp', lmtp: { host: DOVECOT.host, port: DOVECOT.lmtpPort, timeout: '10s' } },
    // Dovecot's own Unix socket (service lmtp's default unix_listener, under base_dir).
    {
      name: 'Dovecot Socket',
      driver: 'lmtp',
      lmtp: { socket: path.join(dovecot.dir, 'run', 'lmtp'), rcptTo: '{localPart}' },
    },
  ];
  server.virtualServers[0].delivery = {
    glitchRetryInterval: '1s',
    glitchRetryCount: 1,
    local: {
      first: '1s',
      second: '1s',
      third: '1s',
      subsequent: '1s',
      delayNotification: '1h',
      expiration: '1h',
    },
  };
  for (const u of [DANA, ERIN, FULL, LATE])
    org.directory.users.push({
      name: u.address.split('@')[0],
      addresses: [u.address],
      mailbox: { server: 'MAIL1', store: 'Dovecot' },
    });
  org.directory.users.push({
    name: 'Frank',
    addresses: ['frank@example.com'],
    mailbox: { server: 'MAIL1', store: 'Dovecot Socket' },
  });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-lmtp-'));
  dovecot = privateDovecot({
    dir: path.join(dir, 'dovecot'),
    ...DOVECOT,
    users: [DANA, ERIN, FULL, LATE, FRANK],
  });
  await dovecot.start();
  srv = await startServer({ engine: true, host: HOST, port: PORT, dir, mutate: configure });
});
after(async () => {
  await srv?.stop();
  await dovecot?.stop();
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

test('mail to a user whose store is LMTP reaches Dovecot and reads back over IMAP, headers intact', async () => {
  const id = await send({
    from: ALICE,
    to: [DANA.address],
    subject: 'Over LMTP',
    body: 'Hello Dana.\r\n.dot\r\n',
  });
  const [message] = await inboxWith(DANA, 'Over LMTP');
  const lines = message!.split('\r\n');
  // Dovecot's own lines on top: Return-Path and Delivered-To (one recipient), its Received.
  assert.equal(lines[0], `Return-Path: <${ALICE}>`);
  assert.equal(lines[1], `Delivered-To: ${DANA.address}`);
  assert.equal(lines[2], 'Received: from mail1.test.example ([127.0.0.1])');
  assert.match(message!, new RegExp(`\\tfor <${DANA.address}>; `));
  // Then Bridgehead's Received with the queue id, and the message as it was sent.
  assert.match(
    message!,
    new RegExp(
      `\r\nReceived: from client\\.test \\(\\[${HOST.replace(/\./g, '\\.')}\\]\\) by mail1\\.test\\.example with ESMTP\r\n\tid ${id}; `,
    ),
  );
  assert.equal(message!.match(/^Return-Path:/gm)?.length, 1, 'Bridgehead adds no Return-Path of its own');
  assert.match(message!, /\r\n\r\nHello Dana\.\r\n\.dot\r\n$/);
  await waitFor('DELIVER tracked for the Dovecot store', () =>
    trackingEvents(srv.dataDir, id).some((e) => e.event === 'DELIVER' && e.recipients.includes(DANA.address)),
  );
  await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, id)?.length === 0);
});

test('two users on one LMTP store: one transaction with two RCPTs', async () => {
  await send({ from: ALICE, to: [DANA.address, ERIN.address], subject: 'Both of you' });
  const [toDana] = await inboxWith(DANA, 'Both of you');
  const [toErin] = await inboxWith(ERIN, 'Both of you');
  const session = dovecotId(toDana!);
  assert.ok(session, toDana);
  assert.equal(dovecotId(toErin!), session, 'both copies came in the same LMTP session id');
  // Dovecot names the second recipient of a transaction <session>:R2 and, with more than
  // one recipient, adds no Delivered-To.
  const log = dovecot.log();
  const id = session!.replace(/[+/]/g, (c) => `\\${c}`);
  assert.match(
    log,
    new RegExp(`lmtp\\(dana@example\\.com\\)<\\d+><${id}>: Info: [^\\n]*saved mail to INBOX`),
  );
  assert.match(
    log,
    new RegExp(`lmtp\\(erin@example\\.com\\)<\\d+><${id}:R2>: Info: [^\\n]*saved mail to INBOX`),
  );
  assert.doesNotMatch(toDana!, /^Delivered-To:/m);
});

test('one message for users of two stores: the Maildir store and the LMTP store each get their copy', async () => {
  const id = await send({ from: DANA.address, to: [ALICE, DANA.address], subject: 'Two stores' });
  const [inMaildir] = await waitForMessages(srv.dataDir, ALICE, `${id}.`);
  // The Maildir driver writes its own Return-Path and Delivered-To, as before.
  assert.match(
    inMaildir!.content.toString('utf8'),
    /^Return-Path: <dana@example\.com>\r\nDelivered-To: alice@example\.com\r\n/,
  );
  await inboxWith(DANA, 'Two stores');
  await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, id)?.length === 0);
  const delivered = trackingEvents(srv.dataDir, id).filter((e) => e.event === 'DELIVER');
  assert.equal(delivered.length, 2);
});

test('a store on a Unix socket, RCPT TO the local part only ({localPart})', async () => {
  await send({ from: ALICE, to: ['frank@example.com'], subject: 'Through the socket' });
  const [message] = await inboxWith(FRANK, 'Through the socket');
  assert.match(message!, /^Return-Path: <alice@example\.com>\r\nDelivered-To: frank\r\n/);
  assert.match(dovecot.log(), /lmtp\(\d+\): Info: Connect from local/);
});

test("an over-quota Dovecot mailbox: NDR 5.2.2 with the store's text; the other recipient gets the mail", async () => {
  const id = await send({
    from: ALICE,
    to: [FULL.address, DANA.address],
    subject: 'Too big for Full',
    body: `${'x'.repeat(78)}\r\n`.repeat(40),
  });
  await inboxWith(DANA, 'Too big for Full');
  const [ndr] = await waitForMessages(srv.dataDir, ALICE, `${id}N1.`);
  const dsn = parseDsn(ndr!.content);
  assert.equal(dsn.perRecipient.length, 1, JSON.stringify(dsn.perRecipient));
  const r = dsn.perRecipient[0]!;
  assert.equal(r['Final-Recipient'], `rfc822; ${FULL.address}`);
  assert.equal(r['Action'], 'failed');
  assert.equal(r['Status'], '5.2.2');
  assert.match(r['Diagnostic-Code'] ?? '', /^smtp; 552 5\.2\.2 <full@example\.com> Quota exceeded/);
  assert.ok(dsn.text.includes('#5.2.2>'), dsn.text);
  assert.match(dsn.text, /Quota exceeded/);
  assert.deepEqual(dovecot.imapInbox(FULL), [], 'nothing was saved for Full');
});

test('Dovecot stopped: the mail waits in Local delivery (Retry), never an NDR; restarted, it is delivered', async () => {
  await dovecot.stop();
  try {
    const id = await send({ from: ALICE, to: [LATE.address], subject: 'While Dovecot was down' });
    const row = await waitFor('the recipient to be deferred', () => {
      const rows = queueRows(srv.dataDir, id);
      return rows?.[0]?.last_error ? rows[0] : undefined;
    });
    assert.equal(row.queue, 'Local delivery');
    assert.match(
      row.last_error!,
      /^451 4\.4\.1 Cannot connect to mailbox store Dovecot \(127\.0\.82\.1:47910\)/,
    );
    const api = ['--api', srv.api!, '--data-dir', srv.dataDir];
    const queues = await bhJson<{ name: string; state: string }[]>(['queue', 'list', ...api]);
    assert.equal(queues.find((q) => q.name === 'Local delivery')?.state, 'Retry');
    // A few more attempts fail the same way; still no NDR, nothing lost.
    await waitFor('two more attempts', () => {
      const e = trackingEvents(srv.dataDir, id).filter((x) => x.event === 'DEFER');
      return e.length >= 3;
    });
    assert.equal(queueRows(srv.dataDir, id)?.length, 1);
    assert.ok(!trackingEvents(srv.dataDir, id).some((e) => e.event === 'FAIL'));
    await dovecot.start();
    await inboxWith(LATE, 'While Dovecot was down');
    await waitFor('the message to leave the queues', () => queueRows(srv.dataDir, id)?.length === 0);
    assert.ok(!trackingEvents(srv.dataDir, `${id}N1`).length, 'no NDR');
    assert.equal((await bh(['queue', 'list', ...api])).code, 0);
  } finally {
    await dovecot.start().catch(() => undefined);
  }
});

test('config check refuses a user whose store the server does not list', async () => {
  const org = baseOrganisation(PORT, HOST);
  org.directory.users[0].mailbox.store = 'Dovecot';
  const file = path.join(dir, 'unknown-store.yaml');
  writeFileSync(file, YAML.stringify(org));
  const r = await bh(['config', 'check', file]);
  assert.notEqual(r.code, 0);
  assert.match(
    r.stdout + r.stderr,
    /directory\.users\[0\]\.mailbox\.store: "Alice": mailbox store "Dovecot" is not configured on server MAIL1 \(its mailboxStores: "Mailbox Store"; add it there\)/,
  );
});
