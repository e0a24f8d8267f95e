// The routing view of the organisation file: routing groups, servers, connectors with
// their address spaces (what the link state table carries), and the names a sender is
// known by for connector restrictions.
import type { OrganisationConfig } from '../config/schema.js';
import { parseAddressSpace, type ConnectorView, type Topology } from './routing.js';

export function buildTopology(
  org: OrganisationConfig,
  serverUp: (name: string) => boolean = () => true,
  connectorState: (name: string) => 'up' | 'down' | undefined = () => undefined,
): Topology {
  const servers = org.routingGroups.flatMap((g) =>
    g.servers.map((s) => ({ name: s.name, group: g.name, up: serverUp(s.name) })),
  );
  // One object literal with every field in the same order for both kinds: routing reads
  // these views thousands of times per decision, and objects of one shape with in-object
  // fields are an order of magnitude faster to read than spread-built ones.
  const connectors: ConnectorView[] = org.routingGroups.flatMap((g) =>
    g.connectors.map((c): ConnectorView => ({
      name: c.name,
      type: c.type,
      group: g.name,
      cost: c.cost,
      to: c.type === 'routingGroup' ? c.to : undefined,
      addressSpaces: c.type === 'smtp' ? c.addressSpaces.map(parseAddressSpace) : [],
      connectedRoutingGroups: c.type === 'smtp' ? c.connectedRoutingGroups : [],
      scope: c.type === 'smtp' ? c.scope : 'organisation',
      localBridgeheads: c.localBridgeheads,
      remoteBridgeheads: c.type === 'routingGroup' ? c.remoteBridgeheads : [],
      smartHosts: c.type === 'smtp' ? c.smartHosts : [],
      restrictions: c.deliveryRestrictions,
      content: c.contentRestrictions,
      state: connectorState(c.name) ?? 'up',
    })),
  );
  return { groups: org.routingGroups.map((g) => g.name), servers, connectors };
}

/** Names a sender is known by: its address, its directory name, and every group it belongs to. */
export function senderIdentities(org: OrganisationConfig, sender: string): string[] {
  const s = sender.toLowerCase();
  const ids = new Set<string>([s]);
  const bare = (a: string) => a.replace(/^smtp:/i, '').toLowerCase();
  for (const u of org.directory.users) {
    if (u.addresses.some((a) => bare(a) === s)) {
      ids.add(u.name.toLowerCase());
      for (const a of u.addresses) ids.add(bare(a));
    }
  }
  // Groups containing any known identity, to a fixed point (nested groups).
  let grew = true;
  while (grew) {
    grew = false;
    for (const g of org.directory.groups) {
      const name = g.name.toLowerCase();
      if (ids.has(name)) continue;
      if (g.members.some((m) => ids.has(bare(m)))) {
        ids.add(name);
        for (const a of g.addresses) ids.add(bare(a));
        grew = true;
      }
    }
  }
  return [...ids];
}
