// A private OpenLDAP (Debian's slapd) for tests: its own slapd.conf, mdb database, pid file
// and (optionally) a private CA and certificate under one folder, listening on a loopback
// address of its own. It never touches a system instance. The configuration is the one
// docs/directory.md shows: core, cosine, inetOrgPerson, misc (inetLocalMailRecipient) and
// dyngroup (groupOfURLs); a service account that may read everything; users may bind.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from '../smtp/util.js';

export interface PrivateSlapd {
  dir: string;
  host: string;
  /** ldap://host:port */
  url: string;
  /** ldaps://host:port when started with an ldapsPort. */
  ldapsUrl?: string;
  base: string;
  rootDn: string;
  serviceDn: string;
  /** File holding the service account's password: directory.ldap.bindPasswordFile. */
  bindPasswordFile: string;
  /** PEM of the private CA, with tls. */
  caFile: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Loads LDIF text with ldapadd as the root DN; throws with ldapadd's message. */
  add(ldif: string): Promise<void>;
}

/** A userPassword value as slappasswd makes it. */
export const slapdHash = (password: string): string =>
  execFileSync('/usr/sbin/slappasswd', ['-s', password]).toString().trim();

/** An inetOrgPerson + inetLocalMailRecipient entry under ou=people. */
export function ldapPerson(
  base: string,
  uid: string,
  cn: string,
  mail: string,
  extra: string[] = [],
): string {
  return [
    `dn: uid=${uid},ou=people,${base}`,
    'objectClass: inetOrgPerson',
    'objectClass: inetLocalMailRecipient',
    `uid: ${uid}`,
    `cn: ${cn}`,
    `sn: ${cn.split(' ').pop()}`,
    `mail: ${mail}`,
    ...extra,
    '',
  ].join('\n');
}

/** A groupOfNames with a mail address under ou=groups; members are DNs. */
export function ldapGroup(base: string, cn: string, address: string, members: string[]): string {
  return [
    `dn: cn=${cn},ou=groups,${base}`,
    'objectClass: groupOfNames',
    'objectClass: inetLocalMailRecipient',
    `cn: ${cn}`,
    `mailLocalAddress: ${address}`,
    ...members.map((m) => `member: ${m}`),
    '',
  ].join('\n');
}

/** The slapd.conf docs/directory.md shows, with this instance's paths. */
export function slapdConfig(o: {
  dir: string;
  base: string;
  rootDn: string;
  rootPassword: string;
  serviceDn: string;
  tls: boolean;
}): string {
  const tls = o.tls
    ? `TLSCACertificateFile ${o.dir}/tls/ca.pem
TLSCertificateFile ${o.dir}/tls/server.pem
TLSCertificateKeyFile ${o.dir}/tls/server.key
`
    : '';
  return `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
include /etc/ldap/schema/dyngroup.schema
pidfile ${o.dir}/slapd.pid
${tls}modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "${o.base}"
rootdn "${o.rootDn}"
rootpw ${slapdHash(o.rootPassword)}
directory ${o.dir}/db
index objectClass,mail,mailLocalAddress,uid,cn eq
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="${o.serviceDn}" read
  by self read
  by * none
`;
}

/** A private CA and a certificate for the directory's address (IP SAN), under dir/tls. */
function makeCertificates(dir: string, host: string): void {
  const tls = path.join(dir, 'tls');
  mkdirSync(tls, { recursive: true });
  const openssl = (args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: tls, stdio: 'pipe' });
  const days = ['-days', '2'];
  openssl(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', ...days, '-subj', '/CN=Test LDAP CA'].concat([
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    ]),
  );
  openssl(
    ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${host}`].concat([
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
    ]),
  );
  writeFileSync(path.join(tls, 'san.ext'), `subjectAltName=IP:${host}\n`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      ...days,
    ].concat(['-extfile', 'san.ext', '-out', 'server.pem']),
  );
}

const ROOT_PASSWORD = 'root-secret';
const SERVICE_PASSWORD = 'service-secret';

/**
 * A slapd under `dir` for `base` (dc=example,dc=com style), with the base entry, ou=people,
 * ou=contacts, ou=groups, ou=services and the service account loaded on the first start.
 */
export function privateSlapd(o: {
  dir: string;
  host: string;
  port: number;
  /** Also listen for LDAPS here, and configure StartTLS, with a private CA. */
  ldapsPort?: number;
  base?: string;
}): PrivateSlapd {
  const { dir, host } = o;
  const base = o.base ?? 'dc=example,dc=com';
  const rootDn = `cn=admin,${base}`;
  const serviceDn = `cn=bridgehead,ou=services,${base}`;
  const url = `ldap://${host}:${o.port}`;
  const ldapsUrl = o.ldapsPort ? `ldaps://${host}:${o.ldapsPort}` : undefined;
  const tls = Boolean(o.ldapsPort);
  mkdirSync(path.join(dir, 'db'), { recursive: true });
  if (tls) makeCertificates(dir, host);
  const configFile = path.join(dir, 'slapd.conf');
  writeFileSync(configFile, slapdConfig({ dir, base, rootDn, rootPassword: ROOT_PASSWORD, serviceDn, tls }));
  const bindPasswordFile = path.join(dir, 'bind.secret');
  writeFileSync(bindPasswordFile, `${SERVICE_PASSWORD}\n`, { mode: 0o600 });
  let proc: ChildProcess | undefined;
  let loaded = false;
  const dc = /^dc=([^,]+)/i.exec(base)?.[1] ?? 'example';

  const add = async (ldif: string) => {
    const file = path.join(dir, `add-${Date.now()}.ldif`);
    writeFileSync(file, ldif);
    const r = await run('/usr/bin/ldapadd', ['-x', '-H', url, '-D', rootDn, '-w', ROOT_PASSWORD, '-f', file]);
    if (r.code !== 0) throw new Error(`ldapadd failed (${r.code}): ${r.stderr}`);
  };

  return {
    dir,
    host,
    url,
    ...(ldapsUrl ? { ldapsUrl } : {}),
    base,
    rootDn,
    serviceDn,
    bindPasswordFile,
    caFile: path.join(dir, 'tls', 'ca.pem'),
    async start() {
      if (proc && proc.exitCode === null) return;
      const listen = ldapsUrl ? `${url}/ ${ldapsUrl}/` : `${url}/`;
      proc = spawn('/usr/sbin/slapd', ['-f', configFile, '-h', listen, '-d', '0'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      // Ready when an anonymous search of the root DSE answers; bounded.
      let ready = false;
      for (let i = 0; i < 100 && !ready; i++) {
        const r = await run('/usr/bin/ldapsearch', ['-x', '-H', url, '-b', '', '-s', 'base', '1.1']);
        ready = r.code === 0;
        if (!ready) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (!ready) throw new Error('slapd did not start');
      if (loaded) return;
      loaded = true;
      const ou = (name: string) => `dn: ou=${name},${base}\nobjectClass: organizationalUnit\nou: ${name}\n`;
      await add(
        [
          `dn: ${base}\nobjectClass: dcObject\nobjectClass: organization\ndc: ${dc}\no: ${dc}\n`,
          ...['people', 'contacts', 'groups', 'services'].map(ou),
          `dn: ${serviceDn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: bridgehead\nuserPassword: ${slapdHash(SERVICE_PASSWORD)}\n`,
        ].join('\n'),
      );
    },
    async stop() {
      const p = proc;
      proc = undefined;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      p.kill('SIGKILL');
      await exited;
    },
    add,
  };
}
