// Routing decisions [003:30-180, 430-590, 1345-1862], pure functions of the topology and
// its link state: which connector a recipient's domain takes, which routing group path
// internal mail follows, and which server is the next hop. No I/O here.
//
// RULES
//   - The most specific address space wins: exact domain over "*.sub.example.com" over
//     "*.com" over "*"; cost decides only between equally specific spaces.
//   - Never fall back from a specific address space to a less specific one: when every
//     connector for the best match is down, or excludes this sender, the mail waits.
//   - Internal paths: least total cost over routing group connectors (Dijkstra); the next
//     hop is a bridgehead of the first connector on the path.
//   - Equal-cost connectors: a stable choice per server; several bridgeheads of one
//     connector: a random one that is up.
import { createHash } from 'node:crypto';

export interface AddressSpace {
  type: string;
  pattern: string;
  cost: number;
}

export interface ConnectorView {
  name: string;
  type: 'routingGroup' | 'smtp';
  /** Routing group the connector belongs to (its source). */
  group: string;
  cost: number;
  /** Routing group connector: the group it leads to. */
  to?: string;
  addressSpaces: AddressSpace[];
  /** SMTP connector: routing groups it connects (treated like a routing group connector). */
  connectedRoutingGroups: string[];
  scope: 'organisation' | 'routingGroup';
  /** Empty: any server of the group may send over it. */
  localBridgeheads: string[];
  remoteBridgeheads: string[];
  smartHosts: string[];
  restrictions: { enabled: boolean; acceptFrom: string[]; rejectFrom: string[] };
  /** Content restrictions: priorities, system / non-system messages, size [003:4752-4811]. */
  content?: {
    priorities: ('high' | 'normal' | 'low')[];
    systemMessages: boolean;
    nonSystemMessages: boolean;
    maxSizeKb: number | null;
  };
  state: 'up' | 'down';
}

export interface ServerView {
  name: string;
  group: string;
  up: boolean;
}

export interface Topology {
  groups: string[];
  servers: ServerView[];
  connectors: ConnectorView[];
}

export type RouteDecision =
  | {
      kind: 'connector';
      connector: ConnectorView;
      /** Address-space cost plus the path cost to reach the connector's group. */
      totalCost: number;
      /** The server to hand the message to; this server itself when it sends over the connector. */
      nextHop: string;
      path: string[];
      why: string[];
    }
  | { kind: 'none'; why: string[] }
  | { kind: 'unreachable'; why: string[] }
  | { kind: 'restricted'; why: string[] };

/** Specificity of `pattern` for `domain`; -1 when it does not match. */
export function addressSpaceMatch(pattern: string, domain: string): number {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (p === '*') return 0;
  if (p.startsWith('*.')) {
    const suffix = p.slice(1); // ".example.com"
    return d.endsWith(suffix) && d.length > suffix.length ? suffix.length : -1;
  }
  if (p.startsWith('*')) {
    // "*example.com" style: treat as a suffix without the dot boundary
    const suffix = p.slice(1);
    return d.endsWith(suffix) ? suffix.length : -1;
  }
  return p === d ? 100_000 + p.length : -1;
}

/** "SMTP:*.net:20" → { type, pattern, cost }. */
export function parseAddressSpace(spec: string | AddressSpace): AddressSpace {
  if (typeof spec !== 'string') return spec;
  const [type = 'SMTP', pattern = '*', cost = '1'] = spec.split(':');
  return { type: type.toUpperCase(), pattern, cost: Number(cost) };
}

/** MD5s stablePick has computed (pure function of its input; bounded). */
const pickHashes = new Map<string, string>();

function pickHash(text: string): string {
  let h = pickHashes.get(text);
  if (h === undefined) {
    if (pickHashes.size >= 100_000) pickHashes.clear();
    h = createHash('md5').update(text).digest('hex');
    pickHashes.set(text, h);
  }
  return h;
}

/** Stable per-server choice among equals (hash of server and candidate). */
export function stablePick<T>(server: string, items: T[], key: (t: T) => string): T {
  let best = items[0] as T;
  let bestHash = '';
  for (const item of items) {
    const h = pickHash(`${server}|${key(item)}`);
    if (!bestHash || h < bestHash) {
      best = item;
      bestHash = h;
    }
  }
  return best;
}

