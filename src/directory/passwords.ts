// NAME      passwords: the stored form of a user's SMTP AUTH password
// DESCRIPTION
//   hashPassword() makes a SCRAM-SHA-256 verifier (scram.ts), the one stored form that
//   serves SCRAM, PLAIN and LOGIN; the password itself is never stored. verifyPassword()
//   also reads the scrypt hashes ("scrypt$N$r$p$salt$hash") that earlier versions wrote:
//   they still check PLAIN and LOGIN, but cannot serve SCRAM until the password is set again.
// SECURITY  comparisons are constant-time; PBKDF2 and scrypt run off the event loop.
import { scrypt, timingSafeEqual } from 'node:crypto';
import {
  DEFAULT_ITERATIONS,
  formatVerifier,
  makeVerifier,
  parseVerifier,
  passwordMatches,
  prepare,
} from './scram.js';

/** Throws a RangeError with a clear message when SASLprep refuses the password. */
export async function hashPassword(password: string, iterations = DEFAULT_ITERATIONS): Promise<string> {
  try {
    prepare(password);
  } catch {
    throw new RangeError('the password contains a character SASLprep (RFC 4013) prohibits');
  }
  return formatVerifier(await makeVerifier(password, iterations));
}

/** Is `stored` a form verifyPassword() reads? */
export function isStoredPassword(stored: string): boolean {
  return parseVerifier(stored) !== undefined || parseScrypt(stored) !== undefined;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const verifier = parseVerifier(stored);
  if (verifier) return passwordMatches(password, verifier);
  const legacy = parseScrypt(stored);
  if (!legacy) return false;
  const key = await new Promise<Buffer>((resolve, reject) =>
    scrypt(
      password,
      legacy.salt,
      legacy.hash.length,
      { N: legacy.n, r: legacy.r, p: legacy.p, maxmem: 64 * 1024 * 1024 },
      (err, derived) => (err ? reject(err) : resolve(derived)),
    ),
  );
  return key.length === legacy.hash.length && timingSafeEqual(key, legacy.hash);
}

function parseScrypt(stored: string) {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0)) return undefined;
  const hash = Buffer.from(parts[5]!, 'base64');
  return hash.length ? { n, r, p, salt: Buffer.from(parts[4]!, 'base64'), hash } : undefined;
}
