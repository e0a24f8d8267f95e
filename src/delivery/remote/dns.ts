// Where mail for a domain goes [003:787-1343]: MX records in preference order (random among
// equal preferences), each MX host's A/AAAA addresses in turn; A/AAAA of the domain itself
// when it has no MX. Null MX (RFC 7505) → 5.1.2; NXDOMAIN → 5.4.4; SERVFAIL and time-outs
// → 4.4.3 (transient). Each step is reported so `bridgehead dnsdiag` can show the walk.
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import { TransportError } from '../../smtp/status.js';

export interface MailHost {
  host: string;
  preference: number;
  addresses: string[];
}

export type DnsStep = (line: string) => void;

export function makeResolver(servers: readonly string[], timeoutMs = 5000, tries = 2): Resolver {
  const r = new Resolver({ timeout: timeoutMs, tries });
  if (servers.length) r.setServers(servers.map((s) => s.trim()));
  return r;
}

function classify(err: NodeJS.ErrnoException, what: string): TransportError | 'nodata' {
  switch (err.code) {
    case 'ENODATA':
      return 'nodata';
    case 'ENOTFOUND':
      return new TransportError(550, '5.4.4', `${what}: the domain does not exist (NXDOMAIN)`);
    default:
      return new TransportError(451, '4.4.3', `${what}: DNS lookup failed (${err.code ?? err.message})`);
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** A and AAAA of a host; IPv4 first. Empty when the host has neither. */
export async function hostAddresses(resolver: Resolver, host: string, step: DnsStep): Promise<string[]> {
  if (net.isIP(host)) return [host];
  const out: string[] = [];
  for (const [kind, fn] of [
    ['A', (h: string) => resolver.resolve4(h)],
    ['AAAA', (h: string) => resolver.resolve6(h)],
  ] as const) {
    try {
      const addrs = await fn(host);
      step(`${kind} ${host} → ${addrs.join(', ')}`);
      out.push(...addrs);
    } catch (err) {
      const c = classify(err as NodeJS.ErrnoException, `${kind} ${host}`);
      step(`${kind} ${host} → ${c === 'nodata' ? 'no records' : c.message}`);
      if (c !== 'nodata' && c.status === '4.4.3' && !out.length && kind === 'AAAA') throw c;
    }
  }
  return out;
}

/** The ordered list of hosts to try for `domain`. */
export async function resolveMailHosts(
  resolver: Resolver,
  domain: string,
  step: DnsStep = () => undefined,
): Promise<MailHost[]> {
  let mx: { exchange: string; priority: number }[] = [];
  try {
    mx = await resolver.resolveMx(domain);
    step(`MX ${domain} → ${mx.map((m) => `${m.priority} ${m.exchange || '.'}`).join(', ') || 'none'}`);
  } catch (err) {
    const c = classify(err as NodeJS.ErrnoException, `MX ${domain}`);
    step(`MX ${domain} → ${c === 'nodata' ? 'no MX records' : c.message}`);
    if (c !== 'nodata') throw c;
  }
  if (mx.some((m) => m.exchange === '' || m.exchange === '.')) {
    if (mx.length === 1) {
      throw new TransportError(550, '5.1.2', `${domain} does not accept mail (null MX, RFC 7505)`);
    }
    mx = mx.filter((m) => m.exchange !== '' && m.exchange !== '.');
  }
  if (!mx.length) {
    // No MX: the domain itself is the mail host (RFC 5321 §5.1).
    const addresses = await hostAddresses(resolver, domain, step);
    if (!addresses.length)
      throw new TransportError(550, '5.4.4', `${domain} has no MX and no address records`);
    return [{ host: domain, preference: 0, addresses }];
  }
  const byPref = new Map<number, string[]>();
  for (const m of mx) byPref.set(m.priority, [...(byPref.get(m.priority) ?? []), m.exchange]);
  const hosts: MailHost[] = [];
  for (const pref of [...byPref.keys()].sort((a, b) => a - b)) {
    for (const host of shuffle(byPref.get(pref)!)) {
      const addresses = await hostAddresses(resolver, host, step).catch(() => [] as string[]);
      hosts.push({ host, preference: pref, addresses });
    }
  }
  step(`order: ${hosts.map((h) => `${h.host} [${h.addresses.join(' ') || 'no address'}]`).join(' → ')}`);
  if (!hosts.some((h) => h.addresses.length)) {
    throw new TransportError(451, '4.4.3', `no MX host of ${domain} has an address`);
  }
  return hosts;
}

/** "[192.0.2.1]", "[192.0.2.1]:2525", "smart.example.com" or "smart.example.com:587". */
export function parseSmartHost(
  spec: string,
  defaultPort: number,
): { host: string; port: number; literal: boolean } {
  const s = spec.trim();
  const lit = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (lit) return { host: lit[1]!, port: lit[2] ? Number(lit[2]) : defaultPort, literal: true };
  const m = /^([^:]+)(?::(\d+))?$/.exec(s);
  return { host: m?.[1] ?? s, port: m?.[2] ? Number(m[2]) : defaultPort, literal: false };
}
