// NAME      queue store: message and recipient rows in queue.db
// SYNOPSIS  submit(spooled, queue) · due(queues, limit) · rowsOf(id, queues) · place(row, placement)
//           record(message, verdicts) · hold(row, reason, until, text) · finish(messageIds)
//           defer(write) · flush()
// DESCRIPTION
//   Every SQL statement of the mail path is a named method here; stages decide, the store
//   records. record() applies a verdict decided in queue/outcomes.ts; hold() stores a typed
//   reason. State changes queued with defer() in one turn of the event loop share one
//   transaction: a commit per message was the largest cost of the relay path after the
//   fsyncs. finish() recycles the spool file before it deletes the rows, so a crash between
//   the two cannot resubmit a finished message.
//   Batch queries use indexes on due rows only (state IN ('ready','retry'), never != 'done');
//   per-message queries name their index: SQLite would otherwise take the queue index and
//   walk a whole queue to find one message's rows.
// DIAGNOSTICS  SQLite errors propagate; the calling stage rests and retries.
// BUGS      synchronous=NORMAL may lose the last transaction on power loss; recovery.ts
//           rebuilds it from the spool.
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Spool, SpooledMessage } from '../spool.js';
import type { Verdict } from '../outcomes.js';
import { openSchema } from './schema.js';
import type { SqlSource } from './database.js';
import type { MessageRow, RecipientRow, RemoteQueueRow } from './rows.js';
import { RemoteQueues } from './remote-queues.js';
import { Holds } from './holds.js';
import { QUEUE, type HoldReason } from '../names.js';

/** Where a stage puts a recipient: its queue, next hop and state (categorizer, routing). */
export interface Placement {
  queue: string;
  nextHop: string | null;
  state: 'ready' | 'done';
  outcome: string | null;
  status: string | null;
  diagnostic: string | null;
  dsn: string | null;
  route: string | null;
  remote: boolean;
  /** Remote rows: when the delay notice or expiry is due. */
  deadline: number | null;
  /** Reports name the address the sender used (RecipientRow.concealed); absent: unchanged. */
  concealed?: boolean;
}

/** A placement's columns in the order place() and insertPlaced() name them. */
function placementValues(p: Placement): unknown[] {
  const deadline = p.state === 'done' ? null : p.deadline;
  return [
    p.queue,
    p.nextHop,
    p.state,
    p.outcome,
    p.status,
    p.diagnostic,
    p.dsn,
    p.route,
    p.remote ? 1 : 0,
    deadline,
    p.concealed === undefined ? null : p.concealed ? 1 : 0,
  ];
}

export const OPEN = `state IN ('ready', 'retry')`;

export class QueueStore implements SqlSource {
  readonly db: Database.Database;
  readonly remoteQueues: RemoteQueues;
  readonly holds: Holds;
  private readonly statements = new Map<string, Database.Statement>();
  private writes: (() => void)[] = [];
  private writesScheduled = false;
  /** Runs after each flush that wrote something (the scheduler's wake-ups). */
  afterFlush: () => void = () => undefined;
  /** Queue freeze flags, read once: every batch of every stage asks. */
  private frozenQueues: Set<string> | undefined;
  readonly migratedFrom: number | undefined;

  constructor(
    dataDir: string,
    readonly spool: Spool,
  ) {
    this.db = new Database(path.join(dataDir, 'queue', 'queue.db'));
    this.db.pragma('journal_mode = WAL');
    // The spool file is the durable record of acceptance; queue rows may lag a crash by a
    // transaction and are rebuilt from the spool, so NORMAL sync is enough here.
    this.db.pragma('synchronous = NORMAL');
    this.migratedFrom = openSchema(this.db).migratedFrom;
    this.remoteQueues = new RemoteQueues(this);
    this.holds = new Holds(this);
  }

  get open(): boolean {
    return this.db.open;
  }

  /** Prepared statements are cached: preparing is a large share of the cost per message. */
  sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  transaction(fn: () => void): void {
    this.db.transaction(fn)();
  }

  // ------------------------------------------------------------------ the per-turn write batch

