// The LDAP directory backend against a private OpenLDAP (Debian's slapd): users, contacts,
// nested and dynamic groups, proxy addresses, `directory lookup`, SMTP AUTH by bind, and a
// directory that stops answering mid-stream (defer, 451 4.4.3, never 5.1.1) and comes back.
// One slapd for the whole file, on ldap://127.0.81.1:47810, under the test's temp folder.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, cleanup, adminAuth, type RunningServer } from '../helpers/server.js';
import YAML from 'yaml';
import { RawSmtp } from '../helpers/smtp.js';
import { bh } from '../ops/ops.js';
import { run } from '../smtp/util.js';
import { copiesOf, sleep, waitFor } from '../pipeline/maildir.js';
import { queueRows, trackingEvents, transaction, type Outgoing } from '../pipeline/mail.js';

const LDAP_HOST = '127.0.81.1';
const LDAP_URL = `ldap://${LDAP_HOST}:47810`;
const LDAPS_URL = `ldaps://${LDAP_HOST}:47811`;
const SMTP_HOST = '127.0.81.2';
/** A second virtual server without the recipient filter: mail reaches the categorizer. */
const UNFILTERED_PORT = 47820;
const BASE = 'dc=example,dc=com';
const ROOT_DN = `cn=admin,${BASE}`;
const ROOT_PW = 'root-secret';
const SERVICE_DN = `cn=bridgehead,ou=services,${BASE}`;
const SERVICE_PW = 'service-secret';
const ALICE_PW = 'alice: correct horse';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-ldap-'));
let slapd: ChildProcess | undefined;
let srv: RunningServer;

const hash = (pw: string) => execFileSync('/usr/sbin/slappasswd', ['-s', pw]).toString().trim();

/** The slapd.conf docs/directory.md shows, with this test's paths. */
function slapdConf(): string {
  return `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
include /etc/ldap/schema/dyngroup.schema
pidfile ${dir}/slapd.pid
TLSCACertificateFile ${dir}/tls/ca.pem
TLSCertificateFile ${dir}/tls/server.pem
TLSCertificateKeyFile ${dir}/tls/server.key
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "${BASE}"
rootdn "${ROOT_DN}"
rootpw ${hash(ROOT_PW)}
directory ${dir}/db
index objectClass,mail,mailLocalAddress,uid,cn eq
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="${SERVICE_DN}" read
  by self read
  by * none
`;
}

