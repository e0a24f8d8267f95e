// NAME      data directory: made private at start
// SYNOPSIS  report = await makeDataDirPrivate(dataDir, modePolicy(server))
// DESCRIPTION
//   Walks the data directory once at start and sets the mode file-modes.ts wants on every
//   directory and file (messages inside Maildirs excepted): an older version, made with
//   umask 022, left it world-readable. Symbolic links are not followed. A path that cannot
//   be changed (owned by another user, say a shared store's reader) is reported, not fatal.
// SECURITY  the server also runs with umask 077 and creates what it writes with explicit
//           modes, so this walk finds nothing to do on a data directory it made itself.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { wantedMode, type ModePolicy } from './file-modes.js';

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
        await fsp.chmod(file, wanted.mode);
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
