// Routing decision benchmark (issue 4): an organisation of 1,000 servers in 200 routing
// groups with 1,000 connectors (800 routing group connectors: a ring both ways plus two
// chords per group; 200 SMTP connectors with exact, "*.sub", "*.tld" and "*" address spaces,
// some restricted, some scoped to their routing group). The topology is built once; then
// the mean, p50 and p99 time of one routeToServer and one routeToDomain decision is
// printed (target < 1 ms), over random sources, targets, domains and senders.
//   npx tsc -p . && node dist/bench/routing-bench.js [--iterations N] [--json]
import { organisationSchema, type OrganisationInput } from '../src/config/schema.js';
import { buildTopology, senderIdentities } from '../src/routing/topology.js';
import { routeToDomain, routeToServer, type RouteDecision } from '../src/routing/routing.js';

const GROUPS = 200;
const SERVERS_PER_GROUP = 5;
const CHORDS_PER_GROUP = 2;

/** Small deterministic PRNG (mulberry32), so every run measures the same organisation. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function organisation(random: () => number): OrganisationInput {
  const group = (i: number) => `RG${String(i).padStart(3, '0')}`;
  const server = (g: number, s: number) => `${group(g)}-EX${s + 1}`;
  const groups = Array.from({ length: GROUPS }, (_, g) => ({
    name: group(g),
    servers: Array.from({ length: SERVERS_PER_GROUP }, (_, s) => ({
      name: server(g, s),
      fqdn: `${server(g, s).toLowerCase()}.bench.example`,
      address: `10.${g >> 8}.${g & 255}.${s + 1}`,
      virtualServers: [
        { name: 'Default SMTP Virtual Server', ip: `10.${g >> 8}.${g & 255}.${s + 1}`, port: 25 },
      ],
    })),
    connectors: [] as NonNullable<OrganisationInput['routingGroups'][number]['connectors']>,
  }));
  const rgc = (from: number, to: number, cost: number, name: string) =>
    groups[from]!.connectors.push({
      type: 'routingGroup',
      name,
      to: group(to),
      cost,
      // Half name their local bridgeheads, half leave it to any local server.
      localBridgeheads: from % 2 ? [server(from, 0), server(from, 1)] : [],
      remoteBridgeheads: [server(to, 0), server(to, 1)],
    });
  for (let g = 0; g < GROUPS; g++) {
    const next = (g + 1) % GROUPS;
    const cost = 1 + Math.floor(random() * 20);
    rgc(g, next, cost, `${group(g)}-to-${group(next)}`);
    rgc(next, g, cost, `${group(next)}-to-${group(g)}`);
  }
  for (let g = 0; g < GROUPS; g++) {
    for (let k = 0; k < CHORDS_PER_GROUP; k++) {
      let to = Math.floor(random() * GROUPS);
      if (to === g) to = (to + 7) % GROUPS;
      rgc(g, to, 5 + Math.floor(random() * 60), `${group(g)}-chord${k}-to-${group(to)}`);
    }
  }
  for (let g = 0; g < GROUPS; g++) {
    const kind = g % 5;
    const addressSpaces =
      kind === 0
        ? [`SMTP:*:${1 + (g % 17)}`]
        : kind === 1
          ? [`SMTP:*.net:${1 + (g % 30)}`, `SMTP:*.org:${1 + (g % 40)}`]
          : kind === 2
            ? [`SMTP:partner${g}.example:5`]
            : kind === 3
              ? [`SMTP:*.d${g}.example:10`, `SMTP:*.example:${20 + (g % 30)}`]
              : [`SMTP:*.com:${1 + (g % 50)}`];
    groups[g]!.connectors.push({
      type: 'smtp',
      name: `${group(g)}-smtp`,
      addressSpaces,
      smartHosts: g % 3 ? [`[192.0.2.${(g % 250) + 1}]`] : [],
      scope: g % 7 === 0 ? 'routingGroup' : 'organisation',
      localBridgeheads: g % 4 ? [] : [server(g, 2)],
      deliveryRestrictions: g % 11 === 0 ? { enabled: true, acceptFrom: ['Sales'] } : {},
    });
  }
  return {
    organisation: { name: 'Bench' },
    routingGroups: groups,
    recipientPolicies: [{ name: 'Default', addresses: [{ address: '@bench.example', authoritative: true }] }],
    directory: {
      users: [
        { name: 'Alice', addresses: ['alice@bench.example'], mailbox: { server: server(0, 0) } },
        { name: 'Bob', addresses: ['bob@bench.example'], mailbox: { server: server(1, 0) } },
      ],
      groups: [{ name: 'Sales', members: ['alice@bench.example'] }],
    },
  };
}

function stats(samples: number[]): { mean: number; p50: number; p99: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return {
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    p50: at(0.5),
    p99: at(0.99),
    max: sorted[sorted.length - 1]!,
  };
}

function time(fn: () => RouteDecision): { ms: number; kind: string } {
  const t0 = process.hrtime.bigint();
  const r = fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, kind: r.kind };
}

function main(): void {
  const args = process.argv.slice(2);
  const iterations = Number(args[args.indexOf('--iterations') + 1] ?? 0) || 20_000;
  const random = prng(4);
  const t0 = process.hrtime.bigint();
  const org = organisationSchema.parse(organisation(random));
  const parsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const t1 = process.hrtime.bigint();
  const topology = buildTopology(org);
  const buildMs = Number(process.hrtime.bigint() - t1) / 1e6;
  const servers = topology.servers.map((s) => s.name);
  const rgcs = topology.connectors.filter((c) => c.type === 'routingGroup').length;
  const smtp = topology.connectors.length - rgcs;
  const domains = [
    (i: number) => `mx.d${i % GROUPS}.example`,
    (i: number) => `partner${i % GROUPS}.example`,
    (i: number) => `host${i}.contoso.com`,
    (i: number) => `trey${i}.net`,
    (i: number) => `fabrikam${i}.org`,
    (i: number) => `elsewhere${i}.io`,
  ];
  const senders = ['alice@bench.example', 'bob@bench.example', 'someone@outside.test'].map((address) => ({
    address,
    identities: senderIdentities(org, address),
  }));
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)]!;
  // Warm up the JIT on both paths.
  for (let i = 0; i < 500; i++) {
    routeToServer(topology, pick(servers), pick(servers), random);
    routeToDomain(topology, pick(servers), pick(domains)(i), pick(senders), random);
  }
  const toServer: number[] = [];
  const toDomain: number[] = [];
  const kinds: Record<string, number> = {};
  for (let i = 0; i < iterations; i++) {
    const a = time(() => routeToServer(topology, pick(servers), pick(servers), random));
    toServer.push(a.ms);
    kinds[`server:${a.kind}`] = (kinds[`server:${a.kind}`] ?? 0) + 1;
    const b = time(() => routeToDomain(topology, pick(servers), pick(domains)(i), pick(senders), random));
    toDomain.push(b.ms);
    kinds[`domain:${b.kind}`] = (kinds[`domain:${b.kind}`] ?? 0) + 1;
  }
  const s = stats(toServer);
  const d = stats(toDomain);
  const result = {
    servers: topology.servers.length,
    routingGroups: topology.groups.length,
    connectors: topology.connectors.length,
    routingGroupConnectors: rgcs,
    smtpConnectors: smtp,
    iterations,
    parseMs: parsedMs,
    buildTopologyMs: buildMs,
    routeToServerMs: s,
    routeToDomainMs: d,
    outcomes: kinds,
    node: process.version,
  };
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const f = (n: number) => n.toFixed(3);
  process.stdout.write(
    [
      `organisation: ${result.servers} servers, ${result.routingGroups} routing groups, ${result.connectors} connectors ` +
        `(${rgcs} routing group, ${smtp} SMTP); parse ${f(parsedMs)} ms, build topology ${f(buildMs)} ms`,
      `decisions: ${iterations} of each (${Object.entries(kinds)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')})`,
      `routeToServer  mean ${f(s.mean)} ms  p50 ${f(s.p50)} ms  p99 ${f(s.p99)} ms  max ${f(s.max)} ms`,
      `routeToDomain  mean ${f(d.mean)} ms  p50 ${f(d.p50)} ms  p99 ${f(d.p99)} ms  max ${f(d.max)} ms`,
      `target < 1 ms per decision: ${s.p99 < 1 && d.p99 < 1 ? 'met (p99)' : s.mean < 1 && d.mean < 1 ? 'met (mean), not at p99' : 'NOT met'}`,
      '',
    ].join('\n'),
  );
}

main();
