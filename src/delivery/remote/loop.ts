// NAME      loop: a next hop that is this server itself
// DESCRIPTION
//   No I/O here. Before a connection, the candidate hosts of a next hop that are this
//   server (its FQDN, or an address and port one of its virtual servers listens on:
//   ../../config/own-listeners.ts) are dropped. Among MX hosts, as RFC 5321 §5.1 says,
//   every host of the same or a worse preference goes with it (this server is a backup MX:
//   only better ones may take the mail). Nothing left: the mail would circle back to this
//   server until its hop count ran out, so it fails at once with 5.3.5, Exchange's code
//   for "the server is configured to loop mail back to itself" [003:7746-7748].
import { TransportError } from '../../message/status.js';
import { isOwnName, ownListenerAt, type OwnIdentity } from '../../config/own-listeners.js';

export interface Hop {
  host: string;
  address: string;
  port: number;
  /** MX preference; smart hosts and organisation servers have none. */
  preference?: number;
}

export interface Self {
  identity: OwnIdentity;
  /** The machine's own addresses (a 0.0.0.0 listener answers on each). */
  localAddresses: readonly string[];
}

/** Why `hop` is this server, or undefined when it is another. */
export function loopReason(hop: Hop, self: Self): string | undefined {
  const listener = ownListenerAt(self.identity, hop.address, hop.port, self.localAddresses);
  if (listener) {
    return `${hop.host} [${hop.address}]:${hop.port} is this server (virtual server "${listener.virtualServer}")`;
  }
  if (isOwnName(self.identity, hop.host, hop.port)) return `${hop.host} is this server's own name`;
  return undefined;
}

/** The hops that are not this server; a 5.3.5 error when none is left. */
export function withoutLoops<T extends Hop>(hops: readonly T[], self: Self): T[] {
  let kept = [...hops];
  let reason: string | undefined;
  for (const hop of hops) {
    const why = loopReason(hop, self);
    if (!why) continue;
    reason ??= why;
    const worst = hop.preference;
    kept = kept.filter((h) =>
      worst === undefined || h.preference === undefined ? h !== hop : h.preference < worst,
    );
  }
  if (!kept.length && reason) {
    throw new TransportError(
      554,
      '5.3.5',
      `Mail loop detected: ${reason}; check the smart host and MX records`,
    );
  }
  return kept;
}
