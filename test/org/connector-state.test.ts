// Connector state in link state (issue 4), with real server processes: oscillation damping
// keeps a connector that flaps within the window up and lets it go down once the window has
// passed [003:9040-9050]; "any local server" routing group connectors and a leaf link with
// no alternate path are never marked down [003:140, 1834-1844; SPEC §5].
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Organisation, sleep, waitFor } from './cluster.js';
import { triangleWithLeaf } from './topologies.js';

// Wide enough that stopping and starting a server process twice fits in it on a loaded machine.
const WINDOW_MS = 12_000;
let org: Organisation;

before(async () => {
  org = await Organisation.create(triangleWithLeaf('127.0.62', `${WINDOW_MS / 1000}s`));
  // A1 last: its first probes find B1 listening, so no state change is counted for damping.
  await org.startAll(['B1', 'C1', 'D1']);
  await org.start('A1');
  await waitFor(
    'every connector up and one digest everywhere',
    async () => {
      const views = await Promise.all([...org.servers.keys()].map((n) => org.linkState(n)));
      const downs = views.flatMap((v) =>
        Object.values(v.table.groups).flatMap((g) => Object.values(g.connectors).filter((s) => s === 'down')),
      );
      return downs.length === 0 && new Set(views.map((v) => v.digest)).size === 1;
    },
    30_000,
    100,
  );
});

after(async () => {
  await org?.destroy();
});

const state = async (server: string, group: string, connector: string) =>
  (await org.linkState(server)).table.groups[group]?.connectors[connector];

const becomes = (server: string, group: string, connector: string, want: string, timeoutMs: number) =>
  waitFor(
    `${connector} ${want} on ${server}`,
    async () => (await state(server, group, connector)) === want,
    timeoutMs,
    50,
  ).catch((err: Error) => {
    // What the server saw of its links, for a failure that timing alone explains poorly.
    const seen = org
      .output(server)
      .split('\n')
      .filter((l) => /link state|connector/i.test(l))
      .slice(-15);
    throw new Error(`${err.message}\n${seen.join('\n')}`);
  });

/** Asserts the connector keeps `want` on `server` for `ms`. */
async function holds(server: string, group: string, connector: string, want: string, ms: number) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    assert.equal(await state(server, group, connector), want, `${connector} stays ${want} on ${server}`);
    await sleep(100);
  }
}

test('a connector that flaps within the damping window stays up, and goes down once the window has passed', async () => {
  // First change in a quiet window: down.
  const t1 = Date.now();
  await org.stop('B1');
  await becomes('A1', 'A', 'AToB', 'down', 5000);
  // Up again: always taken at once.
  await org.start('B1');
  await becomes('A1', 'A', 'AToB', 'up', 10_000);
  const t2 = Date.now();
  // Down a second time within the window: damped, it stays up while its bridgehead is gone.
  await org.stop('B1');
  const t3 = Date.now();
  assert.ok(t3 - t1 < WINDOW_MS - 2500, `the flap happened within the window (${t3 - t1} ms)`);
  await holds('A1', 'A', 'AToB', 'up', 2000);
  // Once the earlier changes have left the window, the connector is marked down.
  await becomes('A1', 'A', 'AToB', 'down', t2 + WINDOW_MS + 4000 - Date.now());
  const downAfter = Date.now() - t3;
  assert.ok(downAfter >= 2000, `held up by damping for ${downAfter} ms`);
  await org.start('B1');
  await becomes('A1', 'A', 'AToB', 'up', 10_000);
});

test('"any local server" and leaf links stay up when their remote bridgehead stops; named ones go down', async () => {
  for (const n of ['B1', 'C1', 'D1']) if (!org.isRunning(n)) await org.start(n);
  await org.stop('A1');
  // C → A names its local bridgeheads and C has another route: marked down. On a loaded
  // machine a probe of A1 can fail once while it is busy, which counts as a change for
  // damping; the connector then goes down once the window has passed, so allow for that.
  await becomes('C1', 'C', 'CToA', 'down', WINDOW_MS + 5000);
  // B → A: any local server can send over it [003:140]; D → A: D is a leaf node [003:1834].
  await holds('B1', 'B', 'BToA', 'up', 2000);
  assert.equal(await state('D1', 'D', 'DToA'), 'up');
  // The others learn C's view of the connector.
  await becomes('B1', 'C', 'CToA', 'down', 10_000);
});
