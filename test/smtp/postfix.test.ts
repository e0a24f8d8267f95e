// A private Postfix instance (its own config, queue and data directories in a temp dir, smtpd
// on a free loopback port) relays into Bridgehead as its relayhost. No system instance is used.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, cleanup, freePort, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { spooledMessages } from '../helpers/spool.js';
import { run, sleep, waitFor } from './util.js';

const POSTFIX = '/usr/sbin/postfix';
const canRun = existsSync(POSTFIX) && process.getuid?.() === 0;

let srv: RunningServer;
let dir: string;
let conf: string;
let smtpdPort: number;
let masterPid: number | undefined;

/** Runs `postfix -c <conf> <args>`; Postfix reports problems on stderr and in its maillog. */
async function postfix(...args: string[]) {
  return run(POSTFIX, ['-c', conf, ...args], { timeoutMs: 30_000 });
}

function maillog(): string {
  try {
    return readFileSync(path.join(dir, 'maillog'), 'utf8');
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by init) counts as gone.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

before(async () => {
  if (!canRun) return;
  srv = await startServer();
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-postfix-'));
  chmodSync(dir, 0o755); // the postfix user must reach its queue below
  conf = path.join(dir, 'conf');
  const queue = path.join(dir, 'queue');
  const data = path.join(dir, 'data');
  for (const d of [conf, queue, data]) mkdirSync(d, { mode: 0o755 });
  const ids = await run('id', ['-u', 'postfix']);
  const gids = await run('id', ['-g', 'postfix']);
  assert.equal(ids.code, 0, 'the postfix user exists');
  chownSync(data, Number(ids.stdout.trim()), Number(gids.stdout.trim()));
  smtpdPort = await freePort();
  writeFileSync(
    path.join(conf, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${queue}`,
      `data_directory = ${data}`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'myhostname = postfix.test.example',
      'mydomain = test.example',
      'myorigin = $myhostname',
      'mydestination =',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      `relayhost = [127.0.0.1]:${srv.port}`,
      'smtp_dns_support_level = disabled',
      // Bridgehead offers STARTTLS with a self-signed certificate: use it, unverified.
      'smtp_tls_security_level = may',
      'alias_maps =',
      'alias_database =',
      'local_recipient_maps =',
      `maillog_file = ${path.join(dir, 'maillog')}`,
      `maillog_file_prefixes = ${dir}`,
      'queue_run_delay = 1s',
      'minimal_backoff_time = 1s',
      'maximal_backoff_time = 2s',
      'biff = no',
      '',
    ].join('\n'),
  );
  // No chroot: the private queue directory has none of the files a chroot jail needs.
  writeFileSync(
    path.join(conf, 'master.cf'),
    [
      `127.0.0.1:${smtpdPort} inet n - n - - smtpd`,
      'pickup    unix  n - n 60  1 pickup',
      'cleanup   unix  n - n -   0 cleanup',
      'qmgr      unix  n - n 300 1 qmgr',
      'tlsmgr    unix  - - n 1000? 1 tlsmgr',
      'rewrite   unix  - - n -   - trivial-rewrite',
      'bounce    unix  - - n -   0 bounce',
      'defer     unix  - - n -   0 bounce',
      'trace     unix  - - n -   0 bounce',
      'verify    unix  - - n -   1 verify',
      'flush     unix  n - n 1000? 0 flush',
      'proxymap  unix  - - n -   - proxymap',
      'smtp      unix  - - n -   - smtp',
      'relay     unix  - - n -   - smtp',
      'showq     unix  n - n -   - showq',
      'error     unix  - - n -   - error',
      'retry     unix  - - n -   - error',
      'discard   unix  - - n -   - discard',
      'anvil     unix  - - n -   1 anvil',
      'scache    unix  - - n -   1 scache',
      'postlog   unix-dgram n - n - 1 postlogd',
      '',
    ].join('\n'),
  );
  const check = await postfix('check');
  assert.equal(check.code, 0, `postfix check:\n${check.stderr}\n${maillog()}`);
  const start = await postfix('start');
  assert.equal(start.code, 0, `postfix start:\n${start.stderr}\n${maillog()}`);
  masterPid = await waitFor('the Postfix master pid file', () => {
    try {
      const pid = Number(readFileSync(path.join(queue, 'pid', 'master.pid'), 'utf8').trim());
      return pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  });
  await waitFor('Postfix smtpd to answer', async () => {
    try {
      const c = await RawSmtp.connect(smtpdPort);
      const banner = await c.reply(2000);
      c.close();
      return banner.startsWith('220 ') ? banner : undefined;
    } catch {
      return undefined;
    }
  });
});

after(async () => {
  if (!canRun) return;
  if (conf) {
    await postfix('stop').catch(() => undefined);
    if (masterPid !== undefined) {
      const pid = masterPid;
      await waitFor('the Postfix master to exit', () => (alive(pid) ? undefined : true), 10_000).catch(() => {
        // Ours, by its pid: a master that did not stop is not left running.
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      });
    }
    cleanup(dir);
  }
  await srv?.stop();
  if (srv) cleanup(srv.dir);
});

test(
  'mail relayed by a private Postfix instance lands in the spool with its Received header',
  { skip: !canRun && 'needs root and /usr/sbin/postfix' },
  async () => {
    const c = await RawSmtp.connect(smtpdPort);
    assert.match(await c.reply(), /^220 postfix\.test\.example ESMTP/);
    assert.match(await c.cmd('EHLO client.test'), /^250-postfix\.test\.example/);
    assert.match(await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'), /^250 2\.1\.0 /);
    assert.match(await c.cmd('RCPT TO:<alice@example.com>'), /^250 2\.1\.5 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    const body =
      'Subject: through postfix\r\nMessage-ID: <pf-1@fourthcoffee.test>\r\n\r\nline one\r\n..dot line\r\n';
    const queued = /^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$/.exec(await c.cmd(`${body}.`));
    assert.ok(queued, 'Postfix queued the message');
    const postfixId = queued[1]!;
    assert.match(await c.cmd('QUIT'), /^221 /);

    const msg = await waitFor(
      'the message to arrive in the Bridgehead spool',
      async () =>
        (await spooledMessages(srv.dataDir)).find((m) => m.envelope.messageId === '<pf-1@fourthcoffee.test>'),
      20_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${maillog()}`);
    });
    const text = msg.message.toString();
    const received = text.match(/^Received: [^\r\n]*(?:\r\n\t[^\r\n]*)*/gm) ?? [];
    assert.equal(received.length, 2, text);
    // Ours first: Postfix's smtp client came over STARTTLS.
    assert.match(
      received[0]!,
      /^Received: from postfix\.test\.example \(\[127\.0\.0\.1\]\) by mail1\.test\.example with ESMTPS\r\n\tid /,
    );
    // Then Postfix's own, naming the queue id it gave us.
    assert.match(
      received[1]!,
      new RegExp(
        `by postfix\\.test\\.example \\(Postfix\\) with ESMTP id ${postfixId}\\r\\n\\tfor <alice@example\\.com>;`,
      ),
    );
    assert.match(text, /\r\n\r\nline one\r\n\.dot line\r\n$/);
    assert.equal(msg.envelope.sender, 'kim@fourthcoffee.test');
    assert.equal(msg.envelope.client.helo, 'postfix.test.example');
    assert.equal(msg.envelope.client.tls, true);
    assert.deepEqual(msg.envelope.recipients, [
      { address: 'alice@example.com', orcpt: 'rfc822;alice@example.com' },
    ]);
    assert.equal(typeof msg.envelope.declaredSize, 'number');
    // Postfix logged the delivery with our reply and queue id.
    const line = await waitFor('the delivery line in the Postfix log', async () => {
      await sleep(50);
      return maillog()
        .split('\n')
        .find((l) => l.includes(`${postfixId}: to=<alice@example.com>`) && l.includes('status=sent'));
    });
    assert.ok(
      line.includes(`(250 2.6.0 <${msg.envelope.id}@mail1.test.example> Queued mail for delivery)`),
      line,
    );
    assert.match(line, new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${srv.port}`));
  },
);
