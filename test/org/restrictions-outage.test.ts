// Delivery restrictions choose the candidate connectors first [003:155, SPEC §5], with real
// server processes: London's "Internet .net" (SMTP:*.net, Sales only) and Seattle's
// "Internet" (SMTP:*). A Sales sender's .net mail waits while London is down (no fall back
// from *.net to *) and leaves when London is back; a sender outside Sales is never
// affected: its .net mail always takes "*".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Organisation, Receiver, link, sleep, waitFor, type GroupSpec } from './cluster.js';

const NET = '127.0.75';
let org: Organisation;
const rx = {} as Record<'net' | 'star', Receiver>;

before(async () => {
  rx.net = await Receiver.start(`${NET}.5`);
  rx.star = await Receiver.start(`${NET}.6`);
  const g = (name: string, n: number): GroupSpec => ({
    name,
    servers: [{ name: `${name[0]}1`, address: `${NET}.${n}` }],
  });
  const seattle = g('Seattle', 11);
  const london = g('London', 21);
  const tokyo = g('Tokyo', 31);
  // A triangle: no link is a leaf link, so London's can be marked down.
  link(seattle, london, 10);
  link(seattle, tokyo, 10);
  link(tokyo, london, 10);
  london.connectors!.push({
    type: 'smtp',
    name: 'Internet .net',
    addressSpaces: ['SMTP:*.net:20'],
    smartHosts: [rx.net.smartHost],
    localBridgeheads: ['L1'],
    deliveryRestrictions: { enabled: true, acceptFrom: ['Sales'] },
  });
  seattle.connectors!.push({
    type: 'smtp',
    name: 'Internet',
    addressSpaces: ['SMTP:*:10'],
    smartHosts: [rx.star.smartHost],
    localBridgeheads: ['S1'],
  });
  org = await Organisation.create({
    groups: [seattle, london, tokyo],
    linkState: { probeInterval: '1s', pollInterval: '1s', dampingWindow: '1s' },
    directory: {
      users: [
        { name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'S1' } },
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'S1' } },
        { name: 'Carol', addresses: ['carol@example.com'], mailbox: { server: 'S1' } },
      ],
      groups: [{ name: 'Sales', addresses: ['sales@example.com'], members: ['alice@example.com'] }],
    },
    mutate: (o) => {
      for (const grp of o.routingGroups)
        for (const s of grp.servers)
          for (const vs of s.virtualServers) vs.relay = { mode: 'onlyList', list: ['127.0.0.0/8'] };
    },
  });
  await org.startAll();
  await org.converged(undefined, 30_000);
});

after(async () => {
  await org?.destroy();
  await Promise.all(Object.values(rx).map((r) => r.close()));
});

async function arrivesOnlyAt(which: keyof typeof rx, rcpt: string): Promise<void> {
  await waitFor(`${rcpt} at the ${which} receiver`, () => rx[which].for(rcpt).length > 0, 30_000);
  assert.equal(rx[which].for(rcpt).length, 1, `one copy of ${rcpt}`);
  for (const [name, r] of Object.entries(rx))
    if (name !== which) assert.equal(r.for(rcpt).length, 0, `${rcpt} must not reach the ${name} receiver`);
}

async function queues(server: string): Promise<{ name: string; messageCount: number }[]> {
  const r = await org.cli(['queue', 'list', ...org.apiArgs(server), '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { name: string; messageCount: number }[];
}

test('London up: a Sales sender takes *.net (via London), another sender takes *', async () => {
  await org.send('S1', { from: 'alice@example.com', to: ['ann@treyresearch.net'] });
  await org.send('S1', { from: 'carol@example.com', to: ['cid@treyresearch.net'] });
  await arrivesOnlyAt('net', 'ann@treyresearch.net');
  await arrivesOnlyAt('star', 'cid@treyresearch.net');
});

test('London down: the Sales sender waits (no fall back to *); the other still takes *', async () => {
  await org.stop('L1');
  await waitFor(
    'SeattleToLondon down on S1',
    async () => (await org.linkState('S1')).table.groups.Seattle?.connectors.SeattleToLondon === 'down',
    20_000,
  );
  await org.send('S1', { from: 'alice@example.com', to: ['bea@treyresearch.net'] });
  await org.send('S1', { from: 'carol@example.com', to: ['cy@treyresearch.net'] });
  await arrivesOnlyAt('star', 'cy@treyresearch.net');
  await waitFor(
    'the Sales mail waiting in "Final destination currently unreachable" on S1',
    async () =>
      (await queues('S1')).find(
        (q) => q.name === 'Final destination currently unreachable' && q.messageCount === 1,
      ),
    20_000,
  );
  await sleep(2000);
  assert.equal(rx.net.for('bea@treyresearch.net').length, 0);
  assert.equal(rx.star.for('bea@treyresearch.net').length, 0, 'never falls back to *');
  assert.ok(
    !org.mailbox('S1', 'alice@example.com').some((m) => m.content.includes('bea@treyresearch.net')),
    'no NDR',
  );
});

test('London back: the waiting Sales mail leaves over *.net', async () => {
  await org.start('L1');
  await arrivesOnlyAt('net', 'bea@treyresearch.net');
});
