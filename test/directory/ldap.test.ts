// The LDAP directory backend against a private OpenLDAP (Debian's slapd): users, contacts,
// nested and dynamic groups, proxy addresses, `directory lookup`, SMTP AUTH by bind, and a
// directory that stops answering mid-stream (defer, 451 4.4.3, never 5.1.1) and comes back.
// One slapd for the whole file, on ldap://127.0.81.1:47810, under the test's temp folder.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, cleanup, adminAuth, type RunningServer } from '../helpers/server.js';
import YAML from 'yaml';
import { RawSmtp } from '../helpers/smtp.js';
import { bh } from '../ops/ops.js';
import { run } from '../smtp/util.js';
import { ldapGroup, ldapPerson, privateSlapd, slapdHash, type PrivateSlapd } from '../helpers/slapd.js';
import { copiesOf, sleep, waitFor } from '../pipeline/maildir.js';
import { queueRows, trackingEvents, transaction, type Outgoing } from '../pipeline/mail.js';

const LDAP_HOST = '127.0.81.1';
const SMTP_HOST = '127.0.81.2';
/** A second virtual server without the recipient filter: mail reaches the categorizer. */
const UNFILTERED_PORT = 47820;
const BASE = 'dc=example,dc=com';
const ALICE_PW = 'alice: correct horse';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-ldap-'));
const slapd: PrivateSlapd = privateSlapd({ dir, host: LDAP_HOST, port: 47810, ldapsPort: 47811, base: BASE });
let srv: RunningServer;

function ldif(): string {
  const person = (uid: string, cn: string, mail: string, extra: string[] = []) =>
    ldapPerson(BASE, uid, cn, mail, extra);
  return [
    person('alice', 'Alice Example', 'alice@example.com', [
      'mailLocalAddress: a.example@example.com',
      `userPassword: ${slapdHash(ALICE_PW)}`,
    ]),
    person('bob', 'Bob Example', 'bob@example.com'),
    person('carol', 'Carol Example', 'carol@example.com'),
    [
      `dn: cn=Fabrikam Dan,ou=contacts,${BASE}`,
      'objectClass: inetOrgPerson',
      'objectClass: inetLocalMailRecipient',
      'cn: Fabrikam Dan',
      'sn: Dan',
      'mail: dan@example.com',
      'mailRoutingAddress: dan@fabrikam.test',
      '',
    ].join('\n'),
    ldapGroup(BASE, 'Inner Circle', 'inner@example.com', [
      `uid=alice,ou=people,${BASE}`,
      `uid=bob,ou=people,${BASE}`,
    ]),
    ldapGroup(BASE, 'All Staff', 'allstaff@example.com', [
      `cn=Inner Circle,ou=groups,${BASE}`,
      `uid=alice,ou=people,${BASE}`,
      `uid=carol,ou=people,${BASE}`,
    ]),
    [
      `dn: cn=Everyone,ou=groups,${BASE}`,
      'objectClass: groupOfURLs',
      'objectClass: inetLocalMailRecipient',
      'cn: Everyone',
      'mailLocalAddress: everyone@example.com',
      `memberURL: ldap:///ou=people,${BASE}??one?(objectClass=inetOrgPerson)`,
      '',
    ].join('\n'),
  ].join('\n');
}

