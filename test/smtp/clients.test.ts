// Real clients against a real server: swaks (STARTTLS, AUTH PLAIN/LOGIN, relay, PIPELINING)
// and Python's smtplib (plain, SMTPUTF8 + 8BITMIME, STARTTLS + AUTH, ATRN).
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { hashPasswordWithCli, queueId, run, spooledById } from './util.js';

const SWAKS = '/usr/bin/swaks';
const PASSWORD = 'c0rrect horse; battery staple';

let srv: RunningServer;
before(async () => {
  const passwordHash = await hashPasswordWithCli(PASSWORD);
  assert.match(passwordHash, /^SCRAM-SHA-256\$4096:/);
  srv = await startServer({
    mutate: (org) => {
      org.directory.users[0].passwordHash = passwordHash;
    },
  });
});
after(async () => {
  await srv.stop();
  cleanup(srv.dir);
});

/** Runs swaks against the server; returns exit code and the transcript. */
async function swaks(args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await run(
    SWAKS,
    ['--server', '127.0.0.1', '--port', String(srv.port), '--ehlo', 'swaks.test', ...args],
    {
      timeoutMs: 20_000,
    },
  );
  return { code: r.code, out: r.stdout + r.stderr };
}

/** The server's lines in a swaks transcript ("<-  " plain, "<~  " inside TLS, "<** " errors). */
function serverLines(out: string, prefix: '<-' | '<~' | '<~*' | '<**'): string[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith(`${prefix} `))
    .map((l) => l.slice(prefix.length).trim());
}

/** The queue id from the transcript's final 250 2.6.0 line. */
function transcriptQueueId(out: string): string | undefined {
  for (const l of out.split('\n')) {
    const id = queueId(l.replace(/^<[-~]\s+/, '').trim());
    if (id) return id;
  }
  return undefined;
}

const EHLO_PLAIN = [
  'mail1.test.example Hello [127.0.0.1]',
  'TURN',
  'ATRN',
  'SIZE 4194304',
  'ETRN',
  'PIPELINING',
  'DSN',
  'ENHANCEDSTATUSCODES',
  '8BITMIME',
  'BINARYMIME',
  'CHUNKING',
  'STARTTLS',
  'SMTPUTF8',
  'OK',
];

