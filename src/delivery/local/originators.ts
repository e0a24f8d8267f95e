// NAME      originators: the display names a mailbox shows for the From and Sender of a message
// SYNOPSIS  displayNameFor(entry, policy) · originatorPresenter(directory)(envelope, message)
// DESCRIPTION
//   Exchange resolves the sender to its directory entry only for authenticated mail, or
//   for anonymous mail on a virtual server set to "resolve anonymous e-mail"
//   [003:5805-5813, 2987-3068]; the recipient then sees the directory's display name.
//   Here the store shows that: a From or Sender address of the directory gets
//     - the entry's name when the authenticated submitter sends as itself (no "send as"
//       on behalf of others), or when the message came in anonymously on a virtual server
//       with resolveAnonymousEmail and the entry is not hidden from address lists;
//     - no display name at all otherwise, so anonymous mail is never shown as coming from
//       a directory user, whatever name it claims ("ted@example.com will appear in the
//       From line" [003:5809]).
//   Addresses outside the directory are left as written. displayNameFor is pure.
// DIAGNOSTICS  a directory that cannot answer: 451 4.4.3, delivery is tried again.
import type { Directory, DirectoryEntry } from '../../directory/directory.js';
import type { Envelope } from '../../queue/spool.js';
import { TransportError } from '../../message/status.js';
import { originatorAddresses, presentOriginators } from '../../message/originator.js';

export interface ResolutionPolicy {
  /** The message was submitted by an authenticated user (or relayed for one). */
  authenticated: boolean;
  /** That user's directory entry, when it has one. */
  submitter?: DirectoryEntry;
  /** Anonymous mail from a virtual server with resolveAnonymousEmail. */
  resolveAnonymous: boolean;
}

/** A display name, null for the bare address, undefined to leave the mailbox as written. */
export function displayNameFor(
  entry: DirectoryEntry | undefined,
  policy: ResolutionPolicy,
): string | null | undefined {
  if (!entry) return undefined;
  if (policy.authenticated) return policy.submitter?.name === entry.name ? entry.name : null;
  const hidden = entry.kind === 'user' && entry.user.hidden;
  return policy.resolveAnonymous && !hidden ? entry.name : null;
}

type Lookup = Pick<Directory, 'findByAddress' | 'findByName'>;

/** The message as the mailbox shows it: its originators' display names decided above. */
export function originatorPresenter(
  directory: Lookup,
): (envelope: Envelope, message: Buffer) => Promise<Buffer> {
  return async (envelope, message) => {
    const addresses = originatorAddresses(message);
    if (!addresses.length) return message;
    try {
      const login = envelope.client.authenticatedAs;
      const policy: ResolutionPolicy = {
        authenticated: login !== undefined,
        resolveAnonymous: envelope.resolveAnonymousEmail === true,
      };
      const submitter = login
        ? ((await directory.findByAddress(login)) ?? (await directory.findByName(login)))
        : undefined;
      if (submitter) policy.submitter = submitter;
      const names = new Map<string, string | null>();
      for (const address of addresses) {
        const shown = displayNameFor(await directory.findByAddress(address), policy);
        if (shown !== undefined) names.set(address, shown);
      }
      return names.size ? presentOriginators(message, names) : message;
    } catch (err) {
      if (err instanceof TransportError) throw err;
      throw new TransportError(
        451,
        '4.4.3',
        `Directory lookup of the sender failed: ${(err as Error).message}`,
      );
    }
  };
}