/** The server named `name` (case-insensitive); the length check spares most lower-casing. */
function findServer(t: Topology, name: string): ServerView | undefined {
  const lower = name.toLowerCase();
  for (const s of t.servers) if (s.name.length === lower.length && s.name.toLowerCase() === lower) return s;
  return undefined;
}

function groupOf(t: Topology, server: string): string | undefined {
  return findServer(t, server)?.group;
}

function serverUp(t: Topology, name: string): boolean {
  return findServer(t, name)?.up ?? false;
}

export interface PathResult {
  cost: number;
  groups: string[];
  first?: ConnectorView;
}

interface Graph {
  /** What the graph was built from, to notice a topology edited in place. */
  built: { c: ConnectorView; type: string; group: string; to?: string; cost: number; connected: string }[];
  index: Map<string, number>;
  names: string[];
  /** Outgoing edges per routing group, whatever their connector's state (read when used). */
  outgoing: { to: number; cost: number; connector: ConnectorView }[][];
}

/** The routing group graph of a topology, built once per topology (checked, not trusted). */
const graphs = new WeakMap<ConnectorView[], Graph>();

function graphOf(t: Topology): Graph {
  const cached = graphs.get(t.connectors);
  if (
    cached &&
    cached.built.length === t.connectors.length &&
    cached.built.every(
      (b, i) =>
        b.c === t.connectors[i] &&
        b.type === b.c.type &&
        b.group === b.c.group &&
        b.to === b.c.to &&
        b.cost === b.c.cost &&
        b.connected === (b.c.connectedRoutingGroups.length ? b.c.connectedRoutingGroups.join('\n') : ''),
    )
  )
    return cached;
  const index = new Map<string, number>();
  const names: string[] = [];
  const id = (g: string): number => {
    let i = index.get(g);
    if (i === undefined) {
      i = names.length;
      names.push(g);
      index.set(g, i);
    }
    return i;
  };
  const outgoing: Graph['outgoing'] = [];
  const edge = (from: string, to: string, c: ConnectorView) =>
    (outgoing[id(from)] ??= []).push({ to: id(to), cost: c.cost, connector: c });
  for (const c of t.connectors) {
    if (c.type === 'routingGroup' && c.to) edge(c.group, c.to, c);
    if (c.type === 'smtp') for (const g of c.connectedRoutingGroups) edge(c.group, g, c);
  }
  const graph: Graph = {
    built: t.connectors.map((c) => ({
      c,
      type: c.type,
      group: c.group,
      to: c.to,
      cost: c.cost,
      connected: c.connectedRoutingGroups.length ? c.connectedRoutingGroups.join('\n') : '',
    })),
    index,
    names,
    outgoing,
  };
  graphs.set(t.connectors, graph);
  return graph;
}

/** A least-cost path; the list of groups is written out only when asked for. */
class Path implements PathResult {
  constructor(
    readonly cost: number,
    readonly first: ConnectorView | undefined,
    private readonly node: number,
    private readonly prev: Int32Array,
    private readonly names: string[],
  ) {}

  get groups(): string[] {
    const out: string[] = [];
    for (let x = this.node; x !== -1; x = this.prev[x]!) out.push(this.names[x]!);
    return out.reverse();
  }
}

interface Search {
  names: string[];
  source: number;
  index: Map<string, number>;
  cost: Float64Array;
  first: (ConnectorView | undefined)[];
  prev: Int32Array;
}

/** The least-cost path to routing group `group` a search found, if it reached it. */
function pathTo(s: Search, group: string): PathResult | undefined {
  const x = group === s.names[s.source] ? s.source : s.index.get(group);
  if (x === undefined || s.cost[x] === Infinity) return undefined;
  return new Path(s.cost[x]!, s.first[x], x, s.prev, s.names);
}

/**
 * Least-cost paths from `from` to every routing group (Dijkstra over up connectors); with
 * `targets`, it stops once the paths to those groups are final.
 */
export function shortestPaths(
  t: Topology,
  from: string,
  selfServer?: string,
  targets?: Iterable<string>,
): Map<string, PathResult> {
  const s = search(t, from, selfServer, targets);
  const dist = new Map<string, PathResult>();
  for (let x = 0; x < s.cost.length; x++)
    if (s.cost[x] !== Infinity) dist.set(s.names[x]!, new Path(s.cost[x]!, s.first[x], x, s.prev, s.names));
  return dist;
}