function ldif(): string {
  const person = (uid: string, cn: string, mail: string, extra: string[] = []) =>
    [
      `dn: uid=${uid},ou=people,${BASE}`,
      'objectClass: inetOrgPerson',
      'objectClass: inetLocalMailRecipient',
      `uid: ${uid}`,
      `cn: ${cn}`,
      `sn: ${cn.split(' ').pop()}`,
      `mail: ${mail}`,
      ...extra,
      '',
    ].join('\n');
  return [
    `dn: ${BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n`,
    `dn: ou=people,${BASE}\nobjectClass: organizationalUnit\nou: people\n`,
    `dn: ou=contacts,${BASE}\nobjectClass: organizationalUnit\nou: contacts\n`,
    `dn: ou=groups,${BASE}\nobjectClass: organizationalUnit\nou: groups\n`,
    `dn: ou=services,${BASE}\nobjectClass: organizationalUnit\nou: services\n`,
    `dn: ${SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: bridgehead\nuserPassword: ${hash(SERVICE_PW)}\n`,
    person('alice', 'Alice Example', 'alice@example.com', [
      'mailLocalAddress: a.example@example.com',
      `userPassword: ${hash(ALICE_PW)}`,
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
    [
      `dn: cn=Inner Circle,ou=groups,${BASE}`,
      'objectClass: groupOfNames',
      'objectClass: inetLocalMailRecipient',
      'cn: Inner Circle',
      'mailLocalAddress: inner@example.com',
      `member: uid=alice,ou=people,${BASE}`,
      `member: uid=bob,ou=people,${BASE}`,
      '',
    ].join('\n'),
    [
      `dn: cn=All Staff,ou=groups,${BASE}`,
      'objectClass: groupOfNames',
      'objectClass: inetLocalMailRecipient',
      'cn: All Staff',
      'mailLocalAddress: allstaff@example.com',
      `member: cn=Inner Circle,ou=groups,${BASE}`,
      `member: uid=alice,ou=people,${BASE}`,
      `member: uid=carol,ou=people,${BASE}`,
      '',
    ].join('\n'),
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

async function startSlapd(): Promise<void> {
  slapd = spawn(
    '/usr/sbin/slapd',
    ['-f', path.join(dir, 'slapd.conf'), '-h', `${LDAP_URL}/ ${LDAPS_URL}/`, '-d', '0'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  // Ready when an anonymous search of the root DSE answers; bounded.
  for (let i = 0; i < 100; i++) {
    const r = await run('/usr/bin/ldapsearch', ['-x', '-H', LDAP_URL, '-b', '', '-s', 'base', '1.1']);
    if (r.code === 0) return;
    await sleep(100);
  }
  throw new Error('slapd did not start');
}

async function stopSlapd(): Promise<void> {
  const p = slapd;
  slapd = undefined;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGKILL');
  await exited;
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

/** A private CA and a certificate for the directory's address (IP SAN). */
function makeCertificates(): void {
  const tls = path.join(dir, 'tls');
  mkdirSync(tls);
  const openssl = (args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: tls, stdio: 'pipe' });
  openssl(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Test LDAP CA'].concat([
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    ]),
  );
  openssl(
    ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${LDAP_HOST}`, '-keyout', 'server.key'].concat([
      '-out',
      'server.csr',
    ]),
  );
  writeFileSync(path.join(tls, 'san.ext'), `subjectAltName=IP:${LDAP_HOST}\n`);
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
      '-days',
      '2',
      '-extfile',
      'san.ext',
      '-out',
      'server.pem',
    ]),
  );
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
  mkdirSync(path.join(dir, 'db'), { recursive: true });
  makeCertificates();
  writeFileSync(path.join(dir, 'slapd.conf'), slapdConf());
  writeFileSync(path.join(dir, 'data.ldif'), ldif());
  await startSlapd();
  const added = await run('/usr/bin/ldapadd', [
    '-x',
    '-H',
    LDAP_URL,
    '-D',
    ROOT_DN,
    '-w',
    ROOT_PW,
    '-f',
    path.join(dir, 'data.ldif'),
  ]);
  assert.equal(added.code, 0, added.stderr);
  writeFileSync(path.join(dir, 'bind.secret'), `${SERVICE_PW}\n`, { mode: 0o600 });
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
          url: LDAP_URL,
          baseDn: BASE,
          bindDn: SERVICE_DN,
          bindPasswordFile: path.join(dir, 'bind.secret'),
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
  await stopSlapd();
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
  const ca = path.join(dir, 'tls', 'ca.pem');
  const ldaps = await lookupWith({ url: LDAPS_URL, caFile: ca }, 'bob@example.com');
  assert.equal(ldaps.code, 0, ldaps.stderr);
  assert.match(ldaps.stdout, /user "Bob Example"/);
  const startTls = await lookupWith({ startTls: true, caFile: ca }, 'bob@example.com');
  assert.equal(startTls.code, 0, startTls.stderr);
  const untrusted = await lookupWith({ url: LDAPS_URL }, 'bob@example.com');
  assert.equal(untrusted.code, 3);
  assert.match(untrusted.stderr, /the directory cannot answer: .*certificate/i);
  const badBind = await lookupWith({ bindPasswordFile: path.join(dir, 'data.ldif') }, 'bob@example.com');
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
  await stopSlapd();
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

  await startSlapd();
  await waitFor(
    'bob to receive after slapd is back',
    () => copiesOf(srv.dataDir, 'bob@example.com', id) === 1,
  );
  const events = trackingEvents(srv.dataDir, id).map((e) => e.event);
  assert.ok(!events.includes('FAIL') && !events.includes('DSN'), `no NDR: ${events.join(' ')}`);
});
