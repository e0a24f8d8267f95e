// NAME      ldap-directory: the Directory interface over LDAP (OpenLDAP, 389-ds, Active Directory)
// SYNOPSIS  dir = new LdapDirectory(config, { serverName, bindPassword }); await dir.findByAddress(a)
//           await dir.findByName(nameOrDn); await dir.authenticate(login, password); dir.counters
// DESCRIPTION
//   Entries are searched under baseDn through a small pool (ldap-pool.ts) and mapped to the
//   YAML backend's model (ldap-map.ts). A name that is a DN is read directly: that is how
//   group members, altRecipient and authOrig name entries, so nested groups need nothing
//   more. A dynamic group's members are searched when the group is read.
//   Answers are cached: found entries for cache.ttlSeconds, "no such entry" for
//   cache.negativeTtlSeconds. A failure is never cached.
// DIAGNOSTICS  the directory cannot answer -> DirectoryUnavailableError (451 4.4.3); SMTP AUTH
//   then answers 454 4.7.0. Nothing is ever "not found" because the directory failed.
// SECURITY  user passwords are checked by binding as the user's DN on a connection of its
//   own (or against the passwordHash attribute); filters escape every value (RFC 4515).
import { NoSuchObjectError, type Client } from 'ldapts';
import type { LdapConfig } from '../config/schema-ldap.js';
import { TransportError } from '../message/status.js';
import type { AuthenticatedIdentity, Directory, DirectoryEntry, ScramCredentials } from './directory.js';
import {
  CONTACT_CLASSES,
  GROUP_CLASSES,
  attributeMap,
  dynamicSearch,
  escapeFilterValue,
  looksLikeDn,
  toDirectoryEntry,
  values,
  type AttributeMap,
  type LdapEntry,
  type MapContext,
} from './ldap-map.js';
import { LdapPool, newCounters, type LdapCounters } from './ldap-pool.js';
import { verifyPassword } from './passwords.js';
import { parseVerifier } from './scram.js';
import { DirectoryUnavailableError } from './unavailable.js';

/** Members of a dynamic group read at most: a runaway filter must not expand the directory. */
const MAX_DYNAMIC_MEMBERS = 5000;

interface Cached {
  value: { entry: DirectoryEntry; dn: string } | undefined;
  expires: number;
}

export class LdapDirectory implements Directory {
  readonly counters: LdapCounters = newCounters();
  private readonly pool: LdapPool;
  private readonly map: AttributeMap;
  private readonly mapping: MapContext;
  private readonly cache = new Map<string, Cached>();
  private readonly memberOfByDn = new Map<string, string[]>();

  constructor(
    private readonly config: LdapConfig,
    options: { serverName: string; bindPassword?: string },
  ) {
    this.pool = new LdapPool({ config, bindPassword: options.bindPassword }, this.counters);
    this.map = attributeMap(config);
    this.mapping = {
      map: this.map,
      groupClasses: config.groupClasses ?? GROUP_CLASSES[config.schema],
      contactClasses: config.contactClasses ?? CONTACT_CLASSES[config.schema],
      defaultServer: config.defaultMailbox.server ?? options.serverName,
      defaultStore: config.defaultMailbox.store,
    };
  }

  async findByAddress(address: string): Promise<DirectoryEntry | undefined> {
    const bare = address.replace(/^smtp:/i, '').toLowerCase();
    if (!bare.includes('@')) return undefined;
    this.counters.addressLookups++;
    const found = await this.cached(`a:${bare}`, () => this.searchOne(this.addressFilter(bare)));
    if (!found) this.counters.addressLookupsNotFound++;
    return found?.entry;
  }

  async findByName(name: string): Promise<DirectoryEntry | undefined> {
    if (looksLikeDn(name))
      return (await this.cached(`d:${name.toLowerCase()}`, () => this.readDn(name)))?.entry;
    const v = escapeFilterValue(name);
    const parts = [this.map.name, this.map.login].filter(Boolean).map((a) => `(${a}=${v})`);
    if (!parts.length) return undefined;
    return (await this.cached(`n:${name.toLowerCase()}`, () => this.searchOne(`(|${parts.join('')})`)))
      ?.entry;
  }

  /** The groups an entry's memberOf names (DNs), as the last read of it found them. */
  memberOf(entry: DirectoryEntry): string[] {
    return this.memberOfByDn.get(entry.name.toLowerCase()) ?? [];
  }

  /** The user a SMTP AUTH login names: its login attribute, mail or a proxy address. */
  private async userByLogin(login: string) {
    const l = escapeFilterValue(login.replace(/^smtp:/i, ''));
    const attrs = [this.map.login, this.map.mail, this.map.proxyAddresses].filter(Boolean) as string[];
    const filter = `(|${attrs.map((a) => (a.toLowerCase() === 'proxyaddresses' ? `(${a}=smtp:${l})` : `(${a}=${l})`)).join('')})`;
    const found = await this.searchOne(filter);
    return found && found.entry.kind === 'user' ? { ...found, entry: found.entry } : undefined;
  }

