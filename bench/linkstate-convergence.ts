// Link state convergence benchmark (issue 4): 10 server processes in 5 routing groups on
// loopback (127.0.64.x), each group a master and a member, the groups in a ring of routing
// group connectors with named bridgeheads. Prints how long until every server reports the
// same /api/v1/linkstate digest (and the table shows the expected states):
//   - after start (from spawning the processes),
//   - after a member is stopped (its master marks it down; the change spreads), and started,
//   - after a master that is a remote bridgehead is stopped (its neighbours' probes fail;
//     its own member keeps its last table, as it must with no master fail-over, and is not
//     counted), and after that master is started again.
// Processes are started with node directly and stopped by pid; every wait is bounded.
//   npx tsc -p . && node dist/bench/linkstate-convergence.js [--probe 1s] [--poll 2s] [--damping 3s] [--json]
import { Organisation, link, waitFor, type GroupSpec, type LinkStateView } from '../test/org/cluster.js';

const GROUPS = 5;
const LIMIT_MS = 60_000;

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

function spec(probe: string, poll: string, damping: string) {
  const groups: GroupSpec[] = Array.from({ length: GROUPS }, (_, g) => ({
    name: `G${g + 1}`,
    servers: [
      { name: `G${g + 1}-MASTER`, address: `127.0.64.${(g + 1) * 10 + 1}` },
      { name: `G${g + 1}-MEMBER`, address: `127.0.64.${(g + 1) * 10 + 2}` },
    ],
  }));
  for (let g = 0; g < GROUPS; g++) link(groups[g]!, groups[(g + 1) % GROUPS]!, 10 + g);
  return {
    linkState: { probeInterval: probe, pollInterval: poll, dampingWindow: damping },
    groups,
    directory: {
      users: [
        { name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'G1-MASTER' } },
      ],
    },
  };
}

async function main(): Promise<void> {
  const probe = option('probe', '1s');
  const poll = option('poll', '2s');
  const damping = option('damping', '3s');
  const org = await Organisation.create(spec(probe, poll, damping));
  const stopAll = () => void org.destroy().then(() => process.exit(130));
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  /** Servers whose digest must agree: running, and not a member whose master is stopped. */
  const running = () =>
    [...org.servers.keys()].filter(
      (n) => org.isRunning(n) && (!n.endsWith('-MEMBER') || org.isRunning(n.replace('-MEMBER', '-MASTER'))),
    );
  /** Milliseconds from `since` until every running server has one digest and `check` holds. */
  const converge = async (what: string, since: number, check: (v: LinkStateView) => boolean) => {
    await waitFor(
      what,
      async () => {
        const views = await Promise.all(running().map((n) => org.linkState(n)));
        return new Set(views.map((v) => v.digest)).size === 1 && views.every(check);
      },
      LIMIT_MS,
      20,
    );
    return Date.now() - since;
  };
  const states = (v: LinkStateView) => Object.values(v.table.groups);
  const allUp = (v: LinkStateView) =>
    states(v).length === GROUPS &&
    states(v).every(
      (g) =>
        Object.values(g.connectors).every((s) => s === 'up') &&
        Object.values(g.servers).every((s) => s === 'up'),
    );
  const result: Record<string, number | string> = {
    servers: org.servers.size,
    routingGroups: GROUPS,
    probe,
    poll,
    damping,
  };
  try {
    let t = Date.now();
    await org.startAll();
    result.startAllMs = Date.now() - t;
    result.afterStartMs = await converge('one digest, everything up, after start', t, allUp);

    t = Date.now();
    await org.stop('G3-MEMBER');
    result.memberStoppedMs = await converge(
      'G3-MEMBER down everywhere',
      t,
      (v) => v.table.groups.G3?.servers['G3-MEMBER'] === 'down',
    );

    t = Date.now();
    await org.start('G3-MEMBER');
    result.memberStartedMs = await converge('G3-MEMBER back: everything up', t, allUp);

    t = Date.now();
    await org.stop('G4-MASTER');
    result.masterStoppedMs = await converge(
      'G3ToG4 and G5ToG4 down everywhere',
      t,
      (v) =>
        v.table.groups.G3?.connectors.G3ToG4 === 'down' && v.table.groups.G5?.connectors.G5ToG4 === 'down',
    );

    t = Date.now();
    await org.start('G4-MASTER');
    result.masterRestartedMs = await converge('G4-MASTER back: one digest again, everything up', t, allUp);
  } finally {
    await org.destroy();
  }
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    [
      `link state: ${result.servers} servers in ${GROUPS} routing groups (ring), probe ${probe}, poll ${poll}, damping ${damping}`,
      `processes started (listening) in ${result.startAllMs} ms`,
      `all digests equal, everything up, after start:        ${result.afterStartMs} ms`,
      `all digests equal after a member is stopped:           ${result.memberStoppedMs} ms`,
      `all digests equal after that member is started again:  ${result.memberStartedMs} ms`,
      `all digests equal after a master/bridgehead is stopped: ${result.masterStoppedMs} ms (its member excluded)`,
      `all digests equal after that master is started again:  ${result.masterRestartedMs} ms`,
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
