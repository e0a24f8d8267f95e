// Accepted domains come from recipient policies [003:706-712]: each address template's
// domain, authoritative or not. "@*.example.com" covers every subdomain.
import type { OrganisationConfig } from '../config/schema.js';

export interface AcceptedDomain {
  domain: string;
  authoritative: boolean;
  policy: string;
}

export class AcceptedDomains {
  private readonly exact = new Map<string, AcceptedDomain>();
  private readonly wildcards: AcceptedDomain[] = [];

  constructor(policies: OrganisationConfig['recipientPolicies']) {
    const sorted = [...policies].sort((a, b) => a.priority - b.priority);
    for (const policy of sorted) {
      for (const a of policy.addresses) {
        const domain = a.address
          .slice(a.address.lastIndexOf('@') + 1)
          .toLowerCase()
          .replace(/\.$/, '');
        const entry = { domain, authoritative: a.authoritative, policy: policy.name };
        if (domain.startsWith('*.')) this.wildcards.push({ ...entry, domain: domain.slice(2) });
        else if (!this.exact.has(domain)) this.exact.set(domain, entry);
      }
    }
    // Most specific wildcard first.
    this.wildcards.sort((a, b) => b.domain.length - a.domain.length);
  }

  match(domain: string): AcceptedDomain | undefined {
    const d = domain.toLowerCase();
    return this.exact.get(d) ?? this.wildcards.find((w) => d.endsWith(`.${w.domain}`));
  }

  list(): AcceptedDomain[] {
    return [...this.exact.values(), ...this.wildcards.map((w) => ({ ...w, domain: `*.${w.domain}` }))];
  }
}
