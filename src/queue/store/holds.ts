// NAME      holds: recipients waiting to be routed, and those held in holding queues
// SYNOPSIS  dueForRouting(limit) · hold(row, queue, reason, until, text) · fail(...)
//           heldRows(queues) · releaseHolds(ids) · releaseHoldsFor(reasons) · nextHoldDue()
// DESCRIPTION
//   A held recipient waits in its holding queue (a connector's, or "Final destination
//   currently unreachable") with a typed reason and the time routing looks at it again.
//   Queries use the index on held rows (hold_reason IS NOT NULL) and the work index of
//   "Messages waiting to be routed": nothing scans the queue.
import { QUEUE, type HoldReason } from '../names.js';
import type { SqlSource } from './database.js';
import type { RecipientRow } from './rows.js';

const OPEN = `state IN ('ready', 'retry')`;

export class Holds {
  constructor(private readonly db: SqlSource) {}

  /** Recipients waiting to be routed, and held ones whose hold time has come. */
  dueForRouting(limit: number): (RecipientRow & RoutingFacts)[] {
    const now = Date.now();
    const facts = `r.*, m.sender AS sender, m.received_at AS received_at, m.size AS size, m.is_dsn AS is_dsn,
         json_extract(m.envelope, '$.priority') AS priority,
         json_extract(m.envelope, '$.messageId') AS header_message_id`;
    const waiting = this.db
      .sql(
        `SELECT ${facts} FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.queue = ? AND r.state IN ('ready', 'retry') AND r.next_attempt <= ? AND m.frozen = 0 LIMIT ?`,
      )
      .all(QUEUE.routing, now, limit) as (RecipientRow & RoutingFacts)[];
    const held = this.db
      .sql(
        `SELECT ${facts} FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.hold_reason IS NOT NULL AND r.next_attempt <= ? AND r.state = 'retry' AND m.frozen = 0
         AND r.queue NOT IN (SELECT name FROM queue_flags WHERE frozen = 1) LIMIT ?`,
      )
      .all(now, limit) as (RecipientRow & RoutingFacts)[];
    return [...waiting, ...held];
  }

  nextHoldDue(): number | undefined {
    const due = this.db
      .sql(`SELECT MIN(next_attempt) FROM recipients WHERE hold_reason IS NOT NULL AND state = 'retry'`)
      .pluck()
      .get() as number | null;
    return due ?? undefined;
  }

  /** Waits in a holding queue for `reason` until `until`. */
  hold(rowId: number, queue: string, reason: HoldReason, until: number, text: string): void {
    this.db
      .sql(
        `UPDATE recipients SET queue = ?, next_hop = NULL, hold_reason = ?, remote = 0, state = 'retry',
       next_attempt = ?, last_error = ?, deadline = NULL WHERE id = ?`,
      )
      .run(queue, reason, until, text, rowId);
  }

  /** A final failure decided without an attempt (routing, an administrator). */
  fail(rowId: number, status: string, diagnostic: string, lastError: string, dsn: string | null): void {
    this.db
      .sql(
        `UPDATE recipients SET state = 'done', outcome = 'failed', status = ?, diagnostic = ?, last_error = ?,
       dsn_pending = ?, hold_reason = NULL, deadline = NULL WHERE id = ?`,
      )
      .run(status, diagnostic, lastError, dsn, rowId);
  }

  /** Held rows in `queues` (for ATRN/TURN and ETRN), open, of unfrozen messages. */
  heldRows(queues: string[]): RecipientRow[] {
    const rows: RecipientRow[] = [];
    for (const queue of queues)
      rows.push(
        ...(this.db
          .sql(
            `SELECT r.* FROM recipients r JOIN messages m ON m.id = r.message_id
           WHERE r.queue = ? AND r.state = 'retry' AND r.hold_reason IS NOT NULL AND m.frozen = 0`,
          )
          .all(queue) as RecipientRow[]),
      );
    return rows;
  }

  /** Held rows are due now (ETRN released them, or a route may be back). */
  releaseHolds(rowIds: number[]): void {
    const release = this.db.sql('UPDATE recipients SET next_attempt = 0 WHERE id = ?');
    this.db.transaction(() => {
      for (const id of rowIds) release.run(id);
    });
  }

  /** Held rows for one of `reasons` are due now. */
  releaseHoldsFor(reasons: readonly HoldReason[]): void {
    const release = this.db.sql(
      `UPDATE recipients SET next_attempt = 0 WHERE hold_reason = ? AND state = 'retry'`,
    );
    this.db.transaction(() => {
      for (const reason of reasons) release.run(reason);
    });
  }

  /** Open rows in `queues` (not yet routed) for addresses in `domain`. */
  countOpenFor(queues: string[], matches: (address: string) => boolean): number {
    let n = 0;
    for (const queue of queues)
      for (const address of this.db
        .sql(`SELECT address FROM recipients WHERE queue = ? AND ${OPEN}`)
        .pluck()
        .iterate(queue) as IterableIterator<string>)
        if (matches(address)) n++;
    return n;
  }
}

/** Message facts the routing stage reads with each row. */
export interface RoutingFacts {
  sender: string;
  received_at: number;
  size: number;
  is_dsn: number;
  priority: 'high' | 'low' | null;
  header_message_id: string | null;
}
