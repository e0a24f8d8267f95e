// NAME      data directory: made private at start
// SYNOPSIS  report = await makeDataDirPrivate(dataDir, modePolicy(server))
//           old = await legacyMaildirs(dataDir, mailboxes)
// DESCRIPTION
//   Walks the data directory once at start and sets the mode file-modes.ts wants on every
//   directory and file (messages inside Maildirs excepted): an older version, made with
//   umask 022, left it world-readable. Symbolic links are not followed. A path that cannot
//   be changed (owned by another user, say a shared store's reader) is reported, not fatal.
//   legacyMaildirs() finds Maildirs still under the folder name an older version gave an
//   address outside [A-Za-z0-9@._+-]; the operator moves them (docs/operations.md).
// SECURITY  the server also runs with umask 077 and creates what it writes with explicit
//           modes, so this walk finds nothing to do on a data directory it made itself.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { wantedMode, type ModePolicy } from './file-modes.js';
import { legacyMailboxFolder, mailboxFolder, storeFolder } from '../delivery/local/folder-names.js';

export interface PrivacyReport {
  /** Paths that were readable, writable or searchable by others and no longer are. */
  tightened: string[];
  /** Paths whose mode changed otherwise (e.g. a shared store's directoryMode). */
  changed: string[];
  failed: { path: string; error: string }[];
}

/** Deeper than the layout ever goes: a link loop or a stray tree cannot keep the walk going. */
const MAX_DEPTH = 12;

export async function makeDataDirPrivate(dataDir: string, policy: ModePolicy): Promise<PrivacyReport> {
  const report: PrivacyReport = { tightened: [], changed: [], failed: [] };
  const visit = async (file: string, segments: string[]): Promise<void> => {
    let st;
    try {
      st = await fsp.lstat(file);
    } catch (err) {
      report.failed.push({ path: file, error: (err as NodeJS.ErrnoException).code ?? String(err) });
      return;
    }
    if (st.isSymbolicLink()) return;
    const wanted = wantedMode(policy, segments, st.isDirectory());
    if (!wanted) return;
    const mode = st.mode & 0o777;
    if (mode !== wanted.mode) {
      try {
        // A directory's setgid bit (its files inherit its group) is the operator's: kept.
        await fsp.chmod(file, wanted.mode | (st.isDirectory() ? st.mode & 0o2000 : 0));
        (mode & 0o077 & ~wanted.mode ? report.tightened : report.changed).push(file);
      } catch (err) {
        report.failed.push({ path: file, error: (err as NodeJS.ErrnoException).code ?? String(err) });
      }
    }
    if (!st.isDirectory() || !wanted.descend || segments.length >= MAX_DEPTH) return;
    for (const name of await fsp.readdir(file)) await visit(path.join(file, name), [...segments, name]);
  };
  await visit(dataDir, []);
  return report;
}

/** A Maildir under the folder name used before names were injective (folder-names.ts). */
export interface LegacyMaildir {
  /** mailboxes/<store>/<old name>, relative to the data directory. */
  legacy: string;
  /** Where each owner's mail goes now, relative to the data directory. */
  owners: { name: string; address: string; current: string }[];
}

/**
 * Old-named Maildirs still on disk for the given mailboxes: their mail is not lost but is
 * no longer where the mailbox is read. Several owners: the old folder mixed their mail.
 */
export async function legacyMaildirs(
  dataDir: string,
  mailboxes: { name: string; address: string; store: string }[],
): Promise<LegacyMaildir[]> {
  const byLegacy = new Map<string, LegacyMaildir>();
  for (const m of mailboxes) {
    const store = path.join('mailboxes', storeFolder(m.store));
    const legacy = path.join(store, legacyMailboxFolder(m.address));
    const current = path.join(store, mailboxFolder(m.address));
    if (legacy === current) continue;
    const entry = byLegacy.get(legacy) ?? { legacy, owners: [] };
    entry.owners.push({ name: m.name, address: m.address, current });
    byLegacy.set(legacy, entry);
  }
  const found: LegacyMaildir[] = [];
  for (const entry of byLegacy.values()) {
    const st = await fsp.stat(path.join(dataDir, entry.legacy)).catch(() => undefined);
    if (st?.isDirectory()) found.push(entry);
  }
  return found;
}
