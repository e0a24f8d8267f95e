// External routing through SMTP connectors with real server processes and real SMTP
// receivers as smart hosts (issue 4) [003:150-178, 430-590]: the most specific address space
// wins regardless of cost; a routing-group-scoped connector is not used from another group;
// a sender excluded by a connector's restrictions is not a candidate for it and takes "*"; a
// connector that never runs holds mail (Scheduled); a connector held for remote triggered
// delivery sends when an SMTP client says ETRN.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Organisation, Receiver, SmtpSession, sleep, waitFor, type TrackEvent } from './cluster.js';
import { externalRouting } from './topologies.js';

let org: Organisation;
const rx = {} as Record<'net' | 'star' | 'scoped' | 'held', Receiver>;

before(async () => {
  rx.net = await Receiver.start('127.0.63.5');
  rx.star = await Receiver.start('127.0.63.6');
  rx.scoped = await Receiver.start('127.0.63.7');
  rx.held = await Receiver.start('127.0.63.8');
  org = await Organisation.create(
    externalRouting({
      net: rx.net.smartHost,
      star: rx.star.smartHost,
      scoped: rx.scoped.smartHost,
      held: rx.held.smartHost,
    }),
  );
  await org.startAll();
  await org.converged(undefined, 30_000);
});

after(async () => {
  await org?.destroy();
  await Promise.all(Object.values(rx).map((r) => r.close()));
});

const everyReceiver = () => Object.entries(rx) as [string, Receiver][];

/** Waits until exactly the receiver `which` has `rcpt`, and no other receiver does. */
async function arrivesOnlyAt(which: keyof typeof rx, rcpt: string): Promise<void> {
  await waitFor(`${rcpt} at the ${which} receiver`, () => rx[which].for(rcpt).length > 0, 20_000);
  assert.equal(rx[which].for(rcpt).length, 1, `one copy of ${rcpt}`);
  for (const [name, r] of everyReceiver())
    if (name !== which) assert.equal(r.for(rcpt).length, 0, `${rcpt} must not reach the ${name} receiver`);
}

