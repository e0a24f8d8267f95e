// Routing decisions [003:30-180, 430-590, 1345-1862], pure functions of the topology and
// its link state: which connector a recipient's domain takes, which routing group path
// internal mail follows, and which server is the next hop. No I/O here.
//
// RULES
//   - The most specific address space wins: exact domain over "*.sub.example.com" over
//     "*.com" over "*"; cost decides only between equally specific spaces.
//   - Delivery restrictions choose the candidates first: a connector that excludes the
//     sender is not considered for that sender (a non-Sales sender's .net mail takes "*").
//   - Never fall back from a specific address space to a less specific one: when every
//     candidate for the best match is down the mail waits; when its content restrictions
//     refuse the message, an NDR (5.3.4 / 5.7.1).
//   - Internal paths: least total cost over routing group connectors (Dijkstra); the next
//     hop is a bridgehead of the first connector on the path.
//   - Equal-cost connectors: a stable choice per server; several bridgeheads of one
//     connector: a random one that is up.
//
// The routing view's types live in view.ts, address spaces in address-space.ts, least-cost
// paths in paths.ts; this file decides routes to servers and domains, and whether a
// connector is down.
import type { AddressSpace, ConnectorView, RouteDecision, Topology } from './view.js';
import { stablePick } from './view.js';
import { addressSpaceMatch } from './address-space.js';
import { firstHopServer, groupOf, pathTo, search } from './paths.js';

export * from './view.js';
export * from './address-space.js';
export { shortestPaths, type PathResult } from './paths.js';

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
  const excluded: string[] = [];
  for (const c of t.connectors) {
    if (c.type !== 'smtp') continue;
    if (c.scope === 'routingGroup' && c.group !== from) continue;
    // Delivery restrictions choose the candidates first [003:155]: a connector that excludes
    // this sender is not one of its destinations at all, whatever its address space.
    if (restricts(c, sender)) {
      if (c.addressSpaces.some((s) => s.type === 'SMTP' && addressSpaceMatch(s.pattern, domain) >= 0))
        excluded.push(c.name);
      continue;
    }
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
  if (excluded.length)
    why.push(`delivery restrictions exclude this sender from ${excluded.join(', ')}: not candidates`);
  if (!matches.length) {
    if (excluded.length) {
      why.push('every connector for this domain excludes this sender');
      return { kind: 'restricted', why };
    }
    return { kind: 'none', why: [`no connector has an address space matching ${domain}`] };
  }
  const specific = matches.filter((m) => m.score === best);
  why.push(
    `most specific address space for ${domain}: ${specific.map((m) => `${m.c.name} (${m.space.pattern})`).join(', ')}`,
  );
  const allowed = specific.filter((m) => !contentExcludes(m.c, sender?.message));
  if (!allowed.length) {
    const content = specific.map((m) => contentExcludes(m.c, sender?.message)).find(Boolean);
    why.push(
      `every such connector refuses this message (${content}); no fall back to a less specific address space`,
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
 * The next hops mail queued here must not wait for [003:6445-6471]: servers of this group
 * link state marks down; servers of other groups reached only over connectors of this group
 * that are down (or marked down themselves); SMTP connectors marked down. Their queues'
 * mail is routed again (the guide's "reset routes": mail no longer queues on the connector).
 */
export function unusableNextHops(t: Topology, self: string): { servers: string[]; connectors: string[] } {
  const from = groupOf(t, self);
  const servers: string[] = [];
  const key = (n: string) => n.split('/')[0]!.toLowerCase();
  for (const s of t.servers) {
    if (s.name.toLowerCase() === self.toLowerCase()) continue;
    if (!s.up) {
      servers.push(s.name);
      continue;
    }
    if (s.group === from) continue;
    const leading = t.connectors.filter(
      (c) =>
        c.type === 'routingGroup' &&
        c.group === from &&
        c.remoteBridgeheads.some((h) => key(h) === s.name.toLowerCase()),
    );
    if (leading.length && leading.every((c) => c.state === 'down')) servers.push(s.name);
  }
  const connectors = t.connectors.filter((c) => c.type === 'smtp' && c.state === 'down').map((c) => c.name);
  return { servers, connectors };
}
