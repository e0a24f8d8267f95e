// Greylisting on a virtual server (filters.greylisting, delay 2 s): the first attempt of a
// (client network, sender, recipient) triplet is deferred with 451 4.7.1, so is a retry
// before the delay, and a retry after it passes. Authenticated sessions and whitelisted
// networks are never greylisted.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../helpers/server.js';
import { hashPassword } from '../../src/directory/passwords.js';
import { upgradeToTls } from '../smtp/util.js';
import {
  filterRejections,
  mailRcpt,
  sessionFrom,
  sleep,
  startServers,
  stopServers,
  waitForFilterEvent,
} from './support.js';

const PASSWORD = 'grey; list';
const DELAY_MS = 2000;
const GREYLISTED = /^451 4\.7\.1 Greylisted, please try again in [12] seconds$/;

describe('greylisting', () => {
  let srv: RunningServer;
  let firstAttempt = 0;

  before(async () => {
    const passwordHash = await hashPassword(PASSWORD);
    [srv] = await startServers([
      (org) => {
        org.directory.users[0].passwordHash = passwordHash;
        org.routingGroups[0].servers[0].virtualServers[0].filters = { greylisting: true };
        org.filters = { greylisting: { delay: '2s', whitelist: ['127.0.0.9'] } };
      },
    ]);
  });

  after(async () => {
    await stopServers([srv]);
  });

  test('first attempt 451 4.7.1; a retry before the delay is still 451', async () => {
    firstAttempt = Date.now();
    const first = await mailRcpt(srv.port, '127.0.0.1', 'kim@fourthcoffee.test', 'alice@example.com');
    assert.equal(first.mail, '250 2.1.0 kim@fourthcoffee.test....Sender OK');
    assert.equal(first.rcpt, '451 4.7.1 Greylisted, please try again in 2 seconds');
    const retry = await mailRcpt(srv.port, '127.0.0.1', 'kim@fourthcoffee.test', 'alice@example.com');
    assert.ok(Date.now() - firstAttempt < DELAY_MS, 'the early retry came too late to mean anything');
    assert.match(retry.rcpt, GREYLISTED);
    const e = await waitForFilterEvent(srv.dataDir, (x) => x.message_info?.startsWith('greylist:') === true);
    assert.equal(e.recipient_status, '["4.7.1"]');
    assert.equal(e.sender, 'kim@fourthcoffee.test');
    assert.equal(e.recipients, '["alice@example.com"]');
  });

  test('an authenticated session (AUTH PLAIN over STARTTLS) is never greylisted', async () => {
    const c = await sessionFrom(srv.port, '127.0.0.5');
    try {
      assert.equal(await c.cmd('STARTTLS'), '220 2.0.0 SMTP server ready');
      const s = await upgradeToTls(c);
      try {
        assert.match(await s.cmd('EHLO client.test'), /^250-/);
        const token = Buffer.from(`\0alice@example.com\0${PASSWORD}`).toString('base64');
        assert.equal(await s.cmd(`AUTH PLAIN ${token}`), '235 2.7.0 Authentication successful.');
        assert.equal(
          await s.cmd('MAIL FROM:<alice@example.com>'),
          '250 2.1.0 alice@example.com....Sender OK',
        );
        assert.equal(await s.cmd('RCPT TO:<postmaster@example.com>'), '250 2.1.5 postmaster@example.com');
        assert.equal(await s.cmd('RCPT TO:<bob@external.test>'), '250 2.1.5 bob@external.test');
      } finally {
        s.close();
      }
    } finally {
      c.close();
    }
  });

  test('a whitelisted network is never greylisted', async () => {
    const r = await mailRcpt(srv.port, '127.0.0.9', 'new@fourthcoffee.test', 'alice@example.com');
    assert.equal(r.rcpt, '250 2.1.5 alice@example.com');
  });

  test('after the delay the retry passes (from another address of the same /24) and is remembered', async () => {
    const wait = firstAttempt + DELAY_MS + 150 - Date.now();
    if (wait > 0) await sleep(wait);
    const r = await mailRcpt(srv.port, '127.0.0.7', 'kim@fourthcoffee.test', 'alice@example.com');
    assert.equal(r.rcpt, '250 2.1.5 alice@example.com');
    const again = await mailRcpt(srv.port, '127.0.0.1', 'kim@fourthcoffee.test', 'alice@example.com');
    assert.equal(again.rcpt, '250 2.1.5 alice@example.com');
  });

  test('another triplet is greylisted afresh, and every deferral is counted', async () => {
    const before = (await filterRejections(srv)).greylist ?? 0;
    assert.equal(before, 2);
    const other = await mailRcpt(srv.port, '127.0.0.1', 'kim@fourthcoffee.test', 'postmaster@example.com');
    assert.equal(other.rcpt, '451 4.7.1 Greylisted, please try again in 2 seconds');
    assert.equal((await filterRejections(srv)).greylist, 3);
  });
});
