// NAME      reload plan: what a SIGHUP's new organisation file changes, and when
// DESCRIPTION
//   No I/O here. reloadPlan() compares the running configuration with the new one: routing
//   groups, connectors, costs and the smart host apply at once (a major link state update);
//   everything else (listeners, limits, directory, filters, organisation settings) is read
//   at the next start, and the operator is told which. The server applies the plan.
import type { LoadedConfig } from '../config/load.js';
import { allServers } from '../config/load.js';
import type { RoutingGroupConfig, ServerConfig } from '../config/schema.js';
import { canonical as canonicalJson } from '../linkstate/table.js';

export type ReloadPlan =
  | { ok: false; error: string }
  | { ok: true; server: ServerConfig; group: RoutingGroupConfig; notes: string[]; later: string[] };

const changed = (a: unknown, b: unknown) => canonicalJson(a) !== canonicalJson(b);

/** This server's settings but the smart host (which routing applies at once). */
function serverSettings(server: ServerConfig): unknown {
  const [outbound, ...others] = server.virtualServers;
  const { smartHost: _smartHost, ...delivery } = outbound!.delivery;
  return { ...server, virtualServers: [{ ...outbound, delivery }, ...others] };
}

export function reloadPlan(
  current: LoadedConfig['org'],
  self: ServerConfig,
  next: LoadedConfig['org'],
): ReloadPlan {
  const found = allServers(next).find((s) => s.server.name === self.name);
  if (!found) return { ok: false, error: `server ${self.name} is no longer in the organisation file` };
  const later: string[] = [];
  if (changed(serverSettings(found.server), serverSettings(self)))
    later.push(`this server's settings (${self.name})`);
  if (changed(next.directory, current.directory)) later.push('directory');
  if (changed(next.recipientPolicies, current.recipientPolicies)) later.push('recipient policies');
  if (changed(next.filters, current.filters)) later.push('filters');
  if (changed(next.organisation, current.organisation))
    later.push('organisation settings (limits, secret, link state timers)');
  const notes = ['routing groups, connectors, costs and the smart host apply now'];
  if (later.length) notes.push(`at the next start: ${later.join(', ')}`);
  return { ok: true, server: found.server, group: found.group, notes, later };
}
