// Queue viewer operations called from code on a QueuingEngine built in-process with the
// real categorizer, Maildir store and tracking in a temporary directory (issue 3, item 7).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { validateOrganisation } from '../../src/config/load.js';
import { EmbeddedDirectory } from '../../src/directory/directory.js';
import { AcceptedDomains } from '../../src/directory/accepted-domains.js';
import { Categorizer, type Route } from '../../src/categorizer/categorizer.js';
import type { DeliveryJob, Destination } from '../../src/delivery/remote/remote-delivery.js';
import { MaildirStore } from '../../src/delivery/local/maildir.js';
import { MessageTracking } from '../../src/tracking/tracking.js';
import { QUEUE } from '../../src/queue/names.js';
import { buildQueuePipeline, type QueuePipeline } from '../../src/service/queue-pipeline.js';
import { Badmail } from '../../src/dsn/badmail.js';
import { Spool, newMessageId, type Envelope } from '../../src/queue/spool.js';
import { TransportError } from '../../src/smtp/status.js';
import { baseOrganisation, cleanup } from '../helpers/server.js';
import { copiesOf, sleep, waitFor, waitForMessages } from './maildir.js';
import { compose, parseDsn } from './mail.js';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';

let dir: string;
let dataDir: string;
let spool: Spool;
let tracking: MessageTracking;
let engine: QueuePipeline;
const relayed: { destination: Destination; id: string; recipients: string[] }[] = [];

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-queue-ops-'));
  dataDir = path.join(dir, 'data');
  mkdirSync(path.join(dataDir, 'queue'), { recursive: true });
  mkdirSync(path.join(dataDir, 'tracking'), { recursive: true });
  const raw = baseOrganisation(2525);
  raw.directory.users.push({ name: 'Bob', addresses: [BOB], mailbox: { server: 'MAIL1' } });
  raw.directory.contacts = [
    { name: 'Partner', addresses: ['partner@example.com'], targetAddress: 'smtp:pat@fabrikam.test' },
  ];
  const retry = {
    glitchInterval: 1,
    glitchCount: 1,
    first: 1,
    second: 1,
    third: 1,
    subsequent: 1,
    delayNotification: 3600,
    expiration: 86400,
  };
  const { org } = validateOrganisation(raw, dir);
  spool = new Spool(path.join(dataDir, 'spool'));
  await spool.init();
  tracking = new MessageTracking(path.join(dataDir, 'tracking', 'tracking.db'), 'mail1.test.example', {
    enabled: true,
    logSubject: true,
    retentionDays: 7,
  });
  const maildir = new MaildirStore(path.join(dataDir, 'mailboxes'));
  engine = buildQueuePipeline({
    serverName: 'MAIL1',
    fqdn: 'mail1.test.example',
    dataDir,
    spool,
    categorizer: new Categorizer({
      serverName: 'MAIL1',
      directory: new EmbeddedDirectory(org.directory),
      acceptedDomains: new AcceptedDomains(org.recipientPolicies),
      orgMaxRecipients: org.organisation.maxRecipientsPerMessage,
      orgMaxReceiveSizeKb: null,
      orgMaxSendSizeKb: null,
      maxHopCount: 15,
    }),
    stores: () => maildir,
    tracking,
    log: pino({ level: 'silent' }),
    localRetry: retry,
    remoteRetry: retry,
    // Routed mail goes to a queue per domain whose "remote delivery" records and accepts it.
    route: (r: Route) =>
      r.kind === 'remote'
        ? { queue: `hop:${r.domain}`, destination: { type: 'dns', domain: r.domain } }
        : { fail: { code: 554, status: '5.4.4', text: 'no route in this test' } },
    remote: {
      close: async () => undefined,
      runOnSocket: async () => undefined,
      idleSessions: () => 0,
      run: async (d: Destination, jobs: DeliveryJob[]) => {
        for (const j of jobs) {
          relayed.push({
            destination: d,
            id: j.envelope.id,
            recipients: j.recipients.map((r) => r.address).sort(),
          });
          j.done({
            results: j.recipients.map((recipient) => ({
              recipient,
              reply: { code: 250, status: '2.1.5', lines: ['OK'], text: '250 2.1.5 OK' },
            })),
            remoteMta: 'sink.fabrikam.test',
          });
        }
      },
    },
    maxConnectionsPerQueue: 1,
    maxConnections: 1,
    badmail: new Badmail(path.join(dataDir, 'badmail')),
    organisation: () => org,
    releaseConnectors: () => [],
  });
  await engine.recover({ messages: [], onDisk: new Set() }, new Set());
  engine.start();
});

after(async () => {
  await engine?.stop();
  await tracking?.close();
  if (dir) cleanup(dir);
});

