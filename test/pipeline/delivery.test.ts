// SMTP receive → spool → categorizer → Maildir, end to end in a real server process
// (issue 3, items 1, 2 and 5).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { startServer, cleanup, freePort, type RunningServer } from '../helpers/server.js';
import { copiesOf, mailboxDir, waitFor, waitForMessages } from './maildir.js';
import { queueRows, queuedMessageCount, sendMail, trackingEvents } from './mail.js';

let srv: RunningServer;
/** Smart host for everything routed out: a loopback port nobody listens on. */
let smartHost: string;
before(async () => {
  smartHost = `[127.0.0.1]:${await freePort()}`;
  srv = await startServer({
    engine: true,
    mutate: (org) => {
      org.routingGroups[0].servers[0].virtualServers[0].delivery = { smartHost };
      org.recipientPolicies.push({
        name: 'Shared',
        addresses: [{ address: '@shared.example', authoritative: false }],
      });
      const d = org.directory;
      d.users.push(
        { name: 'Bob', addresses: ['bob@example.com'], mailbox: { server: 'MAIL1' } },
        {
          name: 'Carol',
          addresses: ['carol@example.com', 'c.jones@example.com'],
          mailbox: { server: 'MAIL1' },
        },
      );
      d.groups = [
        {
          name: 'All Staff',
          addresses: ['allstaff@example.com'],
          members: ['Alice', 'Inner Circle', 'c.jones@example.com'],
        },
        { name: 'Inner Circle', addresses: ['inner@example.com'], members: ['Alice', 'Bob'] },
      ];
      d.contacts = [
        { name: 'Fabrikam Bob', addresses: ['fbob@example.com'], targetAddress: 'smtp:bob@fabrikam.test' },
      ];
    },
  });
});
after(async () => {
  await srv?.stop();
  if (srv) cleanup(srv.dir);
});

/** Waits until the queue database has let go of a message (every recipient final). */
const waitDone = (id: string) =>
  waitFor(`message ${id} to leave the queues`, () => queuedMessageCount(srv.dataDir, id) === 0);

test('a message to a local user lands in new/ with Return-Path, Delivered-To and Received', async () => {
  const id = await sendMail(srv.port, {
    from: 'kim@fourthcoffee.test',
    to: ['alice@example.com'],
    subject: 'Lunch',
    body: 'See you at noon.\r\n.leading dot line\r\n',
  });
  const [msg] = await waitForMessages(srv.dataDir, 'alice@example.com', `${id}.`);
  assert.ok(msg);
  assert.match(msg.name, new RegExp(`^${id}\\.\\d+\\.[^,/]+,S=${msg.content.length}$`));
  const text = msg.content.toString('utf8');
  const lines = text.split('\r\n');
  assert.equal(lines[0], 'Return-Path: <kim@fourthcoffee.test>');
  assert.equal(lines[1], 'Delivered-To: alice@example.com');
  assert.match(
    lines[2]!,
    /^Received: from client\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example with ESMTP$/,
  );
  assert.match(lines[3]!, new RegExp(`^\\tid ${id}; `));
  assert.match(text, /\r\nSubject: Lunch\r\n/);
  // Dot-stuffing undone, body intact.
  assert.match(text, /\r\n\r\nSee you at noon\.\r\n\.leading dot line\r\n$/);
  const dir = mailboxDir(srv.dataDir, 'alice@example.com');
  assert.equal(statSync(msg.file).size, msg.content.length);
  assert.deepEqual(readdirSync(path.join(dir, 'tmp')), [], 'tmp/ is left empty');
  assert.ok(statSync(path.join(dir, 'cur')).isDirectory());
  await waitDone(id);
});

