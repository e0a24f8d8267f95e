// `bridgehead route show` (the WinRoute view of the link state table) and
// `bridgehead route test ADDRESS` (which route an address would take, and why).
import { createHash } from 'node:crypto';
import { canonical, connectorStateIn, serverUpIn, type LinkStateTable } from '../linkstate/table.js';
import type { Command } from 'commander';
import { AdminClient, CliError, endpoints, type Endpoint } from './admin-client.js';
import { loadConfigFile, loadDefaultConfig, selectServer } from '../config/load.js';
import { openDirectory } from '../directory/open.js';
import { Router } from '../routing/router.js';
import { buildTopology } from '../routing/topology.js';
import type { Topology } from '../routing/routing.js';
import type { NextHop } from '../routing/next-hop.js';
import { dryRunCategorizer } from './dry-run.js';

/** MD5 of the canonical form of the link state table, as servers compare it. */
export function topologyDigest(t: Topology): string {
  return createHash('md5').update(canonical(t)).digest('hex');
}

/**
 * The next hop as `route test --json` prints it: the organisation secret (server to server)
 * or a connector's password is never written out, only that there is one.
 */
function withoutPassword(hop: NextHop): NextHop {
  if (!('destination' in hop) || !hop.destination?.auth) return hop;
  return {
    ...hop,
    destination: { ...hop.destination, auth: { ...hop.destination.auth, password: '(hidden)' } },
  };
}

interface LiveGroup {
  name: string;
  master: string;
  version: { major: number; minor: number; user: number };
  config: string;
  servers: Record<string, string>;
  connectors: Record<string, string>;
}

/** The link state table as a running server holds it (versions, states, digest). */
async function showLive(o: { api: string; json?: boolean; token?: string; dataDir?: string }): Promise<void> {
  // One admin-API client for the CLI: the token (--token, $BRIDGEHEAD_TOKEN, --data-dir), readable errors.
  const client = AdminClient.of({ api: o.api, token: o.token, dataDir: o.dataDir });
  const body = (await client.get('/api/v1/linkstate')) as {
    master?: string;
    isMaster?: boolean;
    digest?: string;
    table?: { groups: Record<string, LiveGroup> };
  };
  if (o.json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return;
  }
  const out = [
    `Link state table (live)   digest ${body.digest}`,
    `This server's routing group master: ${body.master}${body.isMaster ? ' (this server)' : ''}`,
    '',
  ];
  for (const g of Object.values(body.table?.groups ?? {}).sort((a, b) => a.name.localeCompare(b.name))) {
    const v = g.version;
    out.push(
      `Routing group ${g.name}   master ${g.master}   version ${v.major}.${v.minor}.${v.user}   config ${g.config}`,
    );
    for (const [name, state] of Object.entries(g.servers))
      out.push(`  server    ${name}  ${state.toUpperCase()}`);
    for (const [name, state] of Object.entries(g.connectors))
      out.push(`  connector ${name}  ${state.toUpperCase()}`);
    out.push('');
  }
  process.stdout.write(out.join('\n'));
}

/** How long `route test` waits for a server's link state before it reads the file alone. */
const LIVE_TIMEOUT_MS = 3000;

/**
 * The link state `route test` decides with: the running server's table (--api, else the
 * --from server's admin API from the file), or none when no server answers (every server
 * and connector up, as the file says) with a note why. An explicit --api must answer.
 */
