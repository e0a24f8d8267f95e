// NAME      smart-host-names: does each smart host name resolve? (at start)
// DESCRIPTION
//   The guide's last smart host check [003:4346-4369], the one `config check` cannot make
//   offline: each smart host name this server sends to (config/smart-hosts.ts) is looked
//   up (A, then AAAA) through the outbound virtual server's DNS servers. A name that does
//   not resolve is a warning, not a refusal: DNS may be down at start, and mail for it
//   waits in Retry (4.4.3) or fails (5.4.4) as remote delivery decides.
import { makeResolver } from '../delivery/remote/dns.js';
import { outboundSettings } from '../config/outbound.js';
import { smartHostNames } from '../config/smart-hosts.js';
import type { OrganisationConfig, ServerConfig } from '../config/schema.js';

export async function unresolvedSmartHosts(org: OrganisationConfig, server: ServerConfig): Promise<string[]> {
  const names = smartHostNames(org, server.name);
  if (!names.length) return [];
  const resolver = makeResolver(outboundSettings(server).delivery.externalDnsServers, 3000, 1);
  const found = await Promise.all(
    names.map(async ({ name, who }) => {
      for (const lookup of [resolver.resolve4.bind(resolver), resolver.resolve6.bind(resolver)]) {
        try {
          if ((await lookup(name)).length) return undefined;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENODATA' && code !== 'ENOTFOUND')
            return `${who}: smart host ${name}: DNS lookup failed (${code})`;
        }
      }
      return `${who}: smart host ${name} does not resolve (no A or AAAA record)`;
    }),
  );
  return found.filter((w): w is string => w !== undefined);
}
