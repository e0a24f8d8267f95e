// SCRAM-SHA-256 (authentication.integrated) with clients that speak it: GNU SASL's gsasl
// (SMTP mode, STARTTLS with a certificate it verifies) and a small RFC 5802 client in Python
// (hashlib/hmac, driven by smtplib) that goes on to relay as the user. One stored verifier,
// written by `bridgehead user passwd`, serves SCRAM, PLAIN (swaks) and LOGIN.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { CLI, baseOrganisation, cleanup, launch, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { run, upgradeToTls } from './util.js';

const HOST = '127.0.83.1';
const PORT = 48010;
const GSASL = '/usr/bin/gsasl';
const SWAKS = '/usr/bin/swaks';
// Non-ASCII and a soft hyphen (SASLprep maps it to nothing): both ends must prepare alike.
const PASSWORD = 'pe\u00f1cil \u00ADbattery';

let srv: RunningServer;
let dir: string;

/** A CA and a server certificate for HOST, so gsasl can verify the server it talks to. */
async function makeCertificates(into: string): Promise<void> {
  const ssl = async (args: string[]) => {
    const r = await run('openssl', args, { cwd: into });
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  await ssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=Bridgehead test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  ]);
  await ssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    `/CN=${HOST}`,
  ]);
  writeFileSync(path.join(into, 'server.ext'), `subjectAltName=IP:${HOST}\nextendedKeyUsage=serverAuth\n`);
  await ssl([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'server.ext',
  ]);
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-scram-'));
  await makeCertificates(dir);
  const org = baseOrganisation(PORT, HOST);
  const vs = org.routingGroups[0].servers[0].virtualServers[0];
  vs.authentication = { integrated: true };
  vs.tls = { certFile: path.join(dir, 'server.pem'), keyFile: path.join(dir, 'server.key') };
  const configFile = path.join(dir, 'org.yaml');
  writeFileSync(configFile, YAML.stringify(org));
  // The administrator's way: the password on standard input, the verifier into the file.
  const r = await run(process.execPath, [CLI, 'user', 'passwd', 'alice@example.com', '-c', configFile], {
    input: `${PASSWORD}\n`,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'password set for "alice@example.com"\n');
  srv = await launch({ dir, configFile, port: PORT, host: HOST, hold: true });
});
after(async () => {
  await srv?.stop();
  cleanup(dir);
});

test('user passwd stores a SCRAM-SHA-256 verifier, never the password', () => {
  const text = readFileSync(srv.configFile, 'utf8');
  const stored = (YAML.parse(text) as any).directory.users[0].passwordHash as string;
  assert.match(stored, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  assert.doesNotMatch(text, /battery/);
});

test('user passwd refuses a password SASLprep prohibits, and leaves the file alone', async () => {
  const before = readFileSync(srv.configFile, 'utf8');
  const r = await run(process.execPath, [CLI, 'user', 'passwd', 'Alice', '-c', srv.configFile], {
    input: 'bell\u0007\n',
  });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /SASLprep \(RFC 4013\) prohibits/);
  assert.equal(readFileSync(srv.configFile, 'utf8'), before);
});

test('EHLO offers SCRAM-SHA-256 inside TLS only', async () => {
  const c = await RawSmtp.connect(PORT, HOST);
  await c.reply();
  const plain = await c.cmd('EHLO client.test');
  assert.doesNotMatch(plain, /AUTH/);
  assert.equal(
    await c.cmd('AUTH SCRAM-SHA-256'),
    '538 5.7.11 Encryption required for requested authentication mechanism',
  );
  assert.match(await c.cmd('STARTTLS'), /^220 /);
  const s = await upgradeToTls(c);
  assert.match(await s.cmd('EHLO client.test'), /^250-AUTH SCRAM-SHA-256 LOGIN PLAIN$/m);
  await s.cmd('QUIT');
});

describe('gsasl (GNU SASL) in SMTP mode', { skip: !existsSync(GSASL) && 'gsasl is not installed' }, () => {
  const gsasl = (mechanism: string, password: string) =>
    run(
      GSASL,
      [
        '--smtp',
        '--connect',
        `${HOST}:${PORT}`,
        '--x509-ca-file',
        path.join(dir, 'ca.pem'),
        // Channel binding is for SCRAM-SHA-256-PLUS, which is not offered.
        '--no-cb',
        '-m',
        mechanism,
        '-a',
        'alice@example.com',
        '-p',
        password,
        '--verbose',
      ],
      { input: '' },
    );

  test('SCRAM-SHA-256: 235, and the server signature verified by the client', async () => {
    const r = await gsasl('SCRAM-SHA-256', PASSWORD);
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 0, out);
    assert.match(out, /^AUTH SCRAM-SHA-256$/m);
    assert.match(out, /^235 2\.7\.0 Authentication successful\.$/m);
    assert.match(out, /Client authentication finished \(server trusted\)/);
  });

  test('SCRAM-SHA-256 with a wrong password: 535 5.7.8', async () => {
    const r = await gsasl('SCRAM-SHA-256', 'pencil');
    const out = r.stdout + r.stderr;
    assert.notEqual(r.code, 0, out);
    assert.match(out, /^535 5\.7\.8 Authentication credentials invalid \(invalid-proof\)$/m);
  });

  test('PLAIN with the same stored verifier', async () => {
    const good = await gsasl('PLAIN', PASSWORD);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout + good.stderr, /^235 2\.7\.0/m);
    const bad = await gsasl('PLAIN', 'pencil');
    assert.match(bad.stdout + bad.stderr, /^535 5\.7\.8 Authentication credentials invalid$/m);
  });
});

