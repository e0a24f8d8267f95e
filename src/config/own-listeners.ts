// NAME      own-listeners: is a next hop this server itself?
// DESCRIPTION
//   No I/O here. The addresses and names this server answers on: each virtual server's
//   ip:port (0.0.0.0 and :: listen on every local address of the machine) and the names it
//   gives in HELO/EHLO (the server's FQDN, a virtual server's delivery.fqdn). Remote
//   delivery asks before it connects (a loop is failed with 5.3.5 [003:7746-7748]), the
//   config check asks of each smart host [003:4346-4369].
import type { ServerConfig } from './schema.js';

export interface Listener {
  ip: string;
  port: number;
  /** The virtual server's name, for messages. */
  virtualServer: string;
}

export interface OwnIdentity {
  listeners: Listener[];
  /** Lower case, without a trailing dot. */
  names: string[];
}

const ANY = new Set(['0.0.0.0', '::', '']);

export function ownIdentity(server: ServerConfig): OwnIdentity {
  const names = [server.fqdn, ...server.virtualServers.map((vs) => vs.delivery.fqdn ?? '')];
  return {
    listeners: server.virtualServers.map((vs) => ({
      ip: vs.ip.trim(),
      port: vs.port,
      virtualServer: vs.name,
    })),
    names: [...new Set(names.map(normalName).filter(Boolean))],
  };
}

export function normalName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/** 127.0.0.0/8 and ::1 are this machine whatever its interfaces. */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/^::ffff:/, '');
  return /^127\./.test(a) || a === '::1';
}

/**
 * The listener that `address:port` reaches, if it is one of ours. `localAddresses`: the
 * machine's own addresses (a wildcard listener answers on each); loopback always counts.
 */
export function ownListenerAt(
  identity: OwnIdentity,
  address: string,
  port: number,
  localAddresses: readonly string[] = [],
): Listener | undefined {
  const a = address.toLowerCase().replace(/^::ffff:/, '');
  const local = isLoopback(a) || localAddresses.some((l) => l.toLowerCase() === a);
  return identity.listeners.find(
    (l) => l.port === port && (l.ip.toLowerCase() === a || (ANY.has(l.ip) && local)),
  );
}

/**
 * A name that is this server's own, on a port it listens on. Another port on this host
 * (a content filter at localhost:10025) is not a loop.
 */
export function isOwnName(identity: OwnIdentity, name: string, port: number): boolean {
  return identity.names.includes(normalName(name)) && identity.listeners.some((l) => l.port === port);
}