function search(t: Topology, from: string, selfServer?: string, targets?: Iterable<string>): Search {
  const g = graphOf(t);
  const n = g.names.length + 1;
  // `from` may be a group no connector touches: it gets the spare last slot.
  const source = g.index.get(from) ?? n - 1;
  const names = g.index.has(from) ? g.names : [...g.names, from];
  let wanted = 0;
  const want = new Uint8Array(n);
  if (targets) {
    for (const name of targets) {
      const i = name === from ? source : g.index.get(name);
      if (i !== undefined && !want[i]) {
        want[i] = 1;
        wanted++;
      }
    }
  }
  const cost = new Float64Array(n).fill(Infinity);
  const first = new Array<ConnectorView | undefined>(n).fill(undefined);
  const prev = new Int32Array(n).fill(-1);
  const done = new Uint8Array(n);
  // Order of discovery: among groups of equal cost, the one found first is taken first.
  const seq = new Int32Array(n);
  let discovered = 0;
  cost[source] = 0;
  seq[source] = discovered++;
  // Binary min-heap of (cost, group) in two arrays, ordered by cost then discovery; stale
  // entries are skipped when popped. Every edge costs at least 1, so all equal-cost
  // candidates for a group are seen before it is done.
  const heapCost: number[] = [0];
  const heapNode: number[] = [source];
  const before = (ca: number, a: number, cb: number, b: number) =>
    ca < cb || (ca === cb && seq[a]! < seq[b]!);
  const push = (c: number, node: number) => {
    let i = heapCost.length;
    heapCost.push(c);
    heapNode.push(node);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(c, node, heapCost[parent]!, heapNode[parent]!)) break;
      heapCost[i] = heapCost[parent]!;
      heapNode[i] = heapNode[parent]!;
      i = parent;
    }
    heapCost[i] = c;
    heapNode[i] = node;
  };
  const searching = !targets || wanted > 0;
  while (searching && heapCost.length) {
    const c0 = heapCost[0]!;
    const current = heapNode[0]!;
    const lastCost = heapCost.pop()!;
    const lastNode = heapNode.pop()!;
    if (heapCost.length) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= heapCost.length) break;
        const r = l + 1;
        const m =
          r < heapCost.length && before(heapCost[r]!, heapNode[r]!, heapCost[l]!, heapNode[l]!) ? r : l;
        if (!before(heapCost[m]!, heapNode[m]!, lastCost, lastNode)) break;
        heapCost[i] = heapCost[m]!;
        heapNode[i] = heapNode[m]!;
        i = m;
      }
      heapCost[i] = lastCost;
      heapNode[i] = lastNode;
    }
    if (done[current] || c0 !== cost[current]) continue;
    done[current] = 1;
    if (want[current] && --wanted === 0) break;
    const here = cost[current]!;
    // Equal-cost edges to the same group: stable choice per server.
    for (const e of g.outgoing[current] ?? []) {
      if (e.connector.state !== 'up') continue;
      const cand = here + e.cost;
      const firstHop = first[current] ?? e.connector;
      const prior = cost[e.to]!;
      if (cand < prior) {
        if (prior === Infinity) seq[e.to] = discovered++;
        cost[e.to] = cand;
        first[e.to] = firstHop;
        prev[e.to] = current;
        push(cand, e.to);
      } else if (cand === prior && !done[e.to] && selfServer && first[e.to]) {
        const pick = stablePick(selfServer, [first[e.to]!, firstHop], (c) => c.name);
        if (pick !== first[e.to]) {
          first[e.to] = firstHop;
          prev[e.to] = current;
        }
      }
    }
  }
  return { names, source, index: g.index, cost, first, prev };
}

function bridgeheadsUp(t: Topology, names: string[]): string[] {
  return names.map((n) => n.split('/')[0]!).filter((n) => serverUp(t, n));
}

/** The server to give a message to for the first hop of a path, seen from `self`. */
function firstHopServer(
  t: Topology,
  self: string,
  connector: ConnectorView,
  random: () => number,
): string | undefined {
  const locals = connector.localBridgeheads.map((n) => n.split('/')[0]!);
  const iAmBridgehead = locals.length === 0 || locals.some((n) => n.toLowerCase() === self.toLowerCase());
  if (!iAmBridgehead) {
    const up = bridgeheadsUp(t, locals);
    return up.length ? up[Math.floor(random() * up.length)] : undefined;
  }
  if (connector.type === 'routingGroup') {
    const up = bridgeheadsUp(t, connector.remoteBridgeheads);
    return up.length ? up[Math.floor(random() * up.length)] : undefined;
  }
  return self;
}

