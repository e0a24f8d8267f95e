// Two mailboxes never share a Maildir (issue 12, Security): the folder of a mailbox is an
// injective, readable escaping of its primary address (=XX for each UTF-8 byte outside
// [a-z0-9@._+-], "=" itself included), so josé@ and josè@, or a=b@ and a_b@, get folders of
// their own; a configuration where two mailboxes would still share one is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startServer, cleanup, baseOrganisation } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { transaction } from '../pipeline/mail.js';
import { waitFor } from '../pipeline/maildir.js';
import { bh } from '../ops/ops.js';

const HOST = '127.0.71.3';

const USERS = [
  { name: 'José', addresses: ['josé@example.com'], mailbox: { server: 'MAIL1' } },
  { name: 'Josè', addresses: ['josè@example.com'], mailbox: { server: 'MAIL1' } },
  { name: 'A equals B', addresses: ['a=b@example.com'], mailbox: { server: 'MAIL1' } },
  { name: 'A under B', addresses: ['a_b@example.com'], mailbox: { server: 'MAIL1' } },
];

test('mail to josé@, josè@, a=b@ and a_b@ lands in four Maildirs', async () => {
  // An older version's Maildir where josé@ and josè@ both went.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-names-'));
  mkdirSync(path.join(dir, 'data', 'mailboxes', 'Mailbox_Store', 'jos_@example.com', 'new'), {
    recursive: true,
  });
  const server = await startServer({
    dir,
    host: HOST,
    port: 47120,
    engine: true,
    mutate: (org) => org.directory.users.push(...USERS),
  });
  try {
    assert.match(
      server.output(),
      /warning: mailboxes\/Mailbox_Store\/jos_@example\.com is the old folder of "José" \(josé@example\.com, now mailboxes\/Mailbox_Store\/jos=C3=A9@example\.com\) and "Josè" \(josè@example\.com, now mailboxes\/Mailbox_Store\/jos=C3=A8@example\.com\): move its mail/,
    );
    const c = await RawSmtp.connect(47120, HOST);
    await c.reply();
    await c.cmd('EHLO client.test');
    for (const u of USERS) {
      await transaction(c, { from: 'kim@fourthcoffee.test', to: [u.addresses[0]!], mailParams: 'SMTPUTF8' });
    }
    await c.cmd('QUIT');
    c.close();
    const store = path.join(server.dataDir, 'mailboxes', 'Mailbox_Store');
    const expected = [
      'a=3Db@example.com',
      'a_b@example.com',
      'jos=C3=A8@example.com',
      'jos=C3=A9@example.com',
    ];
    const inbox = (folder: string) => {
      try {
        return readdirSync(path.join(store, folder, 'new'));
      } catch {
        return [];
      }
    };
    await waitFor('one message in each of the four Maildirs', () =>
      expected.every((f) => inbox(f).length === 1),
    );
    assert.deepEqual(
      readdirSync(store)
        .filter((f) => expected.includes(f))
        .sort(),
      expected,
    );
    for (const f of expected) assert.equal(inbox(f).length, 1, f);
  } finally {
    await server.stop();
    cleanup(server.dir);
  }
});

test('config check refuses two mailboxes that would share a Maildir, naming both', async () => {
  const org = baseOrganisation(47121, HOST);
  org.directory.users.push(
    { name: 'Kim Akers', addresses: ['kim@example.com'], mailbox: { server: 'MAIL1' } },
    { name: 'Kim Abercrombie', addresses: ['SMTP:Kim@Example.com'], mailbox: { server: 'MAIL1' } },
  );
  org.routingGroups[0].servers[0].mailboxStores = [{ name: 'Mailbox Store' }, { name: 'Mailbox_Store' }];
  const file = path.join(
    await import('node:os').then((os) => os.tmpdir()),
    `bh-maildir-clash-${process.pid}.yaml`,
  );
  writeFileSync(file, YAML.stringify(org));
  try {
    const r = await bh(['config', 'check', file]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stderr,
      /directory\.users\[3\]\.addresses\[0\]: "Kim Abercrombie" \(kim@example\.com\) and "Kim Akers" \(directory\.users\[2\]\) would share the Maildir mailboxes\/Mailbox_Store\/kim@example\.com on MAIL1/,
    );
    assert.match(
      r.stderr,
      /routingGroups\[0\]\.servers\[0\]\.mailboxStores\[1\]\.name: mailbox stores "Mailbox_Store" and "Mailbox Store" would share the folder mailboxes\/Mailbox_Store/,
    );
  } finally {
    cleanup(file);
  }
});