describe('swaks', { skip: !existsSync(SWAKS) && 'swaks is not installed' }, () => {
  test('EHLO lists the extensions; inside TLS AUTH LOGIN PLAIN replaces STARTTLS', async () => {
    const plain = await swaks(['--quit-after', 'EHLO']);
    assert.equal(plain.code, 0, plain.out);
    const ehlo = serverLines(plain.out, '<-').filter((l) => l.startsWith('250'));
    assert.deepEqual(
      ehlo.map((l) => l.slice(4)),
      EHLO_PLAIN,
    );
    assert.deepEqual(
      ehlo.map((l) => l.slice(0, 4)),
      [...EHLO_PLAIN.slice(1).map(() => '250-'), '250 '],
    );

    const secure = await swaks(['--tls', '--quit-after', 'HELO']);
    assert.equal(secure.code, 0, secure.out);
    assert.match(secure.out, /^<- {2}220 2\.0\.0 SMTP server ready$/m);
    assert.match(secure.out, /^=== TLS started with cipher TLSv1\.[23]/m);
    const inside = serverLines(secure.out, '<~')
      .filter((l) => l.startsWith('250'))
      .map((l) => l.slice(4));
    assert.deepEqual(inside, [
      ...EHLO_PLAIN.slice(0, EHLO_PLAIN.indexOf('STARTTLS')),
      'AUTH LOGIN PLAIN',
      'SMTPUTF8',
      'OK',
    ]);
  });

  for (const mech of ['PLAIN', 'LOGIN'] as const) {
    test(`AUTH ${mech} over STARTTLS, then relay to an external domain`, async () => {
      const r = await swaks([
        '--tls',
        '--auth',
        mech,
        '--auth-user',
        'alice@example.com',
        '--auth-password',
        PASSWORD,
        '--from',
        'alice@example.com',
        '--to',
        'bob@external.test',
        '--header',
        `Subject: relayed with ${mech}`,
      ]);
      assert.equal(r.code, 0, r.out);
      if (mech === 'LOGIN') {
        assert.deepEqual(
          serverLines(r.out, '<~').filter((l) => l.startsWith('334')),
          ['334 VXNlcm5hbWU6', '334 UGFzc3dvcmQ6'],
        );
      }
      assert.match(r.out, /^<~ {2}235 2\.7\.0 Authentication successful\.$/m);
      assert.match(r.out, /^<~ {2}250 2\.1\.5 bob@external\.test$/m);
      const id = transcriptQueueId(r.out);
      assert.ok(id, r.out);
      const msg = await spooledById(srv.dataDir, id);
      assert.ok(msg);
      assert.deepEqual(msg.envelope.recipients, [{ address: 'bob@external.test' }]);
      assert.equal(msg.envelope.client.tls, true);
      assert.equal(msg.envelope.client.authenticatedAs, 'alice@example.com');
      assert.equal(msg.envelope.subject, `relayed with ${mech}`);
      assert.match(
        msg.message.toString(),
        /^Received: from swaks\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example with ESMTPSA\r\n/,
      );
    });
  }

  test('a wrong password gets 535 5.7.8 and no relay', async () => {
    const r = await swaks([
      '--tls',
      '--auth',
      'LOGIN',
      '--auth-user',
      'alice@example.com',
      '--auth-password',
      'not the password',
      '--from',
      'alice@example.com',
      '--to',
      'bob@external.test',
    ]);
    assert.equal(r.code, 28, r.out);
    assert.match(r.out, /^<~\* 535 5\.7\.8 Authentication credentials invalid$/m);
    assert.doesNotMatch(r.out, /MAIL FROM/);
  });

  test('without TLS AUTH is not offered, so swaks cannot authenticate', async () => {
    const r = await swaks([
      '--auth',
      'PLAIN',
      '--auth-user',
      'alice@example.com',
      '--auth-password',
      PASSWORD,
      '--from',
      'alice@example.com',
      '--to',
      'bob@external.test',
    ]);
    assert.equal(r.code, 28, r.out);
    assert.match(r.out, /Host did not advertise authentication/);
    assert.doesNotMatch(r.out, /AUTH PLAIN/);
  });

  test('unauthenticated relay is refused: 550 5.7.1 Unable to relay', async () => {
    const r = await swaks(['--from', 'kim@fourthcoffee.test', '--to', 'bob@external.test']);
    assert.equal(r.code, 24, r.out);
    assert.deepEqual(serverLines(r.out, '<**'), ['550 5.7.1 Unable to relay for bob@external.test']);
    // STARTTLS alone is not authentication.
    const tls = await swaks(['--tls', '--from', 'kim@fourthcoffee.test', '--to', 'bob@external.test']);
    assert.equal(tls.code, 24, tls.out);
    assert.deepEqual(serverLines(tls.out, '<~*'), ['550 5.7.1 Unable to relay for bob@external.test']);
  });

  test('--pipeline: MAIL, RCPT, RCPT, DATA go in one batch and are answered in order', async () => {
    const r = await swaks([
      '--pipeline',
      '--from',
      'kim@fourthcoffee.test',
      '--to',
      'alice@example.com,bob@external.test,postmaster@example.com',
      '--header',
      'Subject: pipelined',
    ]);
    assert.equal(r.code, 0, r.out);
    const lines = r.out.split('\n').map((l) => l.trimEnd());
    const mail = lines.indexOf(' -> MAIL FROM:<kim@fourthcoffee.test>');
    assert.ok(mail >= 0, r.out);
    // The whole batch is written before the first reply is read.
    assert.deepEqual(lines.slice(mail, mail + 9), [
      ' -> MAIL FROM:<kim@fourthcoffee.test>',
      ' -> RCPT TO:<alice@example.com>',
      ' -> RCPT TO:<bob@external.test>',
      ' -> RCPT TO:<postmaster@example.com>',
      ' -> DATA',
      '<-  250 2.1.0 kim@fourthcoffee.test....Sender OK',
      '<-  250 2.1.5 alice@example.com',
      '<** 550 5.7.1 Unable to relay for bob@external.test',
      '<-  250 2.1.5 postmaster@example.com',
    ]);
    assert.equal(lines[mail + 9], '<-  354 Start mail input; end with <CRLF>.<CRLF>');
    const id = transcriptQueueId(r.out);
    assert.ok(id, r.out);
    const msg = await spooledById(srv.dataDir, id);
    assert.deepEqual(
      msg?.envelope.recipients.map((x) => x.address),
      ['alice@example.com', 'postmaster@example.com'],
    );
  });
});