/** One message to the server on its loopback address; the queue id. */
async function sendMail(port: number, o: Outgoing): Promise<string> {
  const c = await RawSmtp.connect(port, SMTP_HOST);
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

/** `directory lookup` with the test's organisation file, its LDAP settings changed. */
async function lookupWith(ldap: Record<string, unknown>, address: string) {
  const org = YAML.parse(readFileSync(srv.configFile, 'utf8'));
  org.directory.ldap = { ...org.directory.ldap, ...ldap };
  const file = path.join(srv.dir, `org-${Object.keys(ldap).join('-')}.yaml`);
  writeFileSync(file, YAML.stringify(org));
  return bh(['directory', 'lookup', address, '-c', file]);
}

before(async () => {
  await slapd.start();
  await slapd.add(ldif());
  srv = await startServer({
    engine: true,
    host: SMTP_HOST,
    mutate: (org) => {
      const vs = org.routingGroups[0].servers[0].virtualServers[0];
      vs.filters = { recipient: true };
      vs.authentication = { basicWithoutTls: true };
      org.routingGroups[0].servers[0].virtualServers.push({
        name: 'Unfiltered',
        ip: SMTP_HOST,
        port: UNFILTERED_PORT,
      });
      org.filters = { recipient: { filterNotInDirectory: true } };
      org.directory = {
        backend: 'ldap',
        ldap: {
          url: slapd.url,
          baseDn: BASE,
          bindDn: slapd.serviceDn,
          bindPasswordFile: slapd.bindPasswordFile,
          timeoutMs: 2000,
          retrySeconds: 1,
          // Short, so that mail sent while slapd is down asks the directory again.
          cache: { ttlSeconds: 1, negativeTtlSeconds: 1 },
        },
      };
    },
  });
});

after(async () => {
  await srv?.stop();
  await slapd.stop();
  if (srv) cleanup(srv.dir);
  cleanup(dir);
});

test('mail to an LDAP user and to a proxy address is delivered to its Maildir', async () => {
  const id = await sendMail(srv.port, { from: 'kim@fourthcoffee.test', to: ['alice@example.com'] });
  await waitFor('alice to receive', () => copiesOf(srv.dataDir, 'alice@example.com', id) === 1);
  const proxied = await sendMail(srv.port, { from: 'kim@fourthcoffee.test', to: ['a.example@example.com'] });
  await waitFor(
    'the proxy address to reach alice',
    () => copiesOf(srv.dataDir, 'alice@example.com', proxied) === 1,
  );
});

test('a nested LDAP group expands once per member', async () => {
  const id = await sendMail(srv.port, { from: 'kim@fourthcoffee.test', to: ['allstaff@example.com'] });
  for (const who of ['alice', 'bob', 'carol'])
    await waitFor(`${who} to receive`, () => copiesOf(srv.dataDir, `${who}@example.com`, id) === 1);
  await sleep(300);
  assert.equal(copiesOf(srv.dataDir, 'alice@example.com', id), 1, 'alice is in the group twice: one copy');
});

test('directory lookup shows a user, a contact, and a nested group after expansion', async () => {
  const config = srv.configFile;
  const user = await bh(['directory', 'lookup', 'a.example@example.com', '-c', config]);
  assert.equal(user.code, 0, user.stderr);
  assert.match(user.stdout, /user "Alice Example" <alice@example\.com>/);
  assert.match(user.stdout, /mailbox: server MAIL1, store "Mailbox Store"/);
  assert.match(user.stdout, /alice@example\.com: local delivery/);

  const contact = await bh(['directory', 'lookup', 'dan@example.com', '-c', config]);
  assert.equal(contact.code, 0, contact.stderr);
  assert.match(contact.stdout, /contact "Fabrikam Dan"/);
  assert.match(contact.stdout, /target: dan@fabrikam\.test/);
  assert.match(contact.stdout, /dan@fabrikam\.test: routed out \(domain fabrikam\.test\)/);

  const group = await bh(['directory', 'lookup', 'allstaff@example.com', '-c', config]);
  assert.equal(group.code, 0, group.stderr);
  assert.match(group.stdout, /group "All Staff"/);
  assert.match(group.stdout, /recipients after expansion: 3/);
  for (const who of ['alice', 'bob', 'carol'])
    assert.match(group.stdout, new RegExp(`${who}@example\\.com: local`));

  const dynamic = await bh(['directory', 'lookup', 'everyone@example.com', '-c', config]);
  assert.equal(dynamic.code, 0, dynamic.stderr);
  assert.match(dynamic.stdout, /recipients after expansion: 3/);

  const nobody = await bh(['directory', 'lookup', 'nobody@example.com', '-c', config]);
  assert.equal(nobody.code, 2);
  assert.match(nobody.stderr, /no recipient nobody@example\.com in the directory \(ldap\)/);
});

test('LDAPS and StartTLS check the certificate against caFile; without the CA the directory cannot answer', async () => {
  const ca = slapd.caFile;
  const ldaps = await lookupWith({ url: slapd.ldapsUrl, caFile: ca }, 'bob@example.com');
  assert.equal(ldaps.code, 0, ldaps.stderr);
  assert.match(ldaps.stdout, /user "Bob Example"/);
  const startTls = await lookupWith({ startTls: true, caFile: ca }, 'bob@example.com');
  assert.equal(startTls.code, 0, startTls.stderr);
  const untrusted = await lookupWith({ url: slapd.ldapsUrl }, 'bob@example.com');
  assert.equal(untrusted.code, 3);
  assert.match(untrusted.stderr, /the directory cannot answer: .*certificate/i);
  const badBind = await lookupWith({ bindPasswordFile: path.join(dir, 'slapd.conf') }, 'bob@example.com');
  assert.equal(badBind.code, 3);
  assert.match(badBind.stderr, /refused the service account/);
});

test('/metrics carries the LDAP and directory look-up counters', async () => {
  const res = await fetch(`${srv.api}/metrics`, { headers: adminAuth(srv.dataDir) });
  const text = await res.text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  assert.ok(value('bridgehead_ldap_connections_total') >= 1, text);
  assert.ok(value('bridgehead_ldap_binds_total') >= 1);
  assert.ok(value('bridgehead_ldap_searches_total') >= 1);
  assert.ok(value('bridgehead_categorizer_directory_lookups_total') >= 1);
  assert.ok(value('bridgehead_ldap_connections_open') >= 1);
});

test('SMTP AUTH binds as the LDAP user: the right password works, a wrong one gets 535 5.7.8', async () => {
  const swaks = (password: string, mech: string) =>
    run('/usr/bin/swaks', [
      '--server',
      SMTP_HOST,
      '--port',
      String(srv.port),
      '--ehlo',
      'swaks.test',
      '--quit-after',
      'AUTH',
      '--auth',
      mech,
      '--auth-user',
      'alice@example.com',
      '--auth-password',
      password,
    ]);
  for (const mech of ['PLAIN', 'LOGIN']) {
    const ok = await swaks(ALICE_PW, mech);
    assert.match(ok.stdout, /<- {2}235 2\.7\.0/, ok.stdout);
  }
  const wrong = await swaks('not the password', 'PLAIN');
  assert.match(wrong.stdout + wrong.stderr, /535 5\.7\.8/);
});

test('slapd stopped: mail is deferred in the categorizer, RCPT gets 451 4.4.3; restarted: all delivered', async () => {
  await slapd.stop();
  await sleep(1200); // the cache's TTL: the next look-ups ask the directory
  const id = await sendMail(UNFILTERED_PORT, { from: 'kim@fourthcoffee.test', to: ['bob@example.com'] });
  await waitFor('the categorizer to defer', () =>
    (queueRows(srv.dataDir, id) ?? []).some((r) => r.state === 'retry'),
  );
  const rows = queueRows(srv.dataDir, id)!;
  assert.ok(
    rows.every((r) => r.state !== 'done'),
    'nothing is final while the directory is down',
  );
  assert.ok(rows.every((r) => r.queue === 'Messages awaiting directory lookup'));
  assert.match(rows[0]!.last_error ?? '', /451 4\.4\.3/);
  assert.ok(rows.every((r) => r.status !== '5.1.1'));

  const c = await RawSmtp.connect(srv.port, SMTP_HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<unknown@example.com>'), /^451 4\.4\.3 /);
  } finally {
    await c.cmd('QUIT').catch(() => undefined);
    c.close();
  }

  await slapd.start();
  await waitFor(
    'bob to receive after slapd is back',
    () => copiesOf(srv.dataDir, 'bob@example.com', id) === 1,
  );
  const events = trackingEvents(srv.dataDir, id).map((e) => e.event);
  assert.ok(!events.includes('FAIL') && !events.includes('DSN'), `no NDR: ${events.join(' ')}`);
});
