// NAME      scram: SCRAM-SHA-256 verifiers and the server side of the SASL exchange
// SYNOPSIS  makeVerifier(password, iterations) · parseVerifier(text) · formatVerifier(v)
//           passwordMatches(password, v) · readClientFirst(text) · serverFirst(first, v, nonce)
//           readClientFinal(text, first, serverFirstMessage) · checkProof(final, v)
// DESCRIPTION
//   No I/O here (computation only). The directory keeps a verifier, never the password:
//   "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64 fields), the
//   format PostgreSQL stores. The same verifier checks a PLAIN or LOGIN password:
//   SaltedPassword -> ClientKey -> StoredKey is recomputed from it and compared.
//   Passwords are prepared with SASLprep (RFC 4013) before hashing, user names too.
//   Every comparison of keys or proofs is constant-time.
// DIAGNOSTICS  a refused message is a ScramFailure carrying the RFC 5802 server-error
//   value (invalid-encoding, extensions-not-supported, channel-binding-not-supported,
//   channel-bindings-dont-match, invalid-proof, other-error).
// STANDARDS RFC 5802 (SCRAM), 7677 (SCRAM-SHA-256), 4013 (SASLprep), 5801 (GS2 header)
// SECURITY  channel binding (-PLUS) is not offered: a client that demands it ("p=") is
//   refused; "y" (client could, server did not offer) is accepted, as §6 allows.
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import saslprep from '@mongodb-js/saslprep';

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
/** RFC 7677 §4: at least 4096. */
export const DEFAULT_ITERATIONS = 4096;
const MAX_ITERATIONS = 10_000_000;
const KEY_LENGTH = 32;

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export type ScramError =
  | 'invalid-encoding'
  | 'extensions-not-supported'
  | 'channel-binding-not-supported'
  | 'channel-bindings-dont-match'
  | 'invalid-proof'
  | 'invalid-username-encoding'
  | 'other-error';

export interface ScramFailure {
  failure: ScramError;
}

const hmac = (key: Buffer, text: string | Buffer) => createHmac('sha256', key).update(text).digest();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const equal = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

/** SASLprep (RFC 4013, stored strings: unassigned code points refused); throws on prohibited input. */
export function prepare(text: string): string {
  return saslprep(text);
}

