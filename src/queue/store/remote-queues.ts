// NAME      remote queues: one row a next hop, with the queue's own retry
// SYNOPSIS  ensure(name, destination) · due(now) · dueMessageIds(name, limit) · rowsOfMany(ids, name)
//           nextHopDown(name, at, error) · nextHopUp(name) · dropIfEmpty(name) · nextDue()
//           returnToRouting(name, inRound)
// DESCRIPTION
//   A next hop that cannot be reached (no connection, 421 at the greeting, TLS required and
//   refused) puts its whole queue in Retry until retry_at: one connection attempt per
//   interval however many messages wait (Postfix's dead-destination cache). When an
//   attempt gets through, the queue is released and served at once. A 4xx for one message
//   or recipient keeps that recipient's own schedule (recipients.next_attempt).
import { QUEUE } from '../names.js';
import type { SqlSource } from './database.js';
import type { RecipientRow, RemoteQueueRow } from './rows.js';

export class RemoteQueues {
  constructor(private readonly store: SqlSource) {}

  /**
   * Records the queue of a next hop when a recipient is placed in it, and where it connects
   * now: a reload that changes a connector's smart host, port, security or the
   * organisation secret reaches the queue with the next recipient placed in it. Part of
   * the placing transaction, so a rollback takes it back too.
   */
  ensure(name: string, destination: string): void {
    this.store
      .sql(
        `INSERT INTO remote_queues (name, destination) VALUES (?, ?)
         ON CONFLICT(name) DO UPDATE SET destination = excluded.destination
         WHERE destination != excluded.destination`,
      )
      .run(name, destination);
  }

  /** A reload may change where a queue connects: newly placed rows carry the new one. */
  setDestination(name: string, destination: string): void {
    this.store.sql('UPDATE remote_queues SET destination = ? WHERE name = ?').run(destination, name);
  }

  get(name: string): RemoteQueueRow | undefined {
    return this.store.sql('SELECT * FROM remote_queues WHERE name = ?').get(name) as
      RemoteQueueRow | undefined;
  }

  all(): RemoteQueueRow[] {
    return this.store.sql('SELECT * FROM remote_queues').all() as RemoteQueueRow[];
  }

  /** Queues whose next hop may be tried now (not in Retry). */
  due(now: number): RemoteQueueRow[] {
    return this.store.sql('SELECT * FROM remote_queues WHERE retry_at <= ?').all(now) as RemoteQueueRow[];
  }

  /** Queues whose next hop is in Retry now. */
  inRetry(now: number): RemoteQueueRow[] {
    return this.store.sql('SELECT * FROM remote_queues WHERE retry_at > ?').all(now) as RemoteQueueRow[];
  }

  /** Messages (not frozen) with recipients just placed in `name`, not yet tried or deferred. */
  readyMessageIds(name: string, limit: number): string[] {
    return this.store
      .sql(
        `SELECT DISTINCT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.queue = ? AND r.state = 'ready' AND m.frozen = 0 LIMIT ?`,
      )
      .pluck()
      .all(name, limit) as string[];
  }

  /**
   * Messages (not frozen) with recipients to send in `name` now: ready rows first, then
   * retries that are due. Two index ranges, each stopping at `limit`.
   */
  dueMessageIds(name: string, limit: number): string[] {
    const ready = this.store
      .sql(
        `SELECT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.queue = ? AND r.state = 'ready' AND m.frozen = 0 LIMIT ?`,
      )
      .pluck()
      .all(name, limit) as string[];
    const ids = new Set(ready);
    if (ids.size < limit) {
      const retries = this.store
        .sql(
          `SELECT r.message_id FROM recipients r JOIN messages m ON m.id = r.message_id
           WHERE r.queue = ? AND r.state = 'retry' AND r.next_attempt <= ? AND m.frozen = 0 LIMIT ?`,
        )
        .pluck()
        .all(name, Date.now(), limit) as string[];
      for (const id of retries) if (ids.size < limit) ids.add(id);
    }
    return [...ids];
  }

  /** Due rows of `name` for many messages in one query, by message id. */
  rowsOfMany(messageIds: string[], name: string): Map<string, RecipientRow[]> {
    const rows = this.store
      .sql(
        `SELECT * FROM recipients INDEXED BY recipients_by_message WHERE message_id IN (SELECT value FROM json_each(?)) AND queue = ?
           AND state IN ('ready', 'retry') AND next_attempt <= ? ORDER BY id`,
      )
      .all(JSON.stringify(messageIds), name, Date.now()) as RecipientRow[];
    const out = new Map<string, RecipientRow[]>();
    for (const r of rows) {
      const list = out.get(r.message_id);
      if (list) list.push(r);
      else out.set(r.message_id, [r]);
    }
    return out;
  }

  /**
   * The next hop could not be reached: the queue waits until `retryAt` (or later, when
   * routing holds it while it takes its mail back).
   */
  nextHopDown(name: string, retryAt: number, error: string): void {
    this.store
      .sql(
        'UPDATE remote_queues SET retry_at = MAX(retry_at, ?), failures = failures + 1, last_error = ? WHERE name = ?',
      )
      .run(retryAt, error, name);
  }

