// Mail and its metadata are private to the server's user (issue 12, Security): the data
// directory and every directory under it 0700, every file 0600 (queue.db, tracking.db and
// their -wal/-shm, protocol logs, spool files, Maildirs and the delivered message), whatever
// the umask the server was started with; a data directory left world-readable by an older
// version is tightened at start. A mailbox store shared with another user (Dovecot running as
// vmail, say) is the configured exception: mailboxStores[].maildir.directoryMode / fileMode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, cleanup } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { transaction } from '../pipeline/mail.js';
import { mailboxDir, waitForMessages } from '../pipeline/maildir.js';
import { bh } from '../ops/ops.js';

const HOST = '127.0.71.2';

async function send(port: number, to: string): Promise<string> {
  const c = await RawSmtp.connect(port, HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const id = await transaction(c, { from: 'kim@fourthcoffee.test', to: [to] });
    await c.cmd('QUIT');
    return id;
  } finally {
    c.close();
  }
}

const mode = (file: string) => (statSync(file).mode & 0o777).toString(8).padStart(4, '0');

/** Every file and directory under `dir` (bounded: a test data directory is small). */
function walk(dir: string, out: string[] = [], limit = 5000): string[] {
  for (const name of readdirSync(dir)) {
    if (out.length >= limit) throw new Error(`more than ${limit} entries under ${dir}`);
    const file = path.join(dir, name);
    out.push(file);
    if (statSync(file).isDirectory()) walk(file, out, limit);
  }
  return out;
}

test('data directory, databases, logs, spool and Maildir are 0700/0600; an old world-readable data directory is tightened', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-modes-'));
  // What an older version left: a world-readable data directory and log file.
  const dataDir = path.join(dir, 'data');
  mkdirSync(path.join(dataDir, 'logs'), { recursive: true });
  chmodSync(dataDir, 0o755);
  chmodSync(path.join(dataDir, 'logs'), 0o755);
  writeFileSync(path.join(dataDir, 'logs', 'old.log'), 'old\n', { mode: 0o644 });
  chmodSync(path.join(dataDir, 'logs', 'old.log'), 0o644);
  const server = await startServer({ dir, host: HOST, port: 47110, engine: true });
  try {
    assert.match(
      server.output(),
      /made private: 3 file\(s\) and directories under .*data were readable by others/,
    );
    await send(47110, 'alice@example.com');
    const [delivered] = await waitForMessages(server.dataDir, 'alice@example.com', '');
    const box = mailboxDir(server.dataDir, 'alice@example.com');

    assert.equal(mode(server.dataDir), '0700');
    for (const db of ['queue/queue.db', 'tracking/tracking.db']) {
      for (const suffix of ['', '-wal', '-shm'])
        assert.equal(mode(path.join(server.dataDir, db + suffix)), '0600', db + suffix);
    }
    assert.equal(mode(path.join(server.dataDir, 'logs', 'old.log')), '0600');
    assert.equal(mode(delivered!.file), '0600');
    for (const d of [
      box,
      path.dirname(box),
      path.join(box, 'new'),
      path.join(box, 'tmp'),
      path.join(box, 'cur'),
    ])
      assert.equal(mode(d), '0700', d);
    const logs = walk(path.join(server.dataDir, 'logs', 'protocol'));
    assert.ok(
      logs.some((f) => f.endsWith('.log')),
      'a protocol log was written',
    );
    const spool = walk(path.join(server.dataDir, 'spool')).concat(
      walk(path.join(server.dataDir, 'spool-free')),
    );
    assert.ok(
      spool.some((f) => statSync(f).isFile()),
      'the spool file is there (in spool/, or recycled in spool-free/ after delivery)',
    );
    // Nothing anywhere in the data directory is readable or searchable by others.
    for (const f of walk(server.dataDir)) {
      const m = statSync(f).mode & 0o777;
      assert.equal(m & 0o077, 0, `${f} is ${mode(f)}`);
      assert.equal(m, statSync(f).isDirectory() ? 0o700 : 0o600, `${f} is ${mode(f)}`);
    }
  } finally {
    await server.stop();
    cleanup(dir);
  }
});

test('a mailbox store shared with another user: its Maildirs take the configured modes, the rest stays private', async () => {
  const server = await startServer({
    host: HOST,
    port: 47111,
    engine: true,
    mutate: (org) => {
      org.routingGroups[0].servers[0].mailboxStores = [
        { name: 'Mailbox Store', maildir: { directoryMode: '0750', fileMode: '0640' } },
      ];
    },
  });
  try {
    await send(47111, 'alice@example.com');
    const [delivered] = await waitForMessages(server.dataDir, 'alice@example.com', '');
    const box = mailboxDir(server.dataDir, 'alice@example.com');
    assert.equal(mode(delivered!.file), '0640');
    for (const d of [box, path.dirname(box), path.join(box, 'new')]) assert.equal(mode(d), '0750', d);
    // The group may pass through the data directory to the store, and read nothing else.
    assert.equal(mode(server.dataDir), '0710');
    assert.equal(mode(path.join(server.dataDir, 'mailboxes')), '0710');
    assert.equal(mode(path.join(server.dataDir, 'queue', 'queue.db')), '0600');
    assert.equal(mode(path.join(server.dataDir, 'queue')), '0700');

    // A setgid store folder (new Maildirs inherit the reader's group) stays setgid.
    chmodSync(path.dirname(box), 0o2750);
    await send(47111, 'postmaster@example.com');
    const [second] = await waitForMessages(server.dataDir, 'postmaster@example.com', '');
    assert.equal(mode(second!.file), '0640');
    const postmaster = mailboxDir(server.dataDir, 'postmaster@example.com');
    assert.equal(statSync(path.dirname(box)).mode & 0o7777, 0o2750, 'the store folder keeps its setgid bit');
    assert.equal(
      statSync(postmaster).mode & 0o7777,
      0o2750,
      'a new Maildir: inherited setgid, configured mode',
    );

    // Modes that would let others write mail, or that lock the server out, are refused.
    for (const [maildir, message] of [
      [{ fileMode: '0666' }, /fileMode: must not give write access to group or others/],
      [{ directoryMode: '0300' }, /directoryMode: must give the server's user rwx \(0700\)/],
      [{ fileMode: 'rw-r-----' }, /a mode is three octal digits/],
    ] as const) {
      const file = path.join(server.dir, 'bad.yaml');
      writeFileSync(
        file,
        JSON.stringify({
          routingGroups: [
            {
              name: 'G',
              servers: [
                {
                  name: 'S',
                  fqdn: 's.test.example',
                  mailboxStores: [{ name: 'Mailbox Store', maildir }],
                  virtualServers: [{ name: 'V', ip: HOST, port: 47112 }],
                },
              ],
            },
          ],
        }),
      );
      const r = await bh(['config', 'check', file]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, message);
    }
  } finally {
    await server.stop();
    cleanup(server.dir);
  }
});
