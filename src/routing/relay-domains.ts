// NAME      relay domains: the domains a virtual server accepts for relay because a connector says so
// SYNOPSIS  relayDomainsOf(topology, server, virtualServer) -> string[] (address space patterns)
//           isRelayDomain(patterns, domain) -> boolean
// DESCRIPTION  No I/O here. "Allow messages to be relayed to these domains" on an SMTP
//   connector's address space makes "all SMTP virtual servers that are listed under Local
//   Bridgeheads" accept mail for the space from anyone [003:2939]: the guide's way to accept
//   a partner's domain on chosen bridgeheads only, configured "on each bridgehead server that
//   accepts incoming Internet e-mail" for it [003:2404, 2461]. A bridgehead entry "SERVER"
//   means every virtual server of SERVER, "SERVER/Virtual Server" that one only; a connector
//   without local bridgeheads may be sent over by any server of its routing group, so every
//   virtual server there accepts. Only SMTP spaces count; "*" never does (it would make an
//   open relay, refused when the file is loaded [003:2939, 4548]).
// SEE ALSO  smtp/server/relay-policy.ts (the RCPT decision), config/load.ts ("*" refused)
import { addressSpaceMatch } from './address-space.js';
import type { Topology } from './view.js';

export function relayDomainsOf(topology: Topology, server: string, virtualServer: string): string[] {
  const me = server.toLowerCase();
  const vs = virtualServer.toLowerCase();
  const group = topology.servers.find((s) => s.name.toLowerCase() === me)?.group;
  const patterns: string[] = [];
  for (const c of topology.connectors) {
    if (c.type !== 'smtp') continue;
    const bridgehead =
      c.localBridgeheads.length === 0
        ? c.group === group
        : c.localBridgeheads.some((b) => {
            const [name = '', only] = b.toLowerCase().split('/');
            return name === me && (only === undefined || only === vs);
          });
    if (!bridgehead) continue;
    for (const s of c.addressSpaces) {
      if (s.allowRelay === true && s.type.toUpperCase() === 'SMTP' && s.pattern !== '*')
        patterns.push(s.pattern);
    }
  }
  return patterns;
}

/** `domain` falls within one of the relay address spaces. */
export function isRelayDomain(patterns: readonly string[], domain: string): boolean {
  return domain !== '' && patterns.some((p) => addressSpaceMatch(p, domain) >= 0);
}