/** Internal mail: how a message on `self` reaches `targetServer`. */
export function routeToServer(
  t: Topology,
  self: string,
  targetServer: string,
  random = Math.random,
): RouteDecision {
  const from = groupOf(t, self);
  const to = groupOf(t, targetServer);
  if (!from || !to)
    return { kind: 'none', why: [`server ${!from ? self : targetServer} is not in the topology`] };
  if (from === to) {
    return {
      kind: 'connector',
      connector: {
        name: `(within ${from})`,
        type: 'routingGroup',
        group: from,
        cost: 0,
        to,
        addressSpaces: [],
        connectedRoutingGroups: [],
        scope: 'routingGroup',
        localBridgeheads: [],
        remoteBridgeheads: [targetServer],
        smartHosts: [],
        restrictions: { enabled: false, acceptFrom: [], rejectFrom: [] },
        state: 'up',
      },
      totalCost: 0,
      nextHop: targetServer,
      path: [from],
      why: [`${targetServer} is in this routing group (${from}): direct`],
    };
  }
  const p = pathTo(search(t, from, self, [to]), to);
  if (!p || !p.first) return { kind: 'unreachable', why: [`no available path from ${from} to ${to}`] };
  const hop = firstHopServer(t, self, p.first, random);
  if (!hop) return { kind: 'unreachable', why: [`no bridgehead of ${p.first.name} is up`] };
  return {
    kind: 'connector',
    connector: p.first,
    totalCost: p.cost,
    nextHop: hop,
    path: p.groups,
    why: [
      `path ${p.groups.join(' → ')} at cost ${p.cost}`,
      `first connector ${p.first.name}; next hop ${hop}`,
    ],
  };
}

export interface SenderView {
  address: string;
  /** Names and addresses the sender is known by, groups included (for restrictions). */
  identities: string[];
  /** The message, for content restrictions; unknown facts pass them. */
  message?: { size: number; priority: 'high' | 'normal' | 'low'; system: boolean };
}

/** Why a connector's content restrictions exclude the message, if they do. */
export function contentExcludes(c: ConnectorView, m: SenderView['message']): string | undefined {
  if (!c.content || !m) return undefined;
  if (!c.content.priorities.includes(m.priority)) return `${m.priority} priority`;
  if (m.system && !c.content.systemMessages) return 'system message';
  if (!m.system && !c.content.nonSystemMessages) return 'non-system message';
  if (c.content.maxSizeKb !== null && m.size > c.content.maxSizeKb * 1024)
    return `larger than ${c.content.maxSizeKb} KB`;
  return undefined;
}

function restricts(c: ConnectorView, sender: SenderView | undefined): boolean {
  if (!c.restrictions.enabled) return false;
  const ids = new Set((sender?.identities ?? [sender?.address ?? '']).map((s) => s.toLowerCase()));
  const named = (list: string[]) => list.some((x) => ids.has(x.toLowerCase()));
  if (c.restrictions.acceptFrom.length && !named(c.restrictions.acceptFrom)) return true;
  return named(c.restrictions.rejectFrom);
}