test('a nested group reaches each member exactly once', async () => {
  // All Staff = Alice + Inner Circle (Alice, Bob) + Carol by a secondary address.
  const id = await sendMail(srv.port, { from: 'kim@fourthcoffee.test', to: ['allstaff@example.com'] });
  await waitForMessages(srv.dataDir, 'alice@example.com', `${id}.`);
  await waitForMessages(srv.dataDir, 'bob@example.com', `${id}.`);
  const [carol] = await waitForMessages(srv.dataDir, 'carol@example.com', `${id}.`);
  await waitDone(id);
  assert.equal(copiesOf(srv.dataDir, 'alice@example.com', id), 1);
  assert.equal(copiesOf(srv.dataDir, 'bob@example.com', id), 1);
  assert.equal(copiesOf(srv.dataDir, 'carol@example.com', id), 1);
  assert.match(
    carol!.content.toString(),
    /^Return-Path: <kim@fourthcoffee\.test>\r\nDelivered-To: carol@example\.com\r\n/,
  );

  // Message tracking tells the story: RECEIVE, SUBMIT, EXPAND (both groups), DELIVER ×3.
  const events = await waitFor('tracking events of the group message', () => {
    const e = trackingEvents(srv.dataDir, id);
    return e.filter((x) => x.event === 'DELIVER').length >= 3 ? e : undefined;
  });
  const names = events.map((e) => e.event);
  for (const wanted of ['RECEIVE', 'SUBMIT', 'EXPAND', 'DELIVER'])
    assert.ok(names.includes(wanted), names.join());
  assert.ok(names.indexOf('RECEIVE') < names.indexOf('EXPAND'));
  assert.ok(names.indexOf('EXPAND') < names.indexOf('DELIVER'));
  const expanded = events.filter((e) => e.event === 'EXPAND').map((e) => JSON.parse(e.recipients)[0]);
  assert.deepEqual(expanded.sort(), ['allstaff@example.com', 'inner@example.com']);
  const delivered = events.filter((e) => e.event === 'DELIVER').map((e) => JSON.parse(e.recipients)[0]);
  assert.deepEqual(delivered.sort(), ['alice@example.com', 'bob@example.com', 'carol@example.com']);
});

test('a mailbox named twice in the envelope, or also through a group, gets one copy', async () => {
  const id = await sendMail(srv.port, {
    from: 'kim@fourthcoffee.test',
    // Bob directly, through Inner Circle and in another case; Carol by both her addresses.
    to: [
      'bob@example.com',
      'inner@example.com',
      'BOB@example.com',
      'carol@example.com',
      'c.jones@example.com',
    ],
  });
  await waitForMessages(srv.dataDir, 'alice@example.com', `${id}.`);
  await waitForMessages(srv.dataDir, 'bob@example.com', `${id}.`);
  await waitForMessages(srv.dataDir, 'carol@example.com', `${id}.`);
  await waitDone(id);
  assert.equal(copiesOf(srv.dataDir, 'alice@example.com', id), 1);
  assert.equal(copiesOf(srv.dataDir, 'bob@example.com', id), 1);
  assert.equal(copiesOf(srv.dataDir, 'carol@example.com', id), 1);
  // A duplicate is dropped quietly: no DSN was queued for it.
  assert.equal(queuedMessageCount(srv.dataDir, `${id}N1`), 0);
});

test('a contact and an unknown user in a non-authoritative domain are routed out, not failed', async () => {
  const id = await sendMail(srv.port, {
    from: 'alice@example.com',
    to: ['fbob@example.com', 'someone@shared.example', 'bob@example.com'],
  });
  await waitForMessages(srv.dataDir, 'bob@example.com', `${id}.`);
  // They pass "Messages waiting to be routed" and wait in the next hop's queue (the smart
  // host, which does not answer), never in a local mailbox and never with an NDR.
  const rows = await waitFor('two recipients in the smart host queue', () => {
    const r = queueRows(srv.dataDir, id);
    return r && r.filter((x) => x.queue === smartHost).length === 2 ? r : undefined;
  });
  const routed = rows
    .filter((r) => r.queue === smartHost)
    .map((r) => ({ address: r.address, original: r.original, route: JSON.parse(r.route ?? '{}') }));
  assert.deepEqual(
    routed.sort((a, b) => a.address.localeCompare(b.address)),
    [
      {
        address: 'bob@fabrikam.test',
        original: 'fbob@example.com',
        route: { kind: 'remote', domain: 'fabrikam.test' },
      },
      {
        address: 'someone@shared.example',
        original: 'someone@shared.example',
        route: { kind: 'remote', domain: 'shared.example' },
      },
    ],
  );
  assert.ok(rows.filter((r) => r.queue === smartHost).every((r) => r.state !== 'done'));
  assert.equal(rows.find((r) => r.original === 'bob@example.com')?.outcome, 'delivered');
  assert.equal(queuedMessageCount(srv.dataDir, id), 1, 'still queued');
  assert.equal(queuedMessageCount(srv.dataDir, `${id}N1`), 0, 'no DSN');
  const events = trackingEvents(srv.dataDir, id).map((e) => e.event);
  assert.ok(events.includes('RESOLVE'), events.join());
  assert.ok(!events.includes('FAIL'), events.join());
});
