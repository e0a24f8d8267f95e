// NAME      ldap-pool: a small, bounded pool of bound LDAP connections, and their counters
// SYNOPSIS  pool = new LdapPool(settings, counters); await pool.use((client) => ...);
//           await pool.tryBind(dn, password); await pool.close()
// DESCRIPTION
//   At most `size` connections; a caller waits for a free one (waiters are bounded by the
//   callers: the categorizer and the SMTP sessions). A connection is connected, upgraded
//   with StartTLS when asked and bound as the service account before its first use; one
//   that fails is dropped, never reused, and the next use opens a new one.
//   tryBind() checks a user's password on a connection of its own, outside the pool, so a
//   user's bind never changes the identity of a pooled connection.
// DIAGNOSTICS  a network, TLS or bind failure throws DirectoryUnavailableError (4.4.3).
// SECURITY  ldaps:// and StartTLS check the certificate chain (caFile or the system CAs)
//           and the host name unless verifyCertificate is false.
import fs from 'node:fs';
import { checkServerIdentity, type ConnectionOptions } from 'node:tls';
import { Client, InvalidCredentialsError } from 'ldapts';
import type { LdapConfig } from '../config/schema-ldap.js';
import { DirectoryUnavailableError } from './unavailable.js';

/** The guide's "Cat: LDAP ..." counters [003:7034-7243]. */
export interface LdapCounters {
  connections: number;
  connectionFailures: number;
  connectionsOpen: number;
  binds: number;
  bindFailures: number;
  searches: number;
  searchFailures: number;
  addressLookups: number;
  addressLookupsNotFound: number;
  cacheHits: number;
  /** Look-ups that failed because the directory could not answer. */
  lookupFailures: number;
}

export function newCounters(): LdapCounters {
  return {
    connections: 0,
    connectionFailures: 0,
    connectionsOpen: 0,
    binds: 0,
    bindFailures: 0,
    searches: 0,
    searchFailures: 0,
    addressLookups: 0,
    addressLookupsNotFound: 0,
    cacheHits: 0,
    lookupFailures: 0,
  };
}

export interface PoolSettings {
  config: LdapConfig;
  /** The service account's password, read from bindPasswordFile. */
  bindPassword: string | undefined;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}

export class LdapPool {
  private readonly idle: Client[] = [];
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly tls: ConnectionOptions;
  private closed = false;

  constructor(
    private readonly settings: PoolSettings,
    readonly counters: LdapCounters,
  ) {
    const { config } = settings;
    // The name checked is the URL's host: ldapts does not always pass it on (StartTLS).
    const host = new URL(config.url).hostname.replace(/^\[|\]$/g, '');
    this.tls = {
      host,
      rejectUnauthorized: config.verifyCertificate,
      checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
      ...(config.caFile ? { ca: fs.readFileSync(config.caFile) } : {}),
    };
  }

  /** Runs `work` on a pooled, bound connection; a failing connection is dropped. */
  async use<T>(work: (client: Client) => Promise<T>): Promise<T> {
    if (this.closed) throw new DirectoryUnavailableError('directory connection closed');
    while (this.busy >= this.settings.config.poolSize) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      if (this.closed) throw new DirectoryUnavailableError('directory connection closed');
    }
    this.busy++;
    let client = this.idle.pop();
    // A connection the server closed (idle timeout, restart) would be reopened by ldapts
    // unbound, or without its StartTLS: searches would then find nothing. Open a new one.
    while (client && !client.isConnected) {
      this.drop(client);
      client = this.idle.pop();
    }
    try {
      client ??= await this.open(this.settings.config.bindDn, this.settings.bindPassword).catch((err) => {
        throw err instanceof InvalidCredentialsError
          ? new DirectoryUnavailableError('the directory refused the service account (bindDn)')
          : err;
      });
      const result = await work(client);
      this.idle.push(client);
      client = undefined;
      return result;
    } catch (err) {
      if (client) this.drop(client);
      throw err;
    } finally {
      this.busy--;
      this.waiting.shift()?.();
    }
  }

  /** Checks a user's password by binding as `dn` on a connection of its own. */
  async tryBind(dn: string, password: string): Promise<boolean> {
    // An empty password is an "unauthenticated bind" (RFC 4513 5.1.2): it always succeeds.
    if (!password) return false;
    let client: Client | undefined;
    try {
      client = await this.open(dn, password);
      return true;
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return false;
      throw err;
    } finally {
      if (client) this.drop(client);
    }
  }

  private async open(dn: string | undefined, password: string | undefined): Promise<Client> {
    const { config } = this.settings;
    const client = new Client({
      url: config.url,
      timeout: config.timeoutMs,
      connectTimeout: config.timeoutMs,
      // ldapts speaks TLS from the start whenever tlsOptions are given: only for ldaps://.
      ...(/^ldaps:/i.test(config.url) ? { tlsOptions: this.tls } : {}),
      strictDN: false,
      // Belt and braces for a reconnect under way; never replayed in clear after StartTLS.
      autoRebind: !config.startTls,
    });
    try {
      if (config.startTls) await client.startTLS(this.tls);
      if (dn) await client.bind(dn, password ?? '');
      else await client.search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] });
    } catch (err) {
      await client.unbind().catch(() => undefined);
      if (err instanceof InvalidCredentialsError) {
        this.counters.bindFailures++;
        throw err;
      }
      this.counters.connectionFailures++;
      throw new DirectoryUnavailableError(describe(err));
    }
    this.counters.connections++;
    this.counters.connectionsOpen++;
    if (dn) this.counters.binds++;
    return client;
  }

  private drop(client: Client): void {
    this.counters.connectionsOpen = Math.max(0, this.counters.connectionsOpen - 1);
    void client.unbind().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const client of this.idle.splice(0)) this.drop(client);
    for (const wake of this.waiting.splice(0)) wake();
  }
}
