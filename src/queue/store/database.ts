// NAME      database: what a part of the store needs of queue.db
// DESCRIPTION  No I/O here. The store's parts (holds.ts, remote-queues.ts) take this, not
//   the store: prepared statements from the cache and a transaction.
import type Database from 'better-sqlite3';

export interface SqlSource {
  sql(text: string): Database.Statement;
  transaction(fn: () => void): void;
}
