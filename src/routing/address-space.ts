// NAME      address spaces: how specific a connector's address space is for a domain
// DESCRIPTION  No I/O here. An exact domain beats "*.sub.example.com" beats "*.com" beats
//   "*"; a space that does not match scores -1 [003:130-178].
import type { AddressSpace } from './view.js';

/** Specificity of `pattern` for `domain`; -1 when it does not match. */
export function addressSpaceMatch(pattern: string, domain: string): number {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (p === '*') return 0;
  if (p.startsWith('*.')) {
    const suffix = p.slice(1); // ".example.com"
    return d.endsWith(suffix) && d.length > suffix.length ? suffix.length : -1;
  }
  if (p.startsWith('*')) {
    // "*example.com" style: treat as a suffix without the dot boundary
    const suffix = p.slice(1);
    return d.endsWith(suffix) ? suffix.length : -1;
  }
  return p === d ? 100_000 + p.length : -1;
}

/** "SMTP:*.net:20" → { type, pattern, cost }. */
export function parseAddressSpace(spec: string | AddressSpace): AddressSpace {
  if (typeof spec !== 'string') return spec;
  const [type = 'SMTP', pattern = '*', cost = '1'] = spec.split(':');
  return { type: type.toUpperCase(), pattern, cost: Number(cost) };
}
