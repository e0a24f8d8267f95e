// Greylisting (inbound, beyond the guide; the receiving side of [004]): the first attempt
// from a (client network, sender, recipient) triplet is deferred with 451 4.7.1; a retry
// after `delay` passes and the triplet is remembered until `expiry`. Authenticated
// sessions and whitelisted networks are never greylisted. Triplets live in SQLite.
import Database from 'better-sqlite3';
import { IpRangeList } from '../net/ip-range.js';

/** The /24 (IPv4) or /64 (IPv6) a client belongs to: retries come from pools. */
export function clientNetwork(ip: string): string {
  if (ip.includes('.')) return ip.split('.').slice(0, 3).join('.') + '.0/24';
  return ip.split(':').slice(0, 4).join(':') + '::/64';
}

export type GreylistVerdict = { pass: true } | { pass: false; retryAfterSeconds: number };

/** Pure decision: first seen at `first`, now `now`, passed before? */
export function greylistDecision(
  first: number | undefined,
  passed: boolean,
  now: number,
  delayMs: number,
): GreylistVerdict {
  if (passed) return { pass: true };
  if (first === undefined) return { pass: false, retryAfterSeconds: Math.ceil(delayMs / 1000) };
  if (now - first >= delayMs) return { pass: true };
  return { pass: false, retryAfterSeconds: Math.ceil((delayMs - (now - first)) / 1000) };
}

export class Greylist {
  private readonly db: Database.Database;
  private readonly whitelist: IpRangeList;

  constructor(
    file: string,
    private readonly delayMs: number,
    private readonly expiryMs: number,
    whitelist: string[],
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS triplets (
      network TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
      first_seen INTEGER NOT NULL, passed INTEGER NOT NULL DEFAULT 0, last_seen INTEGER NOT NULL,
      PRIMARY KEY (network, sender, recipient))`);
    this.whitelist = new IpRangeList(whitelist);
  }

  check(
    ip: string,
    sender: string,
    recipient: string,
    authenticated: boolean,
    now = Date.now(),
  ): GreylistVerdict {
    if (authenticated || this.whitelist.contains(ip)) return { pass: true };
    const key = [clientNetwork(ip), sender.toLowerCase(), recipient.toLowerCase()];
    const row = this.db
      .prepare(
        'SELECT first_seen, passed, last_seen FROM triplets WHERE network = ? AND sender = ? AND recipient = ?',
      )
      .get(...key) as { first_seen: number; passed: number; last_seen: number } | undefined;
    const live = row && now - row.last_seen < this.expiryMs ? row : undefined;
    const verdict = greylistDecision(live?.first_seen, live?.passed === 1, now, this.delayMs);
    this.db
      .prepare(
        `INSERT INTO triplets (network, sender, recipient, first_seen, passed, last_seen) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(network, sender, recipient) DO UPDATE SET first_seen = excluded.first_seen,
         passed = excluded.passed, last_seen = excluded.last_seen`,
      )
      .run(...key, live?.first_seen ?? now, verdict.pass ? 1 : 0, now);
    return verdict;
  }

  close(): void {
    this.db.close();
  }
}
