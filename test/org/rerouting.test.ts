// Routing around failures (issue 12) with the guide's four routing groups as real server
// processes [003:130-140, 6445-6471]: mail already queued for London when London stops is
// routed again when link state marks the connector down, and reaches Brussels via Tokyo
// instead of waiting in Retry until London returns.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Organisation, waitFor, type LinkStateView, type TrackEvent } from './cluster.js';
import { fourGroups } from './topologies.js';

let org: Organisation;

before(async () => {
  org = await Organisation.create({
    ...fourGroups('127.0.74'),
    linkState: { probeInterval: '2s', pollInterval: '1s', dampingWindow: '1s' },
  });
  await org.startAll();
  await org.converged(undefined, 30_000);
  await waitFor(
    'every connector up on every server, one digest',
    async () => {
      const views = await Promise.all([...org.servers.keys()].map((n) => org.linkState(n)));
      return (
        views.every((v) => downConnectors(v).length === 0) && new Set(views.map((v) => v.digest)).size === 1
      );
    },
    30_000,
    200,
  );
});

/** LONDON1 is paused (SIGSTOP): it is let go on before it is stopped. */
let paused = false;

after(async () => {
  if (paused) org.signal('LONDON1', 'SIGCONT');
  await org?.destroy();
});

function downConnectors(v: LinkStateView): string[] {
  return Object.values(v.table.groups).flatMap((g) =>
    Object.entries(g.connectors)
      .filter(([, s]) => s === 'down')
      .map(([c]) => c),
  );
}

const host = (server: string) => `${server.toLowerCase()}.org.test`;

async function queues(server: string): Promise<{ name: string; state: string; messageCount: number }[]> {
  const r = await org.cli(['queue', 'list', '--api', org.info(server).api, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { name: string; state: string; messageCount: number }[];
}

/** Tracking events of `messageId` on the running servers that answer (LONDON1 is paused). */
async function trackOn(servers: string[], messageId: string): Promise<TrackEvent[]> {
  const out: TrackEvent[] = [];
  for (const server of servers) {
    const r = await org.cli(['track', '--api', org.info(server).api, '--message-id', messageId, '--json']);
    assert.equal(r.code, 0, r.stderr);
    out.push(...(JSON.parse(r.stdout) as TrackEvent[]));
  }
  return out;
}

/** The servers a message passed through, following each SEND to the server at its address. */
function hops(events: TrackEvent[], submittedTo: string): string[] {
  const path: string[] = [];
  let at: string | undefined = submittedTo;
  while (at && !path.includes(at)) {
    path.push(at);
    const from: string = at;
    const ip = events.find((e) => e.serverHostname === host(from) && e.event === 'SEND')?.serverIp;
    at = ip ? [...org.servers.values()].find((s) => s.address === ip)?.name : undefined;
  }
  return path;
}

test('mail queued for London when it stops answering goes via Tokyo once link state marks the connector down', async () => {
  // London paused: connections to it are accepted by the kernel and never greeted, so the
  // mail routed to it now is Active in an attempt that lasts until the 10 s timeout, and
  // the link state probe needs its own 5 s timeout before it can mark the connector down.
  org.signal('LONDON1', 'SIGSTOP');
  paused = true;
  const { messageId } = await org.send('SEATTLE1', { from: 'alice@example.com', to: ['bob@example.com'] });
  let seen: unknown;
  await waitFor(
    "the message in London's queue on SEATTLE1",
    async () => {
      const list = await queues('SEATTLE1');
      seen = list;
      return list.find((q) => q.name === host('LONDON1') && q.messageCount === 1);
    },
    20_000,
    100,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(seen)}`);
  });
  await waitFor(
    'SeattleToLondon down on SEATTLE1',
    async () => (await org.linkState('SEATTLE1')).table.groups.Seattle?.connectors.SeattleToLondon === 'down',
    20_000,
  );
  let last: TrackEvent[] = [];
  try {
    await waitFor(
      'delivered on BRUSSELS1',
      async () => {
        last = await trackOn(['SEATTLE1', 'TOKYO1', 'BRUSSELS1'], `<${messageId}>`);
        return last.some((e) => e.serverHostname === host('BRUSSELS1') && e.event === 'DELIVER');
      },
      25_000,
      250,
    );
  } catch (err) {
    const summary = last.map((e) => `${e.serverHostname} ${e.event} ${e.messageInfo ?? ''}`).join('\n');
    throw new Error(`${(err as Error).message}\n${summary}\n${JSON.stringify(await queues('SEATTLE1'))}`);
  }
  assert.deepEqual(hops(last, 'SEATTLE1'), ['SEATTLE1', 'TOKYO1', 'BRUSSELS1']);
  assert.ok(
    org.mailbox('BRUSSELS1', 'bob@example.com').some((m) => m.content.includes(`Message-ID: <${messageId}>`)),
    "in bob's Maildir on BRUSSELS1",
  );
  // Nothing is left waiting for London, and London never got it.
  const london = (await queues('SEATTLE1')).find((q) => q.name === host('LONDON1'));
  assert.ok(!london || london.messageCount === 0, JSON.stringify(london));
  assert.ok(!last.some((e) => e.serverHostname === host('LONDON1')));
});