  /** An attempt got through: the whole queue is released. */
  nextHopUp(name: string): void {
    this.store
      .sql(
        'UPDATE remote_queues SET retry_at = 0, failures = 0, last_error = NULL WHERE name = ? AND failures > 0',
      )
      .run(name);
  }

  /** Force connection (queue retry, unfreeze): the queue's next hop is tried now. */
  releaseAll(name?: string): void {
    if (name) this.store.sql('UPDATE remote_queues SET retry_at = 0 WHERE name = ?').run(name);
    else this.store.sql('UPDATE remote_queues SET retry_at = 0').run();
  }

  /**
   * The queue's next hop is down (link state): its open recipients go back to "Messages
   * waiting to be routed", with their attempts, first failure and delay notice kept, so
   * routing sends them on another path [003:6445-6471]. Rows of frozen messages stay.
   * Rows a delivery round holds now (`inRound`, Active) stay too, and the queue waits in
   * Retry until `holdUntil` so that no new round takes them when the attempt ends: the
   * caller asks again then. `kept` counts those Active rows.
   */
  returnToRouting(
    name: string,
    inRound: (messageId: string) => boolean,
    holdUntil: number,
  ): { returned: number; kept: number } {
    const rows = this.store
      .sql(
        `SELECT r.id, r.message_id, m.frozen FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.queue = ? AND r.state IN ('ready', 'retry')`,
      )
      .all(name) as { id: number; message_id: string; frozen: number }[];
    const back = this.store.sql(
      `UPDATE recipients SET queue = ?, next_hop = NULL, remote = 0, hold_reason = NULL, state = 'ready',
       next_attempt = 0, deadline = NULL WHERE id = ? AND state IN ('ready', 'retry')`,
    );
    let returned = 0;
    let kept = 0;
    for (const r of rows) {
      if (r.frozen) continue;
      if (inRound(r.message_id)) kept++;
      else returned += back.run(QUEUE.routing, r.id).changes;
    }
    if (kept)
      this.store
        .sql(
          `UPDATE remote_queues SET retry_at = MAX(retry_at, ?), last_error = COALESCE(last_error, ?) WHERE name = ?`,
        )
        .run(holdUntil, '451 4.4.1 next hop down (link state): mail is routed again', name);
    else if (returned) this.dropIfEmpty(name);
    return { returned, kept };
  }

  /** A queue with no open recipient left is forgotten (it was a next hop, not a setting). */
  dropIfEmpty(name: string): void {
    const open = this.store
      .sql(`SELECT 1 FROM recipients WHERE queue = ? AND state IN ('ready', 'retry') LIMIT 1`)
      .get(name);
    if (open) return;
    this.store.sql('DELETE FROM remote_queues WHERE name = ?').run(name);
  }

  /** When the remote stage next has something to do by the clock. */
  nextDue(): number | undefined {
    const queueRetry = this.store
      .sql('SELECT MIN(retry_at) FROM remote_queues WHERE retry_at > ?')
      .pluck()
      .get(Date.now()) as number | null;
    // Recipients' own retries, in queues whose next hop is not in Retry: the others wait
    // for their queue (and may be due already, which must not spin the stage). One index
    // probe a queue: a join let SQLite walk every retrying row of a dead queue.
    const now = Date.now();
    let rowRetry: number | null = null;
    const earliest = this.store.sql(
      `SELECT MIN(next_attempt) FROM recipients WHERE queue = ? AND state = 'retry'`,
    );
    for (const queue of this.due(now)) {
      const due = earliest.pluck().get(queue.name) as number | null;
      if (due !== null && (rowRetry === null || due < rowRetry)) rowRetry = due;
    }
    const deadline = this.store
      .sql(
        `SELECT MIN(r.deadline) FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.deadline IS NOT NULL AND m.frozen = 0`,
      )
      .pluck()
      .get() as number | null;
    const times = [queueRetry, rowRetry, deadline].filter((t): t is number => t !== null);
    return times.length ? Math.min(...times) : undefined;
  }

  /** Remote rows whose delay notice or expiry is due. */
  dueDeadlines(now: number, limit: number): RecipientRow[] {
    return this.store
      .sql(
        `SELECT r.* FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.deadline IS NOT NULL AND r.deadline <= ? AND m.frozen = 0
         AND r.queue NOT IN (SELECT name FROM queue_flags WHERE frozen = 1) ORDER BY r.deadline LIMIT ?`,
      )
      .all(now, limit) as RecipientRow[];
  }

  setDeadline(
    rowId: number,
    deadline: number | null,
    delayNotified: boolean,
    dsn: string | null,
    lastError: string | null,
  ): void {
    this.store
      .sql(
        `UPDATE recipients SET deadline = ?, delay_notified = ?, dsn_pending = COALESCE(?, dsn_pending),
         last_error = COALESCE(last_error, ?) WHERE id = ?`,
      )
      .run(deadline, delayNotified ? 1 : 0, dsn, lastError, rowId);
  }
}
