// NAME      smart-hosts: the guide's sanity checks of a smart host [003:4346-4369]
// DESCRIPTION
//   No I/O here. Each smart host of a virtual server (delivery.smartHost) and of an SMTP
//   connector (smartHosts, for each of its local bridgeheads: every server of its routing
//   group when it names none) is checked against the server that sends to it:
//     - an IP address in brackets, [192.0.2.1]: unbracketed is a warning (Bridgehead
//       connects to it as an address; Exchange would look it up as a name);
//     - brackets around something that is not an IP address: an error;
//     - a name should be fully qualified (a warning when it has no dot);
//     - neither this server's own FQDN nor one of its listening addresses (a virtual
//       server's ip:port, 0.0.0.0 counting for loopback): an error, as the mail would loop
//       back (5.3.5). The machine's other addresses are not known offline; remote delivery
//       checks them before each connection (../delivery/remote/loop.ts).
//   Whether a name resolves is asked at start (smartHostNames lists them), not here: the
//   check works offline.
import net from 'node:net';
import { outboundSettings } from './outbound.js';
import { isOwnName, ownIdentity, ownListenerAt } from './own-listeners.js';
import type { OrganisationConfig, ServerConfig } from './schema.js';

interface Problem {
  path: string;
  message: string;
}

export interface SmartHostSpec {
  host: string;
  port: number | undefined;
  bracketed: boolean;
}

/** "[192.0.2.1]", "[192.0.2.1]:2525", "relay.example.com", "relay.example.com:587". */
export function parseSmartHostSpec(spec: string): SmartHostSpec {
  const s = spec.trim();
  const lit = /^\[([^\]]*)\](?::(\d+))?$/.exec(s);
  if (lit) return { host: lit[1]!, port: lit[2] ? Number(lit[2]) : undefined, bracketed: true };
  if (net.isIPv6(s)) return { host: s, port: undefined, bracketed: false };
  const m = /^([^:]+)(?::(\d+))?$/.exec(s);
  return { host: m?.[1] ?? s, port: m?.[2] ? Number(m[2]) : undefined, bracketed: false };
}

/** A virtual server's smart host setting: several hosts separated by spaces, commas or semicolons. */
export function splitSmartHosts(setting: string): string[] {
  return setting.split(/[\s,;]+/).filter(Boolean);
}

/** Problems of one smart host, as sent by `server` (its outbound port by default). */
export function smartHostProblems(
  spec: string,
  server: ServerConfig,
  defaultPort: number,
  who: string,
  /** Names the setting in warnings (they do not depend on the sending server). */
  setting = who,
): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  const sh = parseSmartHostSpec(spec);
  const port = sh.port ?? defaultPort;
  const isIp = net.isIP(sh.host) !== 0;
  if (sh.bracketed && !isIp) {
    errors.push(`${who}: "${spec}" is in brackets but ${sh.host || '(empty)'} is not an IP address`);
    return { errors, warnings };
  }
  if (!sh.bracketed && isIp) {
    warnings.push(`${setting}: write an IP smart host in brackets, [${sh.host}] (the guide's form)`);
  }
  if (!isIp && !sh.host.replace(/\.$/, '').includes('.') && sh.host.toLowerCase() !== 'localhost') {
    warnings.push(`${setting}: "${sh.host}" is not a fully qualified name (relay.example.com)`);
  }
  const identity = ownIdentity(server);
  const address = isIp ? sh.host : sh.host.toLowerCase() === 'localhost' ? '127.0.0.1' : undefined;
  const listener = address ? ownListenerAt(identity, address, port) : undefined;
  if (listener) {
    errors.push(
      `${who}: smart host "${spec}" is ${server.name} itself (virtual server "${listener.virtualServer}" ` +
        `listens on ${listener.ip}:${listener.port}): mail would loop back to this server (5.3.5)`,
    );
  } else if (!isIp && isOwnName(identity, sh.host, port)) {
    errors.push(
      `${who}: smart host "${spec}" is ${server.name}'s own name on port ${port}: ` +
        'mail would loop back to this server (5.3.5)',
    );
  }
  return { errors, warnings };
}

interface Use {
  path: string;
  spec: string;
  server: ServerConfig;
  defaultPort: number;
  who: string;
  setting: string;
}

/** Every smart host with the server that sends to it. */
function smartHostUses(org: OrganisationConfig): Use[] {
  const uses: Use[] = [];
  org.routingGroups.forEach((group, gi) => {
    group.servers.forEach((server, si) => {
      server.virtualServers.forEach((vs, vi) => {
        for (const spec of splitSmartHosts(vs.delivery.smartHost ?? ''))
          uses.push({
            path: `routingGroups[${gi}].servers[${si}].virtualServers[${vi}].delivery.smartHost`,
            spec,
            server,
            defaultPort: vs.delivery.outboundPort,
            who: `${server.name} / virtual server "${vs.name}"`,
            setting: `${server.name} / virtual server "${vs.name}"`,
          });
      });
    });
    group.connectors.forEach((c, ci) => {
      if (c.type !== 'smtp') return;
      const named = c.localBridgeheads.map((b) => b.split('/')[0]!.trim().toLowerCase());
      const senders = named.length
        ? group.servers.filter((s) => named.includes(s.name.toLowerCase()))
        : group.servers;
      c.smartHosts.forEach((spec, hi) => {
        for (const server of senders)
          uses.push({
            path: `routingGroups[${gi}].connectors[${ci}].smartHosts[${hi}]`,
            spec,
            server,
            defaultPort: outboundSettings(server).delivery.outboundPort,
            who: `connector "${c.name}" (bridgehead ${server.name})`,
            setting: `connector "${c.name}"`,
          });
      });
    });
  });
  return uses;
}

export function smartHostCheck(org: OrganisationConfig): { errors: Problem[]; warnings: Problem[] } {
  const errors: Problem[] = [];
  const warnings: Problem[] = [];
  for (const use of smartHostUses(org)) {
    const found = smartHostProblems(use.spec, use.server, use.defaultPort, use.who, use.setting);
    for (const message of found.errors) errors.push({ path: use.path, message });
    // One warning a smart host, however many bridgeheads send to it.
    for (const message of found.warnings)
      if (!warnings.some((w) => w.path === use.path && w.message === message))
        warnings.push({ path: use.path, message });
  }
  return { errors, warnings };
}

/** The smart host names (not IP addresses) `serverName` sends to, for the start-time lookup. */
export function smartHostNames(org: OrganisationConfig, serverName: string): { name: string; who: string }[] {
  const out: { name: string; who: string }[] = [];
  for (const use of smartHostUses(org)) {
    if (use.server.name.toLowerCase() !== serverName.toLowerCase()) continue;
    const sh = parseSmartHostSpec(use.spec);
    if (sh.bracketed || net.isIP(sh.host) || out.some((o) => o.name === sh.host)) continue;
    out.push({ name: sh.host, who: use.who });
  }
  return out;
}