/** Runs a Python script with the server's port in argv[1]; its stdout is one JSON value. */
async function python(script: string, ...args: string[]): Promise<any> {
  const r = await run('python3', ['-c', script, String(srv.port), ...args], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `python failed:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe("Python's smtplib", () => {
  test('sends a message; the reply texts are the spec ones', async () => {
    const out = await python(`
import json, smtplib, sys
from email.message import EmailMessage
from email import policy
m = EmailMessage(policy=policy.SMTP)
m['From'] = 'Kim <kim@fourthcoffee.test>'
m['To'] = 'alice@example.com'
m['Subject'] = 'from smtplib'
m['Message-ID'] = '<smtplib-1@fourthcoffee.test>'
m.set_content('Hello from Python.\\n.leading dot\\n')
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', timeout=10)
code, ehlo = s.ehlo()
features = sorted(s.esmtp_features)
mail = s.mail('kim@fourthcoffee.test')
rcpt = s.rcpt('alice@example.com')
data = s.data(m.as_bytes())  # CRLF line ends, as send_message() would send
s.quit()
print(json.dumps({'ehlo': code, 'features': features, 'mail': [mail[0], mail[1].decode()],
  'rcpt': [rcpt[0], rcpt[1].decode()], 'data': [data[0], data[1].decode()]}))
`);
    assert.equal(out.ehlo, 250);
    for (const f of ['pipelining', 'chunking', 'dsn', 'smtputf8', '8bitmime', 'starttls', 'size']) {
      assert.ok(out.features.includes(f), f);
    }
    assert.deepEqual(out.mail, [250, '2.1.0 kim@fourthcoffee.test....Sender OK']);
    assert.deepEqual(out.rcpt, [250, '2.1.5 alice@example.com']);
    assert.equal(out.data[0], 250);
    const id = queueId(`250 ${out.data[1]}`);
    assert.ok(id, out.data[1]);
    const msg = await spooledById(srv.dataDir, id);
    assert.ok(msg);
    assert.equal(msg.envelope.messageId, '<smtplib-1@fourthcoffee.test>');
    assert.equal(msg.envelope.headerFrom, 'Kim <kim@fourthcoffee.test>');
    assert.equal(msg.envelope.client.helo, 'py.test');
    // smtplib dot-stuffs; the server undoes it.
    assert.match(msg.message.toString(), /\r\n\r\nHello from Python\.\r\n\.leading dot\r\n$/);
  });

  test('SMTPUTF8 and BODY=8BITMIME: UTF-8 addresses and 8-bit body arrive intact', async () => {
    const out = await python(`
import json, smtplib, sys
from email.message import EmailMessage
from email import policy
m = EmailMessage(policy=policy.SMTPUTF8)
m['From'] = 'José <josé@fourthcoffee.test>'
m['To'] = 'alice@example.com'
m['Subject'] = 'Grüße'
m.set_content('Grüße aus Köln — ünïcödé\\n', cte='8bit')
raw = m.as_bytes(policy=policy.SMTPUTF8)
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', timeout=10)
s.ehlo()
mail = s.mail('josé@fourthcoffee.test', ['SMTPUTF8', 'BODY=8BITMIME'])
rcpt = s.rcpt('alice@example.com')
data = s.data(raw)
s.quit()
print(json.dumps({'mail': [mail[0], mail[1].decode()], 'rcpt': rcpt[0], 'data': [data[0], data[1].decode()],
  'raw': raw.decode('utf-8')}))
`);
    assert.deepEqual(out.mail, [250, '2.1.0 josé@fourthcoffee.test....Sender OK']);
    assert.equal(out.rcpt, 250);
    const id = queueId(`250 ${out.data[1]}`);
    assert.ok(id, out.data[1]);
    const msg = await spooledById(srv.dataDir, id);
    assert.ok(msg);
    assert.equal(msg.envelope.sender, 'josé@fourthcoffee.test');
    assert.equal(msg.envelope.smtputf8, true);
    assert.equal(msg.envelope.body, '8BITMIME');
    assert.equal(msg.envelope.subject, 'Grüße');
    const text = msg.message.toString('utf8');
    assert.match(
      text,
      /^Received: from py\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example with UTF8SMTP\r\n/,
    );
    // Byte for byte what smtplib sent (it sends CRLF line ends).
    const sent = (out.raw as string).replace(/\r?\n/g, '\r\n');
    assert.ok(text.endsWith(sent), JSON.stringify(text));
    assert.match(text, /Grüße aus Köln — ünïcödé\r\n$/);
  });

  test('STARTTLS, AUTH LOGIN with an initial response, relay, and ATRN once authenticated', async () => {
    const out = await python(
      `
import json, smtplib, ssl, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', timeout=10)
s.ehlo()
before_tls = s.has_extn('auth')
atrn_anonymous = s.docmd('ATRN', 'example.com')
s.starttls(context=ssl._create_unverified_context())
s.ehlo()
auth_methods = s.esmtp_features.get('auth', '')
s.user, s.password = 'Alice', sys.argv[2]
auth = s.auth('LOGIN', s.auth_login, initial_response_ok=True)
atrn = s.docmd('ATRN', 'example.com')
turn = s.docmd('TURN')
refused = s.sendmail('alice@example.com', ['bob@external.test'], b'Subject: via smtplib\\r\\n\\r\\nrelayed\\r\\n')
s.quit()
print(json.dumps({'beforeTls': before_tls, 'atrnAnonymous': [atrn_anonymous[0], atrn_anonymous[1].decode()],
  'auth': [auth[0], auth[1].decode()], 'methods': auth_methods, 'atrn': [atrn[0], atrn[1].decode()],
  'turn': [turn[0], turn[1].decode()], 'refused': refused}))
`,
      PASSWORD,
    );
    assert.equal(out.beforeTls, false);
    assert.deepEqual(out.atrnAnonymous, [530, '5.7.0 Authentication required']);
    assert.equal(out.methods.trim(), 'LOGIN PLAIN');
    assert.deepEqual(out.auth, [235, '2.7.0 Authentication successful.']);
    assert.deepEqual(out.atrn, [453, '4.3.0 You have no mail']);
    assert.deepEqual(out.turn, [453, '4.3.0 You have no mail']);
    assert.deepEqual(out.refused, {});
  });
});
