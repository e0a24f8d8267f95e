// NAME      domains: whether an address belongs to a domain
// DESCRIPTION  No I/O here. An address is in a domain when its domain is that domain or a
//   subdomain of it, without regard to case (ETRN, ATRN and TURN name domains this way).

export function addressInDomain(address: string, domain: string): boolean {
  const a = address.toLowerCase();
  const d = domain.toLowerCase();
  return a.endsWith(`@${d}`) || a.endsWith(`.${d}`);
}
