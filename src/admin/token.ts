// NAME      admin token: the administrator's bearer token of the admin API
// SYNOPSIS  tokenMatches(given, expected) · bearerToken(header)
//           await ensureAdminToken(dataDir) · readAdminToken(file) · adminTokenFile(dataDir)
// DESCRIPTION
//   With no adminApi.token configured (and adminApi.open not set), the server makes a random
//   token at its first start and keeps it in <dataDir>/admin.token, mode 0600, reused on
//   every later start: only the server's user (and root) can read it, and the `bridgehead`
//   commands run as that user send it (cli/admin-client.ts). Comparison hashes both sides
//   to equal-length digests and compares those in constant time, so neither the length nor
//   the first wrong byte of a guess shows in the answer's timing.
// SECURITY  a token file readable by others is tightened to 0600 at start.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';

export const ADMIN_TOKEN_FILE = 'admin.token';

export function adminTokenFile(dataDir: string): string {
  return path.join(dataDir, ADMIN_TOKEN_FILE);
}

/** No I/O: true when `given` is `expected`, in time independent of where they differ. */
export function tokenMatches(given: string, expected: string): boolean {
  if (given === '' || expected === '') return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** No I/O: the token of an "Authorization: Bearer <token>" header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer (.+)$/is.exec(header ?? '');
  return m?.[1];
}

export interface AdminTokenFile {
  token: string;
  file: string;
  /** Made at this start (first start, or the file was empty after a crash). */
  created: boolean;
  /** The file was readable by others and is now 0600. */
  tightened: boolean;
}

async function readToken(file: string): Promise<string | undefined> {
  try {
    return (await fsp.readFile(file, 'utf8')).trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The token in <dataDir>/admin.token, made (random, 0600) when there is none yet. */
export async function ensureAdminToken(dataDir: string): Promise<AdminTokenFile> {
  const file = adminTokenFile(dataDir);
  // Two rounds at most: a second process may create the file between our read and write.
  for (let round = 0; round < 2; round++) {
    const existing = await readToken(file);
    if (existing) {
      const mode = (await fsp.stat(file)).mode & 0o777;
      if (mode & 0o077) await fsp.chmod(file, 0o600);
      return { token: existing, file, created: false, tightened: (mode & 0o077) !== 0 };
    }
    // An empty file is a first start cut off before its write: make the token again.
    await fsp.rm(file, { force: true });
    const token = randomBytes(32).toString('base64url');
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    try {
      await fh.writeFile(`${token}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { token, file, created: true, tightened: false };
  }
  throw new Error(`${file} keeps changing under this server: is another server using this data directory?`);
}

/** What a `bridgehead` command finds in a token file: the token, or why there is none. */
export type TokenFileRead = { token: string } | { error: string };

export function readAdminToken(file: string): TokenFileRead {
  try {
    const token = readFileSync(file, 'utf8').trim();
    return token ? { token } : { error: 'empty' };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { error: e.code ?? e.message };
  }
}