function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    pbkdf2(prepare(password), salt, iterations, KEY_LENGTH, 'sha256', (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

function keysOf(salted: Buffer): { storedKey: Buffer; serverKey: Buffer } {
  return { storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

/** A new verifier for `password` (random 16-byte salt unless one is given, for tests). */
export async function makeVerifier(
  password: string,
  iterations = DEFAULT_ITERATIONS,
  salt: Buffer = randomBytes(16),
): Promise<ScramVerifier> {
  if (!Number.isInteger(iterations) || iterations < DEFAULT_ITERATIONS || iterations > MAX_ITERATIONS) {
    throw new RangeError(
      `the iteration count must be an integer from ${DEFAULT_ITERATIONS} to ${MAX_ITERATIONS}`,
    );
  }
  return { iterations, salt, ...keysOf(await saltedPassword(password, salt, iterations)) };
}

export function formatVerifier(v: ScramVerifier): string {
  const b64 = (b: Buffer) => b.toString('base64');
  return `${SCRAM_MECHANISM}$${v.iterations}:${b64(v.salt)}$${b64(v.storedKey)}:${b64(v.serverKey)}`;
}

const BASE64 = '[A-Za-z0-9+/]+={0,2}';
const VERIFIER = new RegExp(`^SCRAM-SHA-256\\$(\\d{1,8}):(${BASE64})\\$(${BASE64}):(${BASE64})$`);

/** undefined: not a SCRAM-SHA-256 verifier. */
export function parseVerifier(text: string): ScramVerifier | undefined {
  const m = VERIFIER.exec(text.trim());
  if (!m) return undefined;
  const iterations = Number(m[1]);
  const storedKey = Buffer.from(m[3]!, 'base64');
  const serverKey = Buffer.from(m[4]!, 'base64');
  if (iterations < 1 || storedKey.length !== KEY_LENGTH || serverKey.length !== KEY_LENGTH) return undefined;
  return { iterations, salt: Buffer.from(m[2]!, 'base64'), storedKey, serverKey };
}

/** PLAIN and LOGIN: does `password` produce this verifier's StoredKey? */
export async function passwordMatches(password: string, v: ScramVerifier): Promise<boolean> {
  let salted: Buffer;
  try {
    salted = await saltedPassword(password, v.salt, v.iterations);
  } catch {
    return false; // SASLprep refused it: no stored password can match.
  }
  return equal(keysOf(salted).storedKey, v.storedKey);
}

// ---------------------------------------------------------------- the SASL exchange

export interface ClientFirst {
  /** "n,," / "y,," / "n,a=someone," exactly as sent: c= must echo it in base64. */
  gs2Header: string;
  /** The authorisation identity (a=), "" when none. */
  authzid: string;
  /** The user name (n=), decoded and SASLprep'd. */
  username: string;
  nonce: string;
  bare: string;
}

export interface ClientFinal {
  channelBinding: string;
  nonce: string;
  proof: Buffer;
  withoutProof: string;
}

/** saslname: "=2C" is ",", "=3D" is "="; any other "=" is an encoding error. */
function decodeName(value: string): string | undefined {
  if (/=(?!2C|3D)/.test(value)) return undefined;
  return value.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

export function readClientFirst(text: string): ClientFirst | ScramFailure {
  const m = /^(n|y|p=[^,]*),(a=[^,]*)?,(.*)$/s.exec(text);
  if (!m) return { failure: 'invalid-encoding' };
  const [, flag, authz, bare] = m as unknown as [string, string, string | undefined, string];
  if (flag.startsWith('p=')) return { failure: 'channel-binding-not-supported' };
  const fields = bare.split(',');
  if (fields[0]?.startsWith('m=')) return { failure: 'extensions-not-supported' };
  const [user, nonce] = fields;
  if (!user?.startsWith('n=') || !nonce?.startsWith('r=')) return { failure: 'invalid-encoding' };
  const rawName = decodeName(user.slice(2));
  const authzid = authz ? decodeName(authz.slice(2)) : '';
  if (rawName === undefined || authzid === undefined || !rawName)
    return { failure: 'invalid-username-encoding' };
  let username: string;
  try {
    username = prepare(rawName);
  } catch {
    return { failure: 'invalid-username-encoding' };
  }
  const clientNonce = nonce.slice(2);
  if (!PRINTABLE_NONCE.test(clientNonce)) return { failure: 'invalid-encoding' };
  return { gs2Header: `${flag},${authz ?? ''},`, authzid, username, nonce: clientNonce, bare };
}

/** A fresh server nonce part: 18 random bytes, base64 (printable, no ","). */
export function serverNonce(): string {
  return randomBytes(18).toString('base64');
}

export function serverFirst(
  first: ClientFirst,
  v: Pick<ScramVerifier, 'salt' | 'iterations'>,
  nonce: string,
): string {
  return `r=${first.nonce}${nonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
}

export function readClientFinal(
  text: string,
  first: ClientFirst,
  serverFirstMessage: string,
): ClientFinal | ScramFailure {
  const m = /^(c=[^,]*),(r=[^,]*)((?:,[^,]*)*),p=([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (!m) return { failure: 'invalid-encoding' };
  const [, binding, nonce, extensions, proof] = m as unknown as [string, string, string, string, string];
  const expectedBinding = `c=${Buffer.from(first.gs2Header).toString('base64')}`;
  if (binding !== expectedBinding) return { failure: 'channel-bindings-dont-match' };
  const combined = /^r=([^,]*)/.exec(serverFirstMessage)?.[1];
  if (nonce.slice(2) !== combined) return { failure: 'invalid-proof' };
  return {
    channelBinding: binding,
    nonce: nonce.slice(2),
    proof: Buffer.from(proof, 'base64'),
    withoutProof: `${binding},${nonce}${extensions}`,
  };
}

/** Checks the ClientProof; on success the server-final-message ("v=ServerSignature"). */
export function checkProof(
  first: ClientFirst,
  serverFirstMessage: string,
  final: ClientFinal,
  v: ScramVerifier,
): { serverFinal: string } | ScramFailure {
  const authMessage = `${first.bare},${serverFirstMessage},${final.withoutProof}`;
  const clientSignature = hmac(v.storedKey, authMessage);
  if (final.proof.length !== clientSignature.length) return { failure: 'invalid-proof' };
  const clientKey = Buffer.alloc(clientSignature.length);
  for (let i = 0; i < clientKey.length; i++) clientKey[i] = final.proof[i]! ^ clientSignature[i]!;
  if (!equal(sha256(clientKey), v.storedKey)) return { failure: 'invalid-proof' };
  return { serverFinal: `v=${hmac(v.serverKey, authMessage).toString('base64')}` };
}

const decoySecret = randomBytes(32);

/**
 * A verifier for a user who does not exist or has none: the exchange goes on to fail at the
 * proof, as it would for a wrong password, with a salt that stays the same for that name.
 */
export function decoyVerifier(username: string): ScramVerifier {
  return {
    iterations: DEFAULT_ITERATIONS,
    salt: hmac(decoySecret, `salt:${username.toLowerCase()}`).subarray(0, 16),
    storedKey: randomBytes(KEY_LENGTH),
    serverKey: randomBytes(KEY_LENGTH),
  };
}

export const isFailure = (value: object): value is ScramFailure => 'failure' in value;
