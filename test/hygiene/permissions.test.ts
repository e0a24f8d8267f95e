// Submit and relay permissions per user and group [003:5336-5457]: deny beats allow,
// relaying needs submit, and without an explicit permission the virtual server's
// "allow all computers which successfully authenticate to relay" decides.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { hashPassword } from '../../src/directory/passwords.js';

let srv: RunningServer;
const PASSWORD = 'correct horse';

before(async () => {
  const hash = await hashPassword(PASSWORD);
  srv = await startServer({
    mutate: (org) => {
      const vs = org.routingGroups[0].servers[0].virtualServers[0];
      vs.authentication = { basicWithoutTls: true };
      const user = (name: string, permissions?: Record<string, string>) => ({
        name,
        addresses: [`${name.toLowerCase()}@example.com`],
        mailbox: { server: 'MAIL1' },
        passwordHash: hash,
        ...(permissions ? { permissions } : {}),
      });
      org.directory.users.push(
        user('Plain'),
        user('NoRelay', { relay: 'deny' }),
        user('NoSubmit', { submit: 'deny', relay: 'allow' }),
        user('Member'),
        user('Allowed', { relay: 'allow' }),
      );
      // A group's deny reaches its members, and beats the member's own allow.
      org.directory.groups = [
        {
          name: 'Contractors',
          addresses: ['contractors@example.com'],
          members: ['Member', 'Allowed'],
          permissions: { relay: 'deny' },
        },
      ];
    },
  });
});
after(async () => {
  await srv.stop();
  cleanup(srv.dir);
});

async function session(user: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect(srv.port);
  await c.reply();
  await c.cmd('EHLO client.test');
  const token = Buffer.from(`\0${user.toLowerCase()}@example.com\0${PASSWORD}`).toString('base64');
  assert.equal(await c.cmd(`AUTH PLAIN ${token}`), '235 2.7.0 Authentication successful.');
  return c;
}

test('an authenticated user without explicit permissions relays (virtual server default)', async () => {
  const c = await session('Plain');
  assert.match(await c.cmd('MAIL FROM:<plain@example.com>'), /^250 /);
  assert.equal(await c.cmd('RCPT TO:<someone@external.test>'), '250 2.1.5 someone@external.test');
  c.close();
});

test('relay denied to a user: external refused, local accepted', async () => {
  const c = await session('NoRelay');
  assert.match(await c.cmd('MAIL FROM:<norelay@example.com>'), /^250 /);
  assert.equal(
    await c.cmd('RCPT TO:<someone@external.test>'),
    '550 5.7.1 Unable to relay for someone@external.test',
  );
  assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
  c.close();
});

test('submit denied: MAIL refused, even with relay allowed (relay needs submit)', async () => {
  const c = await session('NoSubmit');
  assert.equal(
    await c.cmd('MAIL FROM:<nosubmit@example.com>'),
    '550 5.7.1 Client does not have permission to submit mail to this server',
  );
  c.close();
});

test("a group's relay deny applies to its members and beats a member's allow", async () => {
  for (const user of ['Member', 'Allowed']) {
    const c = await session(user);
    assert.match(await c.cmd(`MAIL FROM:<${user.toLowerCase()}@example.com>`), /^250 /);
    assert.equal(
      await c.cmd('RCPT TO:<x@external.test>'),
      '550 5.7.1 Unable to relay for x@external.test',
      user,
    );
    c.close();
  }
});
