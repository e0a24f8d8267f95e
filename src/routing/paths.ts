// NAME      paths: least-cost routing group paths (Dijkstra) and the first hop on them
// DESCRIPTION  No I/O here. Over routing group connectors that are up, the least total
//   cost from this server's group to every other; the next hop is a bridgehead of the
//   first connector on the path, chosen stably per server [003:1345-1862].
import { stablePick, type ConnectorView, type ServerView, type Topology } from './view.js';

/** The server named `name` (case-insensitive); the length check spares most lower-casing. */
export function findServer(t: Topology, name: string): ServerView | undefined {
  const lower = name.toLowerCase();
  for (const s of t.servers) if (s.name.length === lower.length && s.name.toLowerCase() === lower) return s;
  return undefined;
}

export function groupOf(t: Topology, server: string): string | undefined {
  return findServer(t, server)?.group;
}

export function serverUp(t: Topology, name: string): boolean {
  return findServer(t, name)?.up ?? false;
}

export interface PathResult {
  cost: number;
  groups: string[];
  first?: ConnectorView;
}

export interface Graph {
  /** What the graph was built from, to notice a topology edited in place. */
  built: { c: ConnectorView; type: string; group: string; to?: string; cost: number; connected: string }[];
  index: Map<string, number>;
  names: string[];
  /** Outgoing edges per routing group, whatever their connector's state (read when used). */
  outgoing: { to: number; cost: number; connector: ConnectorView }[][];
}

/** The routing group graph of a topology, built once per topology (checked, not trusted). */
const graphs = new WeakMap<ConnectorView[], Graph>();

export function graphOf(t: Topology): Graph {
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

export interface Search {
  names: string[];
  source: number;
  index: Map<string, number>;
  cost: Float64Array;
  first: (ConnectorView | undefined)[];
  prev: Int32Array;
}

/** The least-cost path to routing group `group` a search found, if it reached it. */
export function pathTo(s: Search, group: string): PathResult | undefined {
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

export function search(t: Topology, from: string, selfServer?: string, targets?: Iterable<string>): Search {
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

export function bridgeheadsUp(t: Topology, names: string[]): string[] {
  return names.map((n) => n.split('/')[0]!).filter((n) => serverUp(t, n));
}

/** The server to give a message to for the first hop of a path, seen from `self`. */
export function firstHopServer(
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