async function queues(server: string): Promise<{ name: string; state: string; messageCount: number }[]> {
  const r = await org.cli([
    'queue',
    'list',
    '--api',
    org.info(server).api,
    '--data-dir',
    org.info(server).dataDir,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { name: string; state: string; messageCount: number }[];
}

async function sendEvent(messageId: string, server: string): Promise<TrackEvent> {
  return waitFor(`SEND of ${messageId} on ${server}`, async () =>
    (await org.track(`<${messageId}>`)).find(
      (e) => e.event === 'SEND' && e.serverHostname === `${server.toLowerCase()}.org.test`,
    ),
  );
}

test('*.net (cost 20) takes x@treyresearch.net; * (cost 10) takes x@contoso.com', async () => {
  const net = await org.send('S1', { from: 'alice@example.com', to: ['ted@treyresearch.net'] });
  const com = await org.send('S1', { from: 'alice@example.com', to: ['adam@contoso.com'] });
  await arrivesOnlyAt('net', 'ted@treyresearch.net');
  await arrivesOnlyAt('star', 'adam@contoso.com');
  assert.equal(rx.net.for('ted@treyresearch.net')[0]!.from, 'alice@example.com');
  assert.match(rx.net.for('ted@treyresearch.net')[0]!.data, new RegExp(`Message-ID: <${net.messageId}>`));
  assert.equal((await sendEvent(net.messageId, 'S1')).connectorId, 'Internet .net');
  assert.equal((await sendEvent(com.messageId, 'S1')).connectorId, 'Internet');
});

test('a routing-group-scoped connector is used from its own group only', async () => {
  // From London: its own "London .org" (scope routing group) is the most specific match.
  await org.send('L1', { from: 'larry@example.com', to: ['x@fabrikam.org'] });
  await arrivesOnlyAt('scoped', 'x@fabrikam.org');
  // From Seattle the scoped connector does not exist: "*" in Seattle takes the mail.
  await org.send('S1', { from: 'alice@example.com', to: ['y@fabrikam.org'] });
  await arrivesOnlyAt('star', 'y@fabrikam.org');
});

test('a sender outside the connector restriction is not a candidate for *.net: its mail takes * [SPEC §5]', async () => {
  const sent = await org.send('S1', { from: 'carol@example.com', to: ['zoe@treyresearch.net'] });
  await arrivesOnlyAt('star', 'zoe@treyresearch.net');
  assert.equal(rx.star.for('zoe@treyresearch.net')[0]!.from, 'carol@example.com');
  assert.equal((await sendEvent(sent.messageId, 'S1')).connectorId, 'Internet');
  // No NDR for carol.
  assert.ok(!org.mailbox('S1', 'carol@example.com').some((m) => m.content.includes('zoe@treyresearch.net')));
  // A Sales member's .net mail takes *.net.
  await org.send('S1', { from: 'alice@example.com', to: ['zack@treyresearch.net'] });
  await arrivesOnlyAt('net', 'zack@treyresearch.net');
});

test('a connector whose schedule never runs holds the mail (Scheduled); nothing reaches its smart host', async () => {
  await org.send('S1', { from: 'alice@example.com', to: ['nina@never.example'] });
  const q = await waitFor('the "Never" queue with the message', async () =>
    (await queues('S1')).find((x) => x.name === 'Never' && x.messageCount === 1),
  );
  assert.equal(q.state, 'Scheduled');
  const readable = await org.cli([
    'queue',
    'list',
    '--api',
    org.info('S1').api,
    '--data-dir',
    org.info('S1').dataDir,
  ]);
  assert.match(readable.stdout, /^Never\s+Scheduled\s+1\s/m);
  // Several glitch-retry and retry intervals (1-2 s) later it is still held.
  await sleep(3000);
  assert.equal(rx.held.for('nina@never.example').length, 0);
  assert.equal((await queues('S1')).find((x) => x.name === 'Never')?.messageCount, 1);
});

interface FoundMessage {
  state: string;
  queues: string[];
  recipients: { address: string }[];
}

async function findByState(server: string, state: string): Promise<FoundMessage[]> {
  const r = await org.cli([
    'queue',
    'find',
    '--state',
    state,
    '--api',
    org.info(server).api,
    '--data-dir',
    org.info(server).dataDir,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as FoundMessage[];
}

test('a message held by a connector schedule is Scheduled itself: queue find --state Scheduled finds it', async () => {
  const found = await findByState('S1', 'Scheduled');
  assert.deepEqual(
    found.map((m) => [m.state, m.queues, m.recipients.map((r) => r.address)]),
    [['Scheduled', ['Never'], ['nina@never.example']]],
  );
  assert.deepEqual(await findByState('S1', 'Retry'), []);
});

test('a connector held for remote triggered delivery holds the mail until ETRN', async () => {
  await org.send('S1', { from: 'alice@example.com', to: ['eve@etrn.example'] });
  await waitFor('the "ETRN hold" queue with the message', async () =>
    (await queues('S1')).find((x) => x.name === 'ETRN hold' && x.messageCount === 1),
  );
  await sleep(3000);
  assert.equal(rx.held.for('eve@etrn.example').length, 0, 'held until ETRN');
  assert.equal((await queues('S1')).find((x) => x.name === 'ETRN hold')?.messageCount, 1);
});

test('the queue held for ETRN shows the state Remote [SPEC §6]', async () => {
  assert.equal((await queues('S1')).find((x) => x.name === 'ETRN hold')?.state, 'Remote');
  // Its message too.
  const found = await findByState('S1', 'Remote');
  assert.deepEqual(
    found.map((m) => [m.state, m.queues]),
    [['Remote', ['ETRN hold']]],
  );
});

test('ETRN domain releases the held mail to the smart host', async () => {
  assert.equal(rx.held.for('eve@etrn.example').length, 0, 'still held');
  const s = org.info('S1');
  const c = await SmtpSession.connect(s.address, s.smtpPort);
  try {
    assert.match(await c.reply(), /^220 /);
    assert.match(await c.cmd('EHLO etrn-client.test'), /^250[ -]/);
    assert.match(await c.cmd('ETRN nothing-held.example'), /^459 /);
    assert.equal(await c.cmd('ETRN etrn.example'), '250 2.0.0 Queuing for node etrn.example started');
    await c.cmd('QUIT');
  } finally {
    c.close();
  }
  await arrivesOnlyAt('held', 'eve@etrn.example');
  await waitFor('the "ETRN hold" queue empty', async () => {
    const q = (await queues('S1')).find((x) => x.name === 'ETRN hold');
    return !q || q.messageCount === 0;
  });
  // The "Never" connector is not released by ETRN for another domain.
  assert.equal(rx.held.for('nina@never.example').length, 0);
});
