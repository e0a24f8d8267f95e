// Paths and ESMTP parameters of MAIL FROM / RCPT TO (RFC 5321 §4.1.2, RFC 6531 for UTF-8).
import { TransportError } from './status.js';

export interface ParsedPath {
  /** The mailbox, "" for the null reverse-path. */
  address: string;
  localPart: string;
  domain: string;
  /** Raw ESMTP parameters, keys upper-cased; value undefined for keyword-only. */
  params: Map<string, string | undefined>;
  utf8: boolean;
  /** The path carried a source route ("@a,@b:user@c"), accepted and ignored. */
  sourceRoute?: boolean;
}

// Printable ASCII atext per RFC 5322, plus UTF-8 (checked separately).
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+$/u;
const DOT_ATOM = (s: string) => s.split('.').every((part) => part.length > 0 && ATEXT.test(part));
const QUOTED = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\uffff]|\\[\x20-\x7e])*"$/u;
const LABEL = /^(?!-)[A-Za-z0-9\u0080-\uffff-]{1,63}(?<!-)$/u;

export function isValidDomain(domain: string): boolean {
  if (/^\[.*\]$/.test(domain)) {
    const inner = domain.slice(1, -1);
    return /^\d{1,3}(\.\d{1,3}){3}$/.test(inner) || /^IPv6:[0-9A-Fa-f:.]+$/.test(inner);
  }
  return domain.length <= 255 && domain.split('.').every((l) => LABEL.test(l));
}

export function isValidLocalPart(local: string): boolean {
  return local.length > 0 && local.length <= 64 * 4 && (DOT_ATOM(local) || QUOTED.test(local));
}

/** Splits "<path> params" after "FROM:" or "TO:"; tolerant of a space after the colon. */
function splitPathAndParams(arg: string): { path: string; rest: string } | undefined {
  const s = arg.trimStart();
  if (!s.startsWith('<')) {
    // Bracket-less paths are not RFC 5321; accept a bare mailbox as many clients send one.
    const sp = s.indexOf(' ');
    return sp === -1 ? { path: s, rest: '' } : { path: s.slice(0, sp), rest: s.slice(sp + 1) };
  }
  // Find the closing '>' outside a quoted string.
  let inQuote = false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && inQuote) i++;
    else if (c === '"') inQuote = !inQuote;
    else if (c === '>' && !inQuote) return { path: s.slice(1, i), rest: s.slice(i + 1) };
  }
  return undefined;
}

function parseParams(rest: string, kind: 'sender' | 'recipient'): Map<string, string | undefined> {
  const params = new Map<string, string | undefined>();
  for (const token of rest.trim().split(/\s+/).filter(Boolean)) {
    const eq = token.indexOf('=');
    const key = (eq === -1 ? token : token.slice(0, eq)).toUpperCase();
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) {
      throw new TransportError(501, '5.5.4', `Invalid ${kind} parameter: ${token}`);
    }
    params.set(key, eq === -1 ? undefined : token.slice(eq + 1));
  }
  return params;
}

/**
 * Parses the argument of MAIL ("FROM:<a@b> SIZE=10") or RCPT ("TO:<c@d>").
 * Throws 501 5.1.7 (sender) or 501 5.1.3 (recipient) for a bad address.
 */
export function parsePath(arg: string, kind: 'sender' | 'recipient'): ParsedPath {
  const keyword = kind === 'sender' ? 'FROM:' : 'TO:';
  const status = kind === 'sender' ? '5.1.7' : '5.1.3';
  if (!arg.toUpperCase().startsWith(keyword)) {
    throw new TransportError(
      501,
      '5.5.4',
      `Syntax: ${kind === 'sender' ? 'MAIL FROM:<address>' : 'RCPT TO:<address>'}`,
    );
  }
  const split = splitPathAndParams(arg.slice(keyword.length));
  if (!split) throw new TransportError(501, status, `Invalid address`);
  let path = split.path;
  // A source route "@a,@b:user@c" is accepted and ignored (RFC 5321 §3.3, Appendix C).
  const routeEnd = path.startsWith('@') ? path.indexOf(':') : -1;
  if (path.startsWith('@')) {
    if (routeEnd === -1) throw new TransportError(501, status, 'Invalid address');
    path = path.slice(routeEnd + 1);
  }
  const params = parseParams(split.rest, kind);
  const sourceRoute = routeEnd !== -1;
  // eslint-disable-next-line no-control-regex
  const utf8 = /[^\x00-\x7f]/.test(path);
  if (path === '') {
    if (kind === 'recipient') throw new TransportError(501, status, 'Invalid address');
    return { address: '', localPart: '', domain: '', params, utf8: false };
  }
  const at = path.lastIndexOf('@');
  if (at <= 0) {
    // RFC 5321 allows only "Postmaster" without a domain, and only as a recipient.
    if (kind === 'recipient' && path.toLowerCase() === 'postmaster') {
      return { address: path, localPart: path, domain: '', params, utf8 };
    }
    throw new TransportError(501, status, 'Invalid address');
  }
  const localPart = path.slice(0, at);
  const domain = path.slice(at + 1);
  if (!isValidLocalPart(localPart) || !isValidDomain(domain)) {
    throw new TransportError(501, status, 'Invalid address');
  }
  return { address: path, localPart, domain, params, utf8, ...(sourceRoute ? { sourceRoute } : {}) };
}

/** Decodes xtext (RFC 3461 §4): "+HH" escapes. */
export function decodeXtext(value: string): string {
  return value.replace(/\+([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

export function isValidXtext(value: string): boolean {
  return /^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$/.test(value);
}
