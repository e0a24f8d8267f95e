// NAME      return connectors: a routing group connector with no connector back
// DESCRIPTION
//   No I/O here. Exchange System Manager offers, when a routing group connector is made,
//   to create the connector in the remote routing group that lets that group send back
//   [003:1656-1668]; Bridgehead reads a file, so `config check` warns instead: for each
//   routing group connector from G to T, T should have a routing group connector to G.
//   The warning names the return connector the guide would create: its local
//   bridgeheads are this one's remote bridgeheads, its remote bridgeheads this one's
//   local bridgeheads (or any server of G when this one names none).
import type { OrganisationConfig } from './schema.js';

interface Problem {
  path: string;
  message: string;
}

export function returnConnectorWarnings(org: OrganisationConfig): Problem[] {
  const warnings: Problem[] = [];
  const groups = org.routingGroups;
  const has = (from: string, to: string) =>
    groups.some(
      (g) =>
        g.name.toLowerCase() === from.toLowerCase() &&
        g.connectors.some((c) => c.type === 'routingGroup' && c.to.toLowerCase() === to.toLowerCase()),
    );
  groups.forEach((group, gi) => {
    group.connectors.forEach((c, ci) => {
      if (c.type !== 'routingGroup') return;
      // A connector to an unknown group is the schema's cross-check's error, not this.
      if (!groups.some((g) => g.name.toLowerCase() === c.to.toLowerCase())) return;
      if (has(c.to, group.name)) return;
      const back = c.localBridgeheads.length ? c.localBridgeheads.join(', ') : `any server of ${group.name}`;
      warnings.push({
        path: `routingGroups[${gi}].connectors[${ci}]`,
        message:
          `routing group connector "${c.name}" goes from ${group.name} to ${c.to}, but ${c.to} has no ` +
          `routing group connector back to ${group.name}: mail from ${c.to} to ${group.name} cannot take ` +
          `this link. The return connector [003:1656]: in ${c.to}, to ${group.name}, local ` +
          `bridgeheads ${c.remoteBridgeheads.join(', ')}, remote bridgeheads ${back}`,
      });
    });
  });
  return warnings;
}