  /**
   * SCRAM-SHA-256 needs the stored verifier: only with `authentication: passwordHash` and a
   * password attribute holding one (a bind cannot run SCRAM on the server's behalf).
   */
  async scramCredentials(login: string): Promise<ScramCredentials | undefined> {
    if (this.config.authentication !== 'passwordHash') return undefined;
    return authenticating(async () => {
      const found = await this.userByLogin(login);
      const hash = found?.entry.user.passwordHash;
      const verifier = hash ? parseVerifier(hash) : undefined;
      return found && verifier ? { verifier, identity: identityOf(found.entry) } : undefined;
    });
  }

  async authenticate(login: string, password: string): Promise<AuthenticatedIdentity | undefined> {
    return authenticating(async () => {
      const found = await this.userByLogin(login);
      if (!found) return undefined;
      const ok =
        this.config.authentication === 'passwordHash'
          ? !!found.entry.user.passwordHash && (await verifyPassword(password, found.entry.user.passwordHash))
          : await this.pool.tryBind(found.dn, password);
      return ok ? identityOf(found.entry) : undefined;
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private addressFilter(address: string): string {
    const v = escapeFilterValue(address);
    const parts = [`(${this.map.mail ?? 'mail'}=${v})`];
    if (this.map.proxyAddresses) {
      // AD's proxyAddresses hold "smtp:address" (matching ignores case); other schemas the bare address.
      const typed = this.config.schema === 'activedirectory' || this.map.proxyAddresses === 'proxyAddresses';
      parts.push(`(${this.map.proxyAddresses}=${typed ? 'smtp:' : ''}${v})`);
    }
    return `(|${parts.join('')})`;
  }

  private async cached(key: string, load: () => Promise<Cached['value']>): Promise<Cached['value']> {
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.expires > now) {
      this.counters.cacheHits++;
      return hit.value;
    }
    const value = await load().catch((err: unknown) => {
      if (err instanceof DirectoryUnavailableError) this.counters.lookupFailures++;
      throw err;
    });
    const ttl = value ? this.config.cache.ttlSeconds : this.config.cache.negativeTtlSeconds;
    if (ttl > 0) {
      if (this.cache.size >= this.config.cache.maxEntries) {
        // Oldest first: a Map iterates in insertion order.
        for (const k of [...this.cache.keys()].slice(0, Math.ceil(this.config.cache.maxEntries / 10)))
          this.cache.delete(k);
      }
      this.cache.set(key, { value, expires: now + ttl * 1000 });
    }
    return value;
  }

  private async search(
    base: string,
    scope: 'base' | 'one' | 'sub',
    filter: string,
    sizeLimit: number,
    attributes?: string[],
  ): Promise<LdapEntry[]> {
    return this.pool.use(async (client: Client) => {
      try {
        const { searchEntries } = await client.search(base, {
          scope,
          filter,
          sizeLimit,
          ...(attributes ? { attributes } : {}),
        });
        this.counters.searches++;
        return searchEntries as LdapEntry[];
      } catch (err) {
        if (err instanceof NoSuchObjectError) {
          this.counters.searches++;
          return [];
        }
        this.counters.searchFailures++;
        throw new DirectoryUnavailableError(err instanceof Error ? err.message || err.name : String(err));
      }
    });
  }

  private async searchOne(filter: string): Promise<Cached['value']> {
    const entries = await this.search(this.config.baseDn, 'sub', `(&${this.config.filter}${filter})`, 10);
    return this.mapEntry(entries[0]);
  }

  private async readDn(dn: string): Promise<Cached['value']> {
    const entries = await this.search(dn, 'base', this.config.filter, 1);
    return this.mapEntry(entries[0]);
  }

  private async mapEntry(raw: LdapEntry | undefined): Promise<Cached['value']> {
    if (!raw) return undefined;
    const entry = toDirectoryEntry(raw, this.mapping);
    if (!entry) return undefined;
    this.memberOfByDn.set(entry.name.toLowerCase(), values(raw, this.map.memberOf));
    if (entry.kind === 'group') {
      const dynamic = dynamicSearch(raw, this.map, this.config.baseDn);
      if (dynamic) {
        const found = await this.search(
          dynamic.base,
          dynamic.scope,
          `(&${this.config.filter}${dynamic.filter})`,
          MAX_DYNAMIC_MEMBERS,
          ['1.1'],
        );
        entry.group.members.push(...found.map((e) => e.dn));
      }
    }
    return { entry, dn: raw.dn };
  }
}

/** Who an LDAP user authenticates as; no attribute maps submit/relay permissions yet. */
function identityOf(entry: { name: string; primaryAddress: string }): AuthenticatedIdentity {
  return {
    name: entry.name,
    primaryAddress: entry.primaryAddress,
    permissions: { submit: 'default', relay: 'default' },
  };
}

/** SMTP AUTH while the directory cannot answer is a temporary failure (454 4.7.0), never a 535. */
async function authenticating<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof DirectoryUnavailableError)
      throw new TransportError(454, '4.7.0', 'Temporary authentication failure (directory unavailable)');
    throw err;
  }
}
