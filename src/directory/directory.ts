// The directory the categorizer and the virtual server consult. The embedded backend reads
// the organisation file; an LDAP backend implements the same interface.
import type { OrganisationConfig } from '../config/schema.js';
import { verifyPassword } from './passwords.js';
import { parseVerifier, type ScramVerifier } from './scram.js';

type UserConfig = OrganisationConfig['directory']['users'][number];
type ContactConfig = OrganisationConfig['directory']['contacts'][number];
type GroupConfig = OrganisationConfig['directory']['groups'][number];

export type DirectoryEntry =
  | { kind: 'user'; name: string; primaryAddress: string; user: UserConfig }
  | { kind: 'contact'; name: string; primaryAddress: string; contact: ContactConfig }
  | { kind: 'group'; name: string; primaryAddress: string; group: GroupConfig };

export type Permission = 'allow' | 'deny' | 'default';

export interface AuthenticatedIdentity {
  name: string;
  primaryAddress: string;
  /**
   * Submit and relay permissions on the virtual server [003:5336-5457], from the user and
   * every group it belongs to: deny beats allow; relaying needs submit.
   */
  permissions?: { submit: Permission; relay: Permission };
}

function combine(values: Permission[]): Permission {
  return values.includes('deny') ? 'deny' : values.includes('allow') ? 'allow' : 'default';
}

export interface Directory {
  /** The entry that owns this SMTP address (proxy addresses included), case-insensitive. */
  findByAddress(address: string): Promise<DirectoryEntry | undefined>;
  /** The entry with this display name (how groups name their members). */
  findByName(name: string): Promise<DirectoryEntry | undefined>;
  /** SMTP AUTH PLAIN / LOGIN: login is a user's name or any of its addresses. */
  authenticate(login: string, password: string): Promise<AuthenticatedIdentity | undefined>;
  /**
   * SMTP AUTH SCRAM-SHA-256: the stored verifier of the user `login` names (as for
   * authenticate), and who that user is once the client's proof has been checked.
   * undefined: no such user, or one without a SCRAM verifier.
   */
  scramCredentials(login: string): Promise<ScramCredentials | undefined>;
}

export interface ScramCredentials {
  verifier: ScramVerifier;
  identity: AuthenticatedIdentity;
}

/** Strips an "SMTP:" / "smtp:" proxy-address prefix. */
function bare(address: string): string {
  return address.replace(/^smtp:/i, '').toLowerCase();
}

export class EmbeddedDirectory implements Directory {
  private readonly byAddress = new Map<string, DirectoryEntry>();
  private readonly byName = new Map<string, DirectoryEntry>();

  constructor(directory: OrganisationConfig['directory']) {
    const add = (entry: DirectoryEntry, addresses: readonly string[]) => {
      this.byName.set(entry.name.toLowerCase(), entry);
      for (const a of addresses) this.byAddress.set(bare(a), entry);
    };
    for (const user of directory.users) {
      add({ kind: 'user', name: user.name, primaryAddress: bare(user.addresses[0]!), user }, user.addresses);
    }
    for (const contact of directory.contacts) {
      const primary = bare(contact.addresses[0] ?? contact.targetAddress);
      add({ kind: 'contact', name: contact.name, primaryAddress: primary, contact }, contact.addresses);
    }
    for (const group of directory.groups) {
      add(
        { kind: 'group', name: group.name, primaryAddress: bare(group.addresses[0] ?? ''), group },
        group.addresses,
      );
    }
  }

  async findByAddress(address: string): Promise<DirectoryEntry | undefined> {
    return this.byAddress.get(bare(address));
  }

  async findByName(name: string): Promise<DirectoryEntry | undefined> {
    return this.byName.get(name.toLowerCase());
  }

  async authenticate(login: string, password: string): Promise<AuthenticatedIdentity | undefined> {
    const entry = this.userByLogin(login);
    if (!entry?.user.passwordHash) return undefined;
    if (!(await verifyPassword(password, entry.user.passwordHash))) return undefined;
    return this.identityOf(entry);
  }

  async scramCredentials(login: string): Promise<ScramCredentials | undefined> {
    const entry = this.userByLogin(login);
    const verifier = entry?.user.passwordHash ? parseVerifier(entry.user.passwordHash) : undefined;
    return entry && verifier ? { verifier, identity: this.identityOf(entry) } : undefined;
  }

  private userByLogin(login: string): Extract<DirectoryEntry, { kind: 'user' }> | undefined {
    const entry = this.byName.get(login.toLowerCase()) ?? this.byAddress.get(bare(login));
    return entry?.kind === 'user' ? entry : undefined;
  }

  private identityOf(entry: Extract<DirectoryEntry, { kind: 'user' }>): AuthenticatedIdentity {
    const sources = [entry.user.permissions, ...this.groupsOf(entry).map((g) => g.group.permissions)];
    const submit = combine(sources.map((p) => p.submit));
    const relay = submit === 'deny' ? 'deny' : combine(sources.map((p) => p.relay));
    return { name: entry.name, primaryAddress: entry.primaryAddress, permissions: { submit, relay } };
  }

  /** Groups that contain `entry`, directly or through nested groups. */
  private groupsOf(entry: DirectoryEntry): Extract<DirectoryEntry, { kind: 'group' }>[] {
    const groups = [...this.byName.values()].filter(
      (e): e is Extract<DirectoryEntry, { kind: 'group' }> => e.kind === 'group',
    );
    const found = new Set<string>();
    const ids = new Set<string>([entry.name.toLowerCase(), entry.primaryAddress]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const g of groups) {
        if (found.has(g.name)) continue;
        if (g.group.members.some((m) => ids.has(m.toLowerCase()) || ids.has(bare(m)))) {
          found.add(g.name);
          ids.add(g.name.toLowerCase());
          grew = true;
        }
      }
    }
    return groups.filter((g) => found.has(g.name));
  }
}