/** External mail: the connector for `domain`, from server `self`. */
export function routeToDomain(
  t: Topology,
  self: string,
  domain: string,
  sender?: SenderView,
  random = Math.random,
): RouteDecision {
  const from = groupOf(t, self);
  if (!from) return { kind: 'none', why: [`server ${self} is not in the topology`] };
  const why: string[] = [];
  let best = -1;
  const matches: { c: ConnectorView; space: AddressSpace; score: number }[] = [];
  for (const c of t.connectors) {
    if (c.type !== 'smtp') continue;
    if (c.scope === 'routingGroup' && c.group !== from) continue;
    let top: { space: AddressSpace; score: number } | undefined;
    for (const s of c.addressSpaces) {
      if (s.type !== 'SMTP') continue;
      const score = addressSpaceMatch(s.pattern, domain);
      if (score >= 0 && (!top || score > top.score || (score === top.score && s.cost < top.space.cost))) {
        top = { space: s, score };
      }
    }
    if (top) {
      matches.push({ c, ...top });
      best = Math.max(best, top.score);
    }
  }
  if (!matches.length) return { kind: 'none', why: [`no connector has an address space matching ${domain}`] };
  const specific = matches.filter((m) => m.score === best);
  why.push(
    `most specific address space for ${domain}: ${specific.map((m) => `${m.c.name} (${m.space.pattern})`).join(', ')}`,
  );
  const allowed = specific.filter((m) => !restricts(m.c, sender) && !contentExcludes(m.c, sender?.message));
  if (!allowed.length) {
    const content = specific.map((m) => contentExcludes(m.c, sender?.message)).find(Boolean);
    why.push(
      content
        ? `every such connector refuses this message (${content}); no fall back to a less specific address space`
        : 'every such connector excludes this sender; no fall back to a less specific address space',
    );
    return { kind: 'restricted', why };
  }
  const paths = search(
    t,
    from,
    self,
    allowed.filter((m) => m.c.state === 'up').map((m) => m.c.group),
  );
  const candidates = allowed
    .filter((m) => m.c.state === 'up')
    .map((m) => {
      const p = pathTo(paths, m.c.group);
      return p ? { ...m, total: m.space.cost + p.cost, path: p } : undefined;
    })
    .filter((m): m is NonNullable<typeof m> => m !== undefined);
  if (!candidates.length) {
    why.push(
      'no such connector is available; the mail waits (no fall back to a less specific address space)',
    );
    return { kind: 'unreachable', why };
  }
  const least = Math.min(...candidates.map((c) => c.total));
  const cheapest = candidates.filter((c) => c.total === least);
  const chosen = stablePick(self, cheapest, (c) => c.c.name);
  why.push(
    `least cost ${least} via ${chosen.c.name}${cheapest.length > 1 ? ` (stable choice among ${cheapest.length})` : ''}`,
  );
  let nextHop: string | undefined;
  if (chosen.c.group === from) {
    nextHop = firstHopServer(t, self, chosen.c, random);
  } else {
    nextHop = chosen.path.first ? firstHopServer(t, self, chosen.path.first, random) : undefined;
    why.push(`connector is in ${chosen.c.group}: path ${chosen.path.groups.join(' → ')}`);
  }
  if (!nextHop) {
    why.push('no bridgehead is up');
    return { kind: 'unreachable', why };
  }
  why.push(
    nextHop.toLowerCase() === self.toLowerCase()
      ? 'this server sends over the connector'
      : `next hop ${nextHop}`,
  );
  return {
    kind: 'connector',
    connector: chosen.c,
    totalCost: least,
    nextHop,
    path: chosen.path.groups,
    why,
  };
}

// ---------------------------------------------------------------- connector state

/** A connector is down only when all its bridgeheads are down [003:140, 1834-1844]. */
export function connectorDown(c: ConnectorView, serverUpFn: (name: string) => boolean): boolean {
  if (c.type === 'smtp' && c.smartHosts.length === 0) return false; // DNS-routed: never down
  // "Any local server can send mail over this connector": always in service [003:140].
  if (c.localBridgeheads.length === 0) return false;
  const heads = c.type === 'routingGroup' ? c.remoteBridgeheads : c.localBridgeheads;
  if (heads.length === 0) return false;
  return heads.every((h) => !serverUpFn(h.split('/')[0]!));
}

/**
 * Oscillation damping [003:9040-9050]: a connector that changed state more than once in
 * the window stays up. `history` holds the times (ms) of its state changes.
 */
export function dampedState(
  observed: 'up' | 'down',
  history: number[],
  now: number,
  windowMs = 600_000,
): 'up' | 'down' {
  const recent = history.filter((t) => now - t <= windowMs);
  return recent.length > 1 ? 'up' : observed;
}

/** A leaf routing group (one link, no alternative) keeps its link up [003:6445-6471]. */
export function leafKeepsUp(t: Topology, c: ConnectorView): boolean {
  if (c.type !== 'routingGroup' || !c.to) return false;
  const links = t.connectors.filter(
    (x) => x.type === 'routingGroup' && (x.group === c.group || x.to === c.group),
  );
  const targets = new Set(links.map((x) => (x.group === c.group ? x.to : x.group)));
  return targets.size <= 1;
}