/** Spools a message the way the SMTP server does and hands it to the engine. */
async function submit(
  sender: string,
  recipients: string[],
  subject: string,
): Promise<{ id: string; bytes: Buffer }> {
  const id = newMessageId();
  const bytes = Buffer.from(compose({ from: sender, to: recipients, subject }), 'utf8');
  const envelope: Envelope = {
    id,
    receivedAt: new Date().toISOString(),
    server: 'MAIL1',
    virtualServer: 'Default SMTP Virtual Server',
    client: { ip: '127.0.0.1', port: 40000, helo: 'client.test', tls: false },
    sender,
    body: '7BIT',
    smtputf8: false,
    recipients: recipients.map((address) => ({ address })),
    subject,
  };
  const writer = spool.createWriter(envelope);
  await writer.write(bytes);
  engine.submit(await writer.commit());
  return { id, bytes };
}

const queueCount = (name: string) => engine.listQueues().find((q) => q.name === name)?.messageCount;

/** Waits until the engine has let go of a message. */
const waitGone = (id: string) =>
  waitFor(`${id} to leave the queues`, () => engine.getMessage(id) === undefined);

test('listQueues names every queue of the guide, with counts', () => {
  const names = engine.listQueues().map((q) => q.name);
  for (const q of Object.values(QUEUE)) assert.ok(names.includes(q), `${q} in ${names.join(', ')}`);
  for (const q of engine.listQueues()) {
    assert.equal(q.messageCount, 0, q.name);
    assert.equal(q.state, 'Ready', q.name);
  }
});

test('a frozen queue holds its messages until it is unfrozen', async () => {
  engine.freezeQueue(QUEUE.local, true);
  try {
    const { id } = await submit('kim@fourthcoffee.test', [ALICE], 'held by the queue');
    await waitFor('the message in Local delivery', () => queueCount(QUEUE.local) === 1);
    const q = engine.listQueues().find((x) => x.name === QUEUE.local)!;
    assert.equal(q.frozen, true);
    assert.equal(q.state, 'Frozen');
    assert.equal(engine.getMessage(id)?.state, 'Frozen');
    await sleep(300);
    assert.equal(copiesOf(dataDir, ALICE, id), 0, 'not delivered while frozen');
    engine.freezeQueue(QUEUE.local, false);
    await waitForMessages(dataDir, ALICE, `${id}.`);
    await waitGone(id);
    assert.equal(queueCount(QUEUE.local), 0);
  } finally {
    engine.freezeQueue(QUEUE.local, false);
  }
});

test('a frozen message stays put; unfreezing its queue does not release it', async () => {
  engine.freezeQueue(QUEUE.local, true);
  const { id } = await submit('kim@fourthcoffee.test', [BOB], 'held by itself');
  await waitFor('the message in Local delivery', () => engine.getMessage(id)?.queues.includes(QUEUE.local));
  engine.freezeMessage(id, true);
  engine.freezeQueue(QUEUE.local, false);
  await sleep(300);
  assert.equal(copiesOf(dataDir, BOB, id), 0, 'the message freeze holds on its own');
  const m = engine.getMessage(id)!;
  assert.equal(m.frozen, true);
  assert.equal(m.state, 'Frozen');
  assert.deepEqual(
    engine.findMessages({ state: 'Frozen' }).map((x) => x.id),
    [id],
  );
  engine.freezeMessage(id, false);
  await waitForMessages(dataDir, BOB, `${id}.`);
  await waitGone(id);
  assert.equal(copiesOf(dataDir, BOB, id), 1);
});

test('findMessages by sender and by recipient; exportMessage returns the original bytes', async () => {
  engine.freezeQueue(QUEUE.local, true);
  try {
    const a = await submit('kim@fourthcoffee.test', [ALICE], 'find me one');
    const b = await submit('lee@fourthcoffee.test', [ALICE, BOB], 'find me two');
    await waitFor('both in Local delivery', () => queueCount(QUEUE.local) === 2);
    assert.deepEqual(
      engine.findMessages({ sender: 'KIM@fourthcoffee.test' }).map((m) => m.id),
      [a.id],
    );
    assert.deepEqual(
      engine.findMessages({ recipient: BOB }).map((m) => m.id),
      [b.id],
    );
    assert.deepEqual(
      engine.findMessages({ recipient: ALICE }).map((m) => m.id),
      [a.id, b.id],
    );
    assert.deepEqual(
      engine.findMessages({ recipient: ALICE, limit: 1 }).map((m) => m.id),
      [a.id],
    );
    assert.deepEqual(
      engine.findMessages({ queue: QUEUE.local }).map((m) => m.id),
      [a.id, b.id],
    );
    assert.deepEqual(engine.findMessages({ sender: 'nobody@nowhere.test' }), []);
    const found = engine.findMessages({ sender: 'lee@fourthcoffee.test' })[0]!;
    assert.equal(found.subject, 'find me two');
    assert.equal(found.size, b.bytes.length);
    assert.deepEqual(
      found.recipients.map((r) => [r.address, r.queue]),
      [
        [ALICE, QUEUE.local],
        [BOB, QUEUE.local],
      ],
    );
    const local = engine.listQueues().find((q) => q.name === QUEUE.local)!;
    assert.equal(local.messageCount, 2);
    assert.equal(local.totalSize, a.bytes.length + b.bytes.length);
    assert.ok((await engine.exportMessage(a.id)).equals(a.bytes));
    assert.ok((await engine.exportMessage(b.id)).equals(b.bytes));
    await assert.rejects(engine.exportMessage('NOSUCHMESSAGE'), (e: unknown) => e instanceof TransportError);
    // Delete without NDR: gone, nobody hears of it.
    engine.deleteMessage(b.id, false);
    assert.equal(engine.getMessage(b.id), undefined);
    assert.equal(queueCount(QUEUE.local), 1);
    engine.freezeQueue(QUEUE.local, false);
    await waitForMessages(dataDir, ALICE, `${a.id}.`);
    await waitGone(a.id);
    assert.equal(copiesOf(dataDir, ALICE, b.id), 0);
    assert.equal(copiesOf(dataDir, BOB, b.id), 0);
  } finally {
    engine.freezeQueue(QUEUE.local, false);
  }
});