async function liveLinkState(
  o: { api?: string; config?: string; token?: string; dataDir?: string },
  server: string,
): Promise<{ table?: LinkStateTable; note: string }> {
  const explicit = o.api !== undefined;
  let endpoint: Endpoint;
  try {
    // The token: --token, $BRIDGEHEAD_TOKEN, else the server's admin.token (--data-dir with
    // --api, the file's dataDir for the --from server).
    endpoint = explicit
      ? endpoints({ api: o.api, ...(o.dataDir ? { dataDir: o.dataDir } : {}) })[0]!
      : endpoints({ ...(o.config ? { config: o.config } : {}), server })[0]!;
  } catch (err) {
    return { note: `link state: from the file (${(err as Error).message})` };
  }
  try {
    const body = (await new AdminClient(endpoint, o.token, LIVE_TIMEOUT_MS).get('/api/v1/linkstate')) as {
      digest?: string;
      table?: LinkStateTable;
    };
    if (!body.table) throw new CliError(`${endpoint.name}: no link state table in the answer`);
    return {
      table: body.table,
      note: `link state: live from ${endpoint.name} (digest ${body.digest ?? '?'})`,
    };
  } catch (err) {
    const why = (err as Error).message;
    if (/HTTP 404/.test(why)) return { note: 'link state: none (a single server); routes from the file' };
    if (explicit) throw err;
    return {
      note: `link state: from the file, every server and connector assumed up (${why})`,
    };
  }
}

