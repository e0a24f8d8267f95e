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
  const r = await org.cli(['queue', 'list', ...org.apiArgs(server), '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { name: string; state: string; messageCount: number }[];
}

/** Tracking events of `messageId` on the running servers that answer (LONDON1 is paused). */
async function trackOn(servers: string[], messageId: string): Promise<TrackEvent[]> {
  const out: TrackEvent[] = [];
  for (const server of servers) {
    const r = await org.cli(['track', ...org.apiArgs(server), '--message-id', messageId, '--json']);
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
      'delivered on BRUSSELS1, every hop tracked',
      async () => {
        last = await trackOn(['SEATTLE1', 'TOKYO1', 'BRUSSELS1'], `<${messageId}>`);
        // Tracking is written in batches: wait for every hop's SEND, not only the DELIVER.
        return (
          last.some((e) => e.serverHostname === host('BRUSSELS1') && e.event === 'DELIVER') &&
          hops(last, 'SEATTLE1').at(-1) === 'BRUSSELS1'
        );
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

test('route test during the outage: the live link state shows the path around London; --no-live the file', async () => {
  // Default: the --from server's admin API, found in the organisation file.
  const live = await org.cli([
    'route',
    'test',
    'bob@example.com',
    '--from',
    'SEATTLE1',
    '--config',
    org.configFile,
  ]);
  assert.equal(live.code, 0, live.stderr);
  assert.match(live.stdout, /^ {2}link state: live from SEATTLE1 \(digest [0-9a-f]{32}\)$/m);
  assert.match(live.stdout, /path Seattle → Tokyo → Brussels at cost 35/);
  assert.match(live.stdout, /result: queue "tokyo1\.org\.test" → server TOKYO1/);
  // --api names the server explicitly; --json keeps the list on stdout.
  const api = await org.cli([
    'route',
    'test',
    'bob@example.com',
    '--from',
    'SEATTLE1',
    '--config',
    org.configFile,
    ...org.apiArgs('TOKYO1'),
    '--json',
  ]);
  assert.equal(api.code, 0, api.stderr);
  assert.equal((JSON.parse(api.stdout) as { hop: { queue: string } }[])[0]!.hop.queue, host('TOKYO1'));
  assert.match(api.stderr, /link state: live from http:\/\/127\.0\.0\.1:\d+/);
  // The file alone still says London.
  const file = await org.cli([
    'route',
    'test',
    'bob@example.com',
    '--from',
    'SEATTLE1',
    '--config',
    org.configFile,
    '--no-live',
  ]);
  assert.match(file.stdout, /path Seattle → London → Brussels at cost 20/);
  // A server that does not answer (LONDON1 is paused): the file, with a note saying so.
  const fallback = await org.cli([
    'route',
    'test',
    'bob@example.com',
    '--from',
    'LONDON1',
    '--config',
    org.configFile,
  ]);
  assert.equal(fallback.code, 0, fallback.stderr);
  assert.match(
    fallback.stdout,
    /link state: from the file, every server and connector assumed up \(.*LONDON1/,
  );
  // An explicit --api that does not answer is an error.
  const down = await org.cli([
    'route',
    'test',
    'bob@example.com',
    '--config',
    org.configFile,
    '--api',
    'http://127.0.74.99:47499',
  ]);
  assert.notEqual(down.code, 0);
  assert.match(down.stderr, /cannot reach the admin API/);
});
