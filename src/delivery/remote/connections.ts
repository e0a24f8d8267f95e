// NAME      connections: how many SMTP sessions a round to one next hop opens
// DESCRIPTION
//   No I/O here. One session per four messages waiting, at least one, never more than the
//   per-next-hop limit, nor more than the server's limit leaves: sessions in use elsewhere
//   and idle cached sessions to other next hops count against it [SPEC §7: 100, 1000].

export interface ConnectionFacts {
  /** Messages in this round. */
  jobs: number;
  /** maxOutboundConnectionsPerDomain. */
  perNextHop: number;
  /** maxOutboundConnections. */
  total: number;
  /** Sessions other rounds hold now. */
  inUse: number;
  /** Idle cached sessions to other next hops. */
  idleElsewhere: number;
}

export function connectionsFor(facts: ConnectionFacts): number {
  return Math.max(
    1,
    Math.min(facts.perNextHop, facts.total - facts.inUse - facts.idleElsewhere, Math.ceil(facts.jobs / 4)),
  );
}