test(
  'swaks AUTH LOGIN with the same stored verifier relays',
  { skip: !existsSync(SWAKS) && 'no swaks' },
  async () => {
    const r = await run(SWAKS, [
      '--server',
      HOST,
      '--port',
      String(PORT),
      '--tls',
      '--auth',
      'LOGIN',
      '--auth-user',
      'Alice',
      '--auth-password',
      PASSWORD,
      '--from',
      'alice@example.com',
      '--to',
      'bob@external.test',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^<~ {2}235 2\.7\.0/m);
  },
);

/** A SCRAM-SHA-256 client in Python: RFC 5802 over smtplib's challenge loop, then mail. */
const PYTHON_SCRAM = String.raw`
import base64, hashlib, hmac, json, os, smtplib, ssl, sys, unicodedata
host, port, user, password, gs2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def prep(p):  # SASLprep as far as this password needs: soft hyphen mapped out, NFKC
    return unicodedata.normalize('NFKC', p.replace('\u00ad', ''))
nonce = base64.b64encode(os.urandom(18)).decode()
bare = 'n=%s,r=%s' % (user.replace('=', '=3D').replace(',', '=2C'), nonce)
state = {'step': 0}
def scram(challenge):
    step = state['step']; state['step'] += 1
    if step == 0:
        return gs2 + bare
    if step == 1:
        first = challenge.decode()
        f = dict(kv.split('=', 1) for kv in first.split(','))
        assert f['r'].startswith(nonce)
        salted = hashlib.pbkdf2_hmac('sha256', prep(password).encode(), base64.b64decode(f['s']), int(f['i']))
        client_key = hmac.new(salted, b'Client Key', 'sha256').digest()
        stored = hashlib.sha256(client_key).digest()
        without = 'c=%s,r=%s' % (base64.b64encode(gs2.encode()).decode(), f['r'])
        auth = ','.join([bare, first, without]).encode()
        sig = hmac.new(stored, auth, 'sha256').digest()
        state['server'] = base64.b64encode(hmac.new(hmac.new(salted, b'Server Key', 'sha256').digest(), auth, 'sha256').digest()).decode()
        return without + ',p=' + base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
    state['verified'] = challenge.decode() == 'v=' + state['server']
    return ''
s = smtplib.SMTP(host, port, timeout=15)
s.ehlo(); s.starttls(context=ssl._create_unverified_context()); s.ehlo()
try:
    code, text = s.auth('SCRAM-SHA-256', scram, initial_response_ok=False)
except smtplib.SMTPAuthenticationError as e:
    code, text = e.smtp_code, e.smtp_error
refused = None
if code == 235:
    refused = s.sendmail(user, ['bob@external.test'], b'Subject: scram\r\n\r\nrelayed\r\n')
    last = s.noop()
s.quit()
print(json.dumps({'auth': [code, text.decode()], 'verified': state.get('verified'), 'refused': refused}))
`;

async function pythonScram(gs2: string, password = PASSWORD, user = 'alice@example.com') {
  const r = await run('python3', ['-c', PYTHON_SCRAM, HOST, String(PORT), user, password, gs2]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { auth: [number, string]; verified?: boolean; refused: unknown };
}

test('Python SCRAM client: authenticated, server verified, and the user may relay', async () => {
  const out = await pythonScram('n,,');
  assert.deepEqual(out.auth, [235, '2.7.0 Authentication successful.']);
  assert.equal(out.verified, true);
  assert.deepEqual(out.refused, {});
});

test('a client that could bind the channel ("y") is accepted; one that demands it ("p=") is refused', async () => {
  assert.deepEqual((await pythonScram('y,,')).auth, [235, '2.7.0 Authentication successful.']);
  const demanded = await pythonScram('p=tls-exporter,,');
  assert.deepEqual(demanded.auth, [
    535,
    '5.7.8 Authentication credentials invalid (channel-binding-not-supported)',
  ]);
});

test('an unknown user fails only at the proof, like a wrong password', async () => {
  const out = await pythonScram('n,,', PASSWORD, 'nobody@example.com');
  assert.deepEqual(out.auth, [535, '5.7.8 Authentication credentials invalid (invalid-proof)']);
});

test('a mechanism that is not offered is 504 5.5.4', async () => {
  const c = await RawSmtp.connect(PORT, HOST);
  await c.reply();
  await c.cmd('EHLO client.test');
  await c.cmd('STARTTLS');
  const s = await upgradeToTls(c);
  await s.cmd('EHLO client.test');
  assert.equal(await s.cmd('AUTH CRAM-MD5'), '504 5.5.4 Unrecognized authentication type');
  await s.cmd('QUIT');
});