  defer(write: () => void): void {
    this.writes.push(write);
    if (!this.writesScheduled) {
      this.writesScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Applies deferred state changes now; callers flush before they read what they wrote. */
  flush(): void {
    this.writesScheduled = false;
    const batch = this.writes;
    this.writes = [];
    if (!batch.length || !this.db.open) return;
    this.transaction(() => {
      for (const write of batch) write();
    });
    this.afterFlush();
  }

  close(): void {
    this.flush();
    this.db.close();
  }

  // ------------------------------------------------------------------ messages

  /** Inserts a message and its recipients into `queue`; false if it was already there. */
  insertMessage(m: SpooledMessage, queue: string, isDsn: boolean): boolean {
    const e = m.envelope;
    const info = this.sql(
      `INSERT OR IGNORE INTO messages (id, file, sender, size, received_at, envelope, is_dsn)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(e.id, m.file, e.sender, m.size, Date.parse(e.receivedAt), JSON.stringify(e), isDsn ? 1 : 0);
    if (info.changes === 0) return false;
    const insert = this.sql(
      `INSERT INTO recipients (message_id, address, original, orcpt, notify, queue, state)
       VALUES (?, ?, ?, ?, ?, ?, 'ready')`,
    );
    for (const r of e.recipients) {
      insert.run(
        e.id,
        r.address,
        r.address,
        r.orcpt ?? null,
        r.notify ? JSON.stringify(r.notify) : null,
        queue,
      );
    }
    return true;
  }

  message(id: string): MessageRow | undefined {
    return this.sql('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
  }

  knownMessageIds(): Set<string> {
    return new Set((this.sql('SELECT id FROM messages').pluck().all() as string[]) ?? []);
  }

  incrementDsnCount(id: string): void {
    this.sql('UPDATE messages SET dsn_count = dsn_count + 1 WHERE id = ?').run(id);
  }

  setMessageFrozen(id: string, frozen: boolean): void {
    this.sql('UPDATE messages SET frozen = ? WHERE id = ?').run(frozen ? 1 : 0, id);
  }

  /** Open or DSN-owing recipients of a message: none left means it can be finished. */
  unfinishedCount(id: string): number {
    return this.sql(
      `SELECT COUNT(*) FROM recipients INDEXED BY recipients_by_message WHERE message_id = ? AND (${OPEN} OR dsn_pending IS NOT NULL)`,
    )
      .pluck()
      .get(id) as number;
  }

  /** Messages with nothing left to do (a crash came between the last outcome and removal). */
  finishedMessageIds(): string[] {
    return this.sql(
      `SELECT id FROM messages m WHERE NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id
       AND (r.${OPEN} OR r.dsn_pending IS NOT NULL))`,
    )
      .pluck()
      .all() as string[];
  }

  deleteMessageRows(id: string): void {
    this.sql('DELETE FROM recipients INDEXED BY recipients_by_message WHERE message_id = ?').run(id);
    this.sql('DELETE FROM messages WHERE id = ?').run(id);
  }

  /** Removes messages whose every recipient is final and reported; the file goes first. */
  async finish(messageIds: Iterable<string>): Promise<string[]> {
    if (!this.db.open) return [];
    const done: MessageRow[] = [];
    for (const id of new Set(messageIds)) {
      if (this.unfinishedCount(id) > 0) continue;
      const m = this.message(id);
      if (m) done.push(m);
    }
    if (!done.length) return [];
    // The body goes first: a crash before the rows go leaves a finished message without a
    // file, which recovery drops. The other order made recovery resubmit it: a duplicate.
    await Promise.all(done.map((m) => this.spool.recycle(m.file)));
    // Stopped meanwhile: the rows stay, and recovery finds them without their files.
    if (!this.db.open) return [];
    this.transaction(() => {
      for (const m of done) this.deleteMessageRows(m.id);
    });
    return done.map((m) => m.id);
  }

  // ------------------------------------------------------------------ queue flags

  queueFrozen(name: string): boolean {
    this.frozenQueues ??= new Set(
      this.sql('SELECT name FROM queue_flags WHERE frozen = 1').pluck().all() as string[],
    );
    return this.frozenQueues.has(name);
  }

  frozenQueueNames(): string[] {
    this.queueFrozen('');
    return [...this.frozenQueues!];
  }

  /**
   * A queue an administrator may name: one of the guide's queues, a frozen one, a remote
   * queue with its next hop, or any queue holding open rows. Nothing else exists.
   */
  queueKnown(name: string): boolean {
    if ((Object.values(QUEUE) as string[]).includes(name) || this.queueFrozen(name)) return true;
    if (this.remoteQueues.get(name)) return true;
    return (
      this.sql(`SELECT 1 FROM recipients WHERE queue = ? AND state IN ('ready', 'retry') LIMIT 1`).get(
        name,
      ) !== undefined
    );
  }

  setQueueFrozen(name: string, frozen: boolean): void {
    this.sql(
      'INSERT INTO queue_flags (name, frozen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET frozen = ?',
    ).run(name, frozen ? 1 : 0, frozen ? 1 : 0);
    this.frozenQueues = undefined;
  }

  // ------------------------------------------------------------------ finding work

  /** Messages with due recipients in `queues` (not frozen, not in `busy`), oldest rows first. */
  dueMessages(queues: string[], limit: number, busy: ReadonlySet<string>): MessageRow[] {
    const live = queues.filter((q) => !this.queueFrozen(q));
    if (!live.length) return [];
    const out = new Map<string, MessageRow>();
    const now = Date.now();
    // Two index ranges a queue, ready rows then due retries, each stopping at its limit;
    // frozen messages are left out in SQL, so any number of them cannot stall the queue.
    const due = this.sql(
      `SELECT m.* FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.queue = ? AND r.state = ? AND r.next_attempt <= ? AND m.frozen = 0 LIMIT ?`,
    );
    for (const queue of live) {
      for (const state of ['ready', 'retry']) {
        for (const m of due.all(queue, state, now, limit + busy.size) as MessageRow[]) {
          if (busy.has(m.id) || out.has(m.id)) continue;
          out.set(m.id, m);
          if (out.size >= limit) break;
        }
        if (out.size >= limit) break;
      }
    }
    return [...out.values()].sort((a, b) => a.received_at - b.received_at).slice(0, limit);
  }

  /** A message's due open recipients in `queues`. */
  dueRowsOf(messageId: string, queues: string[]): RecipientRow[] {
    const now = Date.now();
    const rows: RecipientRow[] = [];
    for (const queue of queues)
      rows.push(
        ...(this.sql(
          `SELECT * FROM recipients INDEXED BY recipients_by_message WHERE message_id = ? AND queue = ? AND ${OPEN} AND next_attempt <= ?`,
        ).all(messageId, queue, now) as RecipientRow[]),
      );
    return rows.sort((a, b) => a.id - b.id);
  }

  /** The earliest retry of a queue's recipients (not of frozen messages). */
  nextRetryIn(queue: string): number | undefined {
    const due = this.sql(
      `SELECT MIN(r.next_attempt) FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.queue = ? AND r.state = 'retry' AND m.frozen = 0`,
    )
      .pluck()
      .get(queue) as number | null;
    return due ?? undefined;
  }

  /** Rows a crash may have caught mid-delivery: check the mailbox before delivering again. */
  markRecheck(queue: string): void {
    this.sql(`UPDATE recipients SET recheck = 1 WHERE queue = ? AND ${OPEN}`).run(queue);
  }

  // ------------------------------------------------------------------ placing and recording

  /** Puts an existing row where a stage placed it, under its (possibly new) address. */
  place(rowId: number, address: string, p: Placement): void {
    this.sql(
      `UPDATE recipients SET address = ?, queue = ?, next_hop = ?, state = ?, outcome = ?, status = ?,
       diagnostic = ?, dsn_pending = ?, route = ?, remote = ?, deadline = ?,
       concealed = COALESCE(?, concealed), hold_reason = NULL, next_attempt = 0 WHERE id = ?`,
    ).run(address, ...placementValues(p), rowId);
    if (p.remote && p.nextHop) this.remoteQueues.ensure(p.queue, p.nextHop);
  }

  /** A new row beside `source` (a member of an expanded group), placed at once. */
  insertPlaced(source: RecipientRow, address: string, notify: string | null, p: Placement): void {
    this.sql(
      `INSERT INTO recipients (message_id, address, original, orcpt, notify, queue, next_hop, state, outcome,
       status, diagnostic, dsn_pending, route, remote, deadline, concealed)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, IFNULL(?, 0))`,
    ).run(source.message_id, address, source.original, source.orcpt, notify, ...placementValues(p));
    if (p.remote && p.nextHop) this.remoteQueues.ensure(p.queue, p.nextHop);
  }

  /** Applies verdicts (decided in queue/outcomes.ts) to their rows. */
  /**
   * `attempted` false: verdicts given without an attempt (mail deferred because its queue's
   * next hop is in Retry) do not count as attempts, so the glitch retries stay theirs.
   */
  record(verdicts: { row: RecipientRow; verdict: Verdict }[], attempted = true): void {
    const attempt = attempted ? 1 : 0;
    const delivered = this.sql(
      `UPDATE recipients SET state = 'done', outcome = ?, status = '2.0.0', dsn_pending = ?,
       attempts = attempts + ${attempt}, last_error = NULL, recheck = 0, remote_mta = ?, deadline = NULL WHERE id = ?`,
    );
    const failed = this.sql(
      `UPDATE recipients SET state = 'done', outcome = 'failed', status = ?, diagnostic = ?, dsn_pending = ?,
       attempts = attempts + ${attempt}, last_error = ?, recheck = 0, remote_mta = ?, deadline = NULL WHERE id = ?`,
    );
    // A retry keeps what the delay DSN reports: status, reply and the server that gave it.
    const retry = this.sql(
      `UPDATE recipients SET state = 'retry', attempts = attempts + ${attempt}, next_attempt = ?, last_error = ?,
       first_failure = COALESCE(first_failure, ?), delay_notified = ?, dsn_pending = COALESCE(?, dsn_pending),
       recheck = 0, deadline = ?, status = ?, diagnostic = ?, remote_mta = ? WHERE id = ?`,
    );
    this.transaction(() => {
      for (const { row, verdict: v } of verdicts) {
        if (v.kind === 'delivered') delivered.run(v.outcome, v.dsn, v.remoteMta, row.id);
        else if (v.kind === 'failed')
          failed.run(v.status, v.diagnostic, v.dsn, v.lastError, v.remoteMta, row.id);
        else
          retry.run(
            v.nextAttempt,
            v.lastError,
            v.failedAt,
            v.delayNotified ? 1 : 0,
            v.dsn,
            v.deadline,
            v.status,
            v.diagnostic,
            v.remoteMta,
            row.id,
          );
      }
    });
  }

  /**
   * Every retrying row of `queue` (or of every queue) is due now: the count. Rows a
   * connector holds (its schedule, remote triggered delivery) stay held: only the schedule
   * opening or the remote side's ETRN/TURN releases them.
   */
  retryNow(queue?: string): number {
    const waiting = `state = 'retry' AND IFNULL(hold_reason, '') NOT IN ('schedule', 'remote-triggered')`;
    const info = queue
      ? this.sql(`UPDATE recipients SET next_attempt = 0 WHERE queue = ? AND ${waiting}`).run(queue)
      : this.sql(`UPDATE recipients SET next_attempt = 0 WHERE ${waiting}`).run();
    this.remoteQueues.releaseAll(queue);
    return info.changes;
  }

  /** Rows of `queue` (or of every queue) a connector holds: per reason and text, with the earliest release. */
  connectorHolds(queue?: string): { reason: HoldReason; text: string; recipients: number; until: number }[] {
    const held = `state = 'retry' AND hold_reason IN ('schedule', 'remote-triggered')`;
    const select = `SELECT hold_reason AS reason, IFNULL(last_error, '') AS text, COUNT(*) AS recipients,
      MIN(next_attempt) AS until FROM recipients`;
    return (
      queue
        ? this.sql(`${select} WHERE queue = ? AND ${held} GROUP BY hold_reason, last_error`).all(queue)
        : this.sql(`${select} WHERE ${held} GROUP BY hold_reason, last_error`).all()
    ) as { reason: HoldReason; text: string; recipients: number; until: number }[];
  }

  // ------------------------------------------------------------------ DSNs

  messagesOwingDsn(limit: number): string[] {
    return this.sql(
      `SELECT DISTINCT message_id FROM recipients INDEXED BY recipients_dsn WHERE dsn_pending IS NOT NULL LIMIT ?`,
    )
      .pluck()
      .all(limit) as string[];
  }

  rowsOwingDsn(messageId: string): RecipientRow[] {
    return this.sql(
      'SELECT * FROM recipients INDEXED BY recipients_by_message WHERE message_id = ? AND dsn_pending IS NOT NULL',
    ).all(messageId) as RecipientRow[];
  }

  clearDsnPending(rowIds: number[]): void {
    const clear = this.sql('UPDATE recipients SET dsn_pending = NULL WHERE id = ?');
    this.transaction(() => {
      for (const id of rowIds) clear.run(id);
    });
  }

  // ------------------------------------------------------------------ viewer reads

  openRowsOf(messageId: string): RecipientRow[] {
    return this.sql(
      `SELECT * FROM recipients INDEXED BY recipients_by_message WHERE message_id = ? AND ${OPEN}`,
    ).all(messageId) as RecipientRow[];
  }

  allRowsOf(messageId: string): RecipientRow[] {
    return this.sql(
      'SELECT * FROM recipients INDEXED BY recipients_by_message WHERE message_id = ? ORDER BY id',
    ).all(messageId) as RecipientRow[];
  }

  remoteQueue(name: string): RemoteQueueRow | undefined {
    return this.remoteQueues.get(name);
  }
}
