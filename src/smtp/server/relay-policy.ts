// NAME      relay-policy: may this client relay, and does this recipient need it. No I/O here.
// SYNOPSIS  mayRelay({ permission, authenticated, allowAuthenticated, listMode, clientListed })
//           needsRelay({ localPart, sourceRoute }, localDomain) -> boolean
// DESCRIPTION
//   Relay rights, first answer wins: the user's relay permission from the directory
//   (deny beats allow, resolved at AUTH), then relay.allowAuthenticated for any
//   authenticated session, then the relay list: "only the list" or "all except the list".
//   A recipient needs relaying outside the accepted domains and the relay domains of the
//   connectors this virtual server is a local bridgehead of, and also inside them when
//   its local part routes onward (percent hack, bang path, quoted "@") or its path
//   carried a source route: those tricks are refused to anyone who may not relay.
// SECURITY  an open relay is one wrong answer here; the unit test pins each rule.
// SEE ALSO  directory/directory.ts (permissions), hygiene/README.md (RELAY)
import type { Permission } from '../../directory/directory.js';

export interface RelayRights {
  /** The authenticated user's relay permission; undefined for an anonymous session. */
  permission: Permission | undefined;
  authenticated: boolean;
  /** relay.allowAuthenticated: "allow all computers which successfully authenticate". */
  allowAuthenticated: boolean;
  listMode: 'onlyList' | 'allExcept';
  /** The client's address is on the virtual server's relay list. */
  clientListed: boolean;
}

export function mayRelay(rights: RelayRights): boolean {
  if (rights.permission === 'deny') return false;
  if (rights.permission === 'allow') return true;
  if (rights.authenticated && rights.allowAuthenticated) return true;
  return rights.listMode === 'onlyList' ? rights.clientListed : !rights.clientListed;
}

/**
 * `localDomain`: the recipient's domain is accepted here ("Postmaster" alone always is), or
 * a connector's address space allows relaying to it on this virtual server [003:2939].
 */
export function needsRelay(
  recipient: { localPart: string; sourceRoute?: boolean },
  localDomain: boolean,
): boolean {
  const routed = /[%!@]/.test(recipient.localPart) || recipient.sourceRoute === true;
  return !localDomain || routed;
}