test('deleteMessage with NDR sends one; on a DSN it is refused', async () => {
  engine.freezeQueue(QUEUE.local, true);
  engine.freezeQueue(QUEUE.dsn, true);
  try {
    const { id } = await submit(ALICE, [BOB], 'delete me');
    await waitFor('the message in Local delivery', () => engine.getMessage(id)?.queues.includes(QUEUE.local));
    engine.deleteMessage(id, true);
    // The NDR to Alice waits in the frozen DSN queue.
    const dsnId = `${id}N1`;
    await waitFor('the NDR in the DSN queue', () => engine.getMessage(dsnId)?.queues.includes(QUEUE.dsn));
    assert.equal(queueCount(QUEUE.dsn), 1);
    assert.deepEqual(
      engine.findMessages({ queue: QUEUE.dsn }).map((m) => m.id),
      [dsnId],
    );
    assert.equal(engine.getMessage(dsnId)!.sender, '');
    assert.throws(
      () => engine.deleteMessage(dsnId, true),
      (e: unknown) => e instanceof TransportError && e.status === '5.7.1',
    );
    assert.ok(engine.getMessage(dsnId), 'the refused delete left the DSN alone');
    engine.freezeQueue(QUEUE.dsn, false);
    engine.freezeQueue(QUEUE.local, false);
    const [ndr] = await waitForMessages(dataDir, ALICE, `${dsnId}.`);
    const dsn = parseDsn(ndr!.content);
    assert.equal(dsn.reportType, 'delivery-status');
    assert.equal(dsn.perRecipient[0]!['Final-Recipient'], `rfc822; ${BOB}`);
    assert.equal(dsn.perRecipient[0]!['Action'], 'failed');
    assert.match(dsn.text, /deleted by an administrator/);
    await waitGone(dsnId);
    await waitGone(id);
    assert.equal(copiesOf(dataDir, BOB, id), 0);
    const events = (await tracking.search({ internalMessageId: id })).map((e) => e.event);
    assert.ok(events.includes('FAIL') && events.includes('SUBMIT'), events.join());
  } finally {
    engine.freezeQueue(QUEUE.local, false);
    engine.freezeQueue(QUEUE.dsn, false);
  }
});

test('routed recipients wait in "Messages waiting to be routed" while it is frozen', async () => {
  engine.freezeQueue(QUEUE.routing, true);
  try {
    const { id } = await submit(ALICE, ['partner@example.com', 'someone@fabrikam.test', BOB], 'to be routed');
    await waitForMessages(dataDir, BOB, `${id}.`);
    await waitFor('two recipients waiting to be routed', () => {
      const m = engine.getMessage(id);
      return m?.recipients.filter((r) => r.queue === QUEUE.routing).length === 2;
    });
    assert.equal(queueCount(QUEUE.routing), 1);
    assert.deepEqual(
      engine.findMessages({ queue: QUEUE.routing }).map((m) => m.id),
      [id],
    );
    const waiting = engine
      .getMessage(id)!
      .recipients.filter((r) => r.queue === QUEUE.routing)
      .map((r) => r.address)
      .sort();
    // The contact's target address, and the unknown address of a domain that is not ours.
    assert.deepEqual(waiting, ['pat@fabrikam.test', 'someone@fabrikam.test']);
    await sleep(200);
    assert.deepEqual(relayed, [], 'nothing leaves a frozen routing queue');
    engine.freezeQueue(QUEUE.routing, false);
    await waitGone(id);
    assert.deepEqual(relayed, [
      {
        destination: { type: 'dns', domain: 'fabrikam.test' },
        id,
        recipients: ['pat@fabrikam.test', 'someone@fabrikam.test'],
      },
    ]);
    assert.equal(queueCount(QUEUE.routing), 0);
  } finally {
    engine.freezeQueue(QUEUE.routing, false);
  }
});

test('operations on an unknown message are refused with a status', () => {
  for (const op of [() => engine.freezeMessage('NOPE', true), () => engine.deleteMessage('NOPE', false)]) {
    assert.throws(op, (e: unknown) => e instanceof TransportError && e.status === '5.1.0');
  }
});
