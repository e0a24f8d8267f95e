// NAME      file modes: which mode each file and directory of the data directory should have
// SYNOPSIS  policy = modePolicy(server); wantedMode(policy, segments, isDirectory)
// DESCRIPTION
//   No I/O here (data-dir.ts applies it). Mail and its metadata are private to the server's
//   user: directories 0700, files 0600. A mailbox store with its own maildir modes (shared
//   with a reader that runs as another user) is the exception: its folders and Maildirs take
//   directoryMode, and the data directory and mailboxes/ get only the search (x) bits that
//   reader needs to pass through, never read: 0710 for a group, 0711 for others.
//   Messages inside a Maildir's tmp/, new/ and cur/ are not walked: there can be very many,
//   and every version has written them 0600 (the store driver sets a shared store's mode).
import type { ServerConfig } from '../config/schema.js';
import { storeFolder } from '../delivery/local/folder-names.js';
import type { MaildirModes } from '../delivery/local/maildir.js';

export interface ModePolicy {
  /** The data directory itself and mailboxes/: 0700 plus search bits for shared stores. */
  passThrough: number;
  /** Maildir modes by store folder name. */
  stores: Map<string, MaildirModes>;
}

export function modePolicy(server: ServerConfig): ModePolicy {
  const stores = new Map<string, MaildirModes>();
  let passThrough = 0o700;
  for (const s of server.mailboxStores) {
    const modes = { directory: s.maildir.directoryMode, file: s.maildir.fileMode };
    stores.set(storeFolder(s.name), modes);
    if (modes.directory & 0o050) passThrough |= 0o010;
    if (modes.directory & 0o005) passThrough |= 0o001;
  }
  return { passThrough, stores };
}

/**
 * The mode a path under the data directory should have (`segments` relative to it; [] is
 * the data directory), and whether to look inside it; undefined: leave it alone.
 */
export function wantedMode(
  policy: ModePolicy,
  segments: readonly string[],
  isDirectory: boolean,
): { mode: number; descend: boolean } | undefined {
  const [top, store, , sub] = segments;
  if (segments.length === 0) return { mode: policy.passThrough, descend: true };
  if (top === 'mailboxes') {
    if (segments.length === 1) return { mode: isDirectory ? policy.passThrough : 0o600, descend: true };
    const modes = policy.stores.get(store!) ?? { directory: 0o700, file: 0o600 };
    if (!isDirectory) return segments.length >= 5 ? undefined : { mode: modes.file, descend: false };
    // mailboxes/<store>/<mailbox>/<tmp|new|cur>: the directory, not the messages in it.
    const inMaildir = segments.length === 4 && ['tmp', 'new', 'cur'].includes(sub!);
    if (segments.length > 4) return undefined;
    return { mode: modes.directory, descend: !inMaildir };
  }
  return isDirectory ? { mode: 0o700, descend: true } : { mode: 0o600, descend: false };
}