export function addRouteCommands(program: Command): void {
  const route = program.command('route').description('routing: the link state table and route tests');
  route
    .command('show')
    .description('the link state table: routing groups, members, connectors, address spaces, costs, states')
    .option('-c, --config <file>', 'organisation file')
    .option('--api <url>', "a running server's admin API: show its live link state table instead")
    .option('--token <token>', 'with --api: bearer token (default $BRIDGEHEAD_TOKEN)')
    .option('-d, --data-dir <dir>', "with --api: the server's data directory (its admin.token)")
    .option('--json', 'print JSON')
    .action(
      async (o: { config?: string; json?: boolean; api?: string; token?: string; dataDir?: string }) => {
        const api = o.api ?? (o.config ? undefined : process.env.BRIDGEHEAD_API);
        if (api) return showLive({ ...o, api: api.replace(/\/$/, '') });
        const loaded = o.config ? loadConfigFile(o.config) : loadDefaultConfig();
        const org = loaded.org;
        const t = buildTopology(org);
        const digest = topologyDigest(t);
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ digest, ...t }, null, 2)}\n`);
          return;
        }
        const out: string[] = [`Organisation: ${org.organisation.name}`, `Digest (MD5): ${digest}`, ''];
        for (const g of org.routingGroups) {
          const master = g.master ?? g.servers[0]?.name ?? '(none)';
          out.push(`Routing group: ${g.name}   master: ${master}`);
          for (const s of g.servers) {
            const vs = s.virtualServers.map((v) => `${v.name} ${v.ip}:${v.port}`).join('; ');
            out.push(`  server ${s.name} (${s.fqdn})  ${vs}`);
          }
          for (const c of t.connectors.filter((x) => x.group === g.name)) {
            const target =
              c.type === 'routingGroup'
                ? `→ ${c.to}  remote bridgeheads: ${c.remoteBridgeheads.join(', ')}`
                : `address spaces: ${c.addressSpaces.map((a) => `${a.type}:${a.pattern}:${a.cost}`).join(', ') || '(none)'}` +
                  (c.connectedRoutingGroups.length
                    ? `  connected: ${c.connectedRoutingGroups.join(', ')}`
                    : '') +
                  `  ${c.smartHosts.length ? `smart hosts ${c.smartHosts.join(', ')}` : 'DNS'}  scope ${c.scope}`;
            out.push(
              `  connector ${c.name} [${c.type === 'routingGroup' ? 'routing group' : 'SMTP'}] cost ${c.cost} ${c.state.toUpperCase()}`,
              `      ${target}`,
              `      local bridgeheads: ${c.localBridgeheads.length ? c.localBridgeheads.join(', ') : 'any local server'}`,
            );
          }
          out.push('');
        }
        process.stdout.write(`${out.join('\n')}`);
      },
    );

  route
    .command('test')
    .argument('<address>', 'recipient address')
    .description('which route a message to ADDRESS would take from a server, and why')
    .option('-c, --config <file>', 'organisation file')
    .option('--from <server>', 'the server the message is on (default: the only or first server)')
    .option('--sender <address>', 'envelope sender (connector restrictions)', '')
    .option('--size <kb>', 'message size in KB (content restrictions, oversize schedules)')
    .option('--priority <priority>', 'high | normal | low (content restrictions)', 'normal')
    .option(
      '--api <url>',
      "a running server's admin API: decide with its live link state table (default: the --from server's, when it answers)",
    )
    .option('--token <token>', 'bearer token of the admin API (default $BRIDGEHEAD_TOKEN)')
    .option('-d, --data-dir <dir>', "with --api: the server's data directory (its admin.token)")
    .option('--no-live', 'decide from the file alone (every server and connector up)')
    .option('--json', 'print JSON')
    .action(
      async (
        address: string,
        o: {
          config?: string;
          from?: string;
          sender: string;
          json?: boolean;
          size?: string;
          priority: string;
          api?: string;
          token?: string;
          dataDir?: string;
          live: boolean;
        },
      ) => {
        const loaded = o.config ? loadConfigFile(o.config) : loadDefaultConfig();
        const org = loaded.org;
        const servers = org.routingGroups.flatMap((g) => g.servers);
        const { server } = o.from ? selectServer(org, o.from) : { server: servers[0]! };
        const directory = openDirectory(org.directory, { baseDir: loaded.baseDir, serverName: server.name });
        const categorizer = dryRunCategorizer(org, server, directory);
        const result = await categorizer
          .categorize([{ id: 1, address, original: address }], {
            sender: o.sender,
            authenticated: true,
            size: 0,
            receivedHeaders: 0,
            envelopeRecipientCount: 1,
          })
          .finally(() => directory.close?.());
        const live = o.live
          ? await liveLinkState(o, server.name)
          : { note: 'link state: from the file (--no-live)' };
        const table = live.table;
        const router = table
          ? new Router(
              org,
              server.name,
              (n) => serverUpIn(table, n),
              (c) => connectorStateIn(table, c),
            )
          : new Router(org, server.name);
        const lines: string[] = [
          `route test ${address} from ${server.name}${o.sender ? ` sender ${o.sender}` : ''}`,
          `  ${live.note}`,
        ];
        // JSON stays the list of recipients; the note goes to stderr there.
        if (o.json) process.stderr.write(`${live.note}\n`);
        const report: unknown[] = [];
        for (const e of result.events)
          lines.push(
            `  categorizer: ${e.event} ${e.related} → ${e.recipient}${e.info ? ` (${e.info})` : ''}`,
          );
        for (const leaf of result.leaves) {
          if (leaf.route.kind === 'failed') {
            lines.push(`  ${leaf.address}: NDR ${leaf.route.status} ${leaf.route.text}`);
            report.push({ address: leaf.address, ndr: leaf.route });
            continue;
          }
          const priority = o.priority === 'high' || o.priority === 'low' ? o.priority : 'normal';
          const { hop, why } = router.explain(
            leaf.route,
            o.sender,
            o.size || o.priority !== 'normal'
              ? { size: Number(o.size ?? 0) * 1024, priority, system: o.sender === '' }
              : undefined,
          );
          report.push({ address: leaf.address, route: leaf.route, hop: withoutPassword(hop), why });
          lines.push(
            `  ${leaf.address}: ${leaf.route.kind}${leaf.route.kind === 'server' ? ` (mailbox on ${leaf.route.server})` : ''}`,
          );
          for (const w of why) lines.push(`      ${w}`);
          if ('fail' in hop) lines.push(`      result: NDR ${hop.fail.status} ${hop.fail.text}`);
          else if (hop.destination) {
            const d = hop.destination;
            const where =
              d.type === 'server'
                ? `server ${d.name} at ${d.host}:${d.port}`
                : d.type === 'smarthost'
                  ? `smart host ${d.hosts.join(', ')}`
                  : `DNS (MX of ${d.domain})`;
            lines.push(
              `      result: queue "${hop.queue}" → ${where}${d.connector ? ` over connector ${d.connector}` : ''}`,
            );
          } else lines.push(`      result: held in "${hop.queue}" (${hop.reason})`);
        }
        process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${lines.join('\n')}\n`);
      },
    );
}
