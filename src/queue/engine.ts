// The advanced queuing engine [003:6691-6793]. A message's body stays in one spool file for
// its whole life; its recipients move through the named queues as rows in SQLite (WAL).
// A message sent to 10,000 recipients is one file and 10,000 rows, never 10,000 copies.
//
// STRATEGIES
//   - Acceptance is durable in the spool before 250; the row insert follows. Recovery
//     inserts any complete spool file the database does not know (crash between the two).
//   - Each stage (categorizer, local delivery, DSN) is a runner that drains its queue in
//     batches and sleeps until kicked or until the earliest retry is due: no directory scans.
//   - State changes for one message are one transaction. A delivery is recorded after the
//     mailbox file is durable; a crash in between re-delivers into the same Maildir name,
//     which the store driver recognises, so every recipient gets exactly one copy.
//   - A DSN's queue id is derived from the original's, so a DSN written before a crash is
//     found again instead of being generated twice.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { Spool, type Envelope, type SpooledMessage } from './spool.js';
import { afterTransientFailure, type RetryPolicy } from './retry.js';
import type { Categorizer, Route } from '../categorizer/categorizer.js';
import type { MaildirStore } from '../delivery/local/maildir.js';
import type { MessageTracking } from '../tracking/tracking.js';
import { TransportError } from '../smtp/status.js';
import { buildDsn, type DsnAction, type RecipientReport } from '../dsn/dsn.js';
import { ndrEvent } from '../logs/event-ids.js';
import type { Destination, DeliveryJob, RemoteDelivery } from '../delivery/remote/remote-delivery.js';
import { RemoteReplyError } from '../smtp/client/client.js';

export const QUEUE = {
  preSubmission: 'Pre-submission',
  categorizer: 'Messages awaiting directory lookup',
  routing: 'Messages waiting to be routed',
  local: 'Local delivery',
  unreachable: 'Final destination currently unreachable',
  deferred: 'Messages queued for deferred delivery',
  dsn: 'DSN messages pending submission',
  failedRetry: 'Failed message retry queue',
} as const;

/**
 * Where routing sends a recipient: a remote queue with its destination; a holding queue
 * (no route now, or a connector that is not open) re-examined at `retryAt`; or a failure.
 */
export type NextHop =
  | { queue: string; destination: Destination }
  | { queue: string; destination?: undefined; retryAt: number; reason: string }
  | { fail: { code: number; status: string; text: string } };

export type QueueState = 'Ready' | 'Active' | 'Retry' | 'Scheduled' | 'Remote' | 'Frozen';

export interface QueueSummary {
  name: string;
  state: QueueState;
  frozen: boolean;
  messageCount: number;
  totalSize: number;
  oldest?: string;
  nextRetry?: string;
  lastError?: string;
}

export interface MessageSummary {
  id: string;
  sender: string;
  size: number;
  receivedAt: string;
  subject?: string;
  messageId?: string;
  frozen: boolean;
  state: QueueState;
  queues: string[];
  recipients: { address: string; queue: string; state: string; status?: string; lastError?: string }[];
}

export interface FindQuery {
  sender?: string;
  recipient?: string;
  state?: QueueState;
  queue?: string;
  limit?: number;
}

export interface EngineOptions {
  serverName: string;
  fqdn: string;
  dataDir: string;
  spool: Spool;
  categorizer: Categorizer;
  store: MaildirStore;
  tracking: MessageTracking;
  log: Logger;
  /** Diagnostic categories: NDRs are logged with the event ids of [002]. */
  categorizerLog?: Logger;
  storeDriverLog?: Logger;
  localRetry: RetryPolicy;
  remoteRetry: RetryPolicy;
  /** Next hop of a routed recipient: a remote queue name and where it connects. */
  route: (
    route: Route,
    sender: string,
    message: { size: number; priority: 'high' | 'normal' | 'low'; system: boolean },
  ) => NextHop;
  remote: RemoteDelivery;
  /** Connections to one next hop, and in total [SPEC §7: 100, 1000]. */
  maxConnectionsPerQueue: number;
  maxConnections: number;
  ndrCopyTo?: string;
  badmailDir: string;
}

interface RecipientRow {
  id: number;
  message_id: string;
  address: string;
  original: string;
  orcpt: string | null;
  notify: string | null;
  queue: string;
  next_hop: string | null;
  state: 'ready' | 'retry' | 'done';
  outcome: string | null;
  status: string | null;
  diagnostic: string | null;
  attempts: number;
  next_attempt: number;
  first_failure: number | null;
  last_error: string | null;
  dsn_pending: string | null;
  delay_notified: number;
  route: string | null;
  recheck: number;
  remote: number;
  remote_mta: string | null;
}

interface MessageRow {
  id: string;
  file: string;
  sender: string;
  size: number;
  received_at: number;
  envelope: string;
  frozen: number;
  is_dsn: number;
  dsn_count: number;
}

/**
 * A stage that drains its work in batches, once at a time, and wakes for due retries.
 * Work that arrives while a batch runs waits for the next one, which starts no sooner than
 * BATCH_GAP_MS after the last began: under a steady stream each batch then carries several
 * messages, and the queries that find work are paid per batch, not per message.
 */
const BATCH_GAP_MS = 5;

class StageRunner {
  private running = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private gapTimer: NodeJS.Timeout | undefined;
  /** Monotonic times (performance.now): a wall-clock step must not stall the stage. */
  private lastStart = -Infinity;
  /** After a failed batch the stage rests until then, whatever kicks it. */
  private restUntil = -Infinity;
  stopped = false;

  constructor(
    readonly name: string,
    private readonly batch: () => Promise<boolean>,
    private readonly nextDue: () => number | undefined,
    private readonly log: Logger,
  ) {}

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.gapTimer || performance.now() < this.restUntil) return;
    const wait = this.lastStart + BATCH_GAP_MS - performance.now();
    if (wait > 0) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = undefined;
        this.kick();
      }, wait);
      return;
    }
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      this.again = false;
      this.lastStart = performance.now();
      while (!this.stopped && (await this.batch()));
    } catch (err) {
      this.log.error({ err, stage: this.name }, 'queue stage failed; retrying in 5 s');
      this.running = false;
      this.again = false;
      this.restUntil = performance.now() + 4900;
      if (!this.stopped) this.schedule(Date.now() + 5000);
      return;
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.again) {
      this.kick();
      return;
    }
    const due = this.nextDue();
    if (due !== undefined) this.schedule(due);
  }

  private schedule(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.kick();
      },
      Math.max(0, Math.min(at - Date.now(), 2 ** 31 - 1)),
    );
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.gapTimer) clearTimeout(this.gapTimer);
  }

  get busy(): boolean {
    return this.running;
  }
}

function addressInDomain(address: string, domain: string): boolean {
  const a = address.toLowerCase();
  const d = domain.toLowerCase();
  return a.endsWith(`@${d}`) || a.endsWith(`.${d}`);
}

function notifyList(row: { notify: string | null }): string[] | undefined {
  return row.notify ? (JSON.parse(row.notify) as string[]) : undefined;
}

/** Which DSN (if any) a recipient outcome asks for, per its NOTIFY (RFC 3461 §4.1). */
function dsnFor(
  kind: 'failure' | 'delay' | 'success',
  notify: string[] | undefined,
  sender: string,
): string | null {
  // Never a DSN to the null sender; its failures are still due, as badmail (generateDsn).
  if (!sender) return kind === 'failure' ? kind : null;
  if (!notify) return kind === 'success' ? null : kind;
  if (notify.includes('NEVER')) return null;
  const wanted = { failure: 'FAILURE', delay: 'DELAY', success: 'SUCCESS' }[kind];
  return notify.includes(wanted) ? kind : null;
}

export class QueuingEngine {
  readonly db: Database.Database;
  private readonly o: EngineOptions;
  private readonly runners: StageRunner[] = [];
  private readonly categorizerStage: StageRunner;
  private readonly localStage: StageRunner;
  private readonly dsnStage: StageRunner;
  private readonly routingStage: StageRunner;
  private readonly remoteStage: StageRunner;
  /** Remote queues with a delivery under way, and connections in use. */
  private readonly serving = new Set<string>();
  private connectionsInUse = 0;
  /** New submissions in the pending writes: the categorizer runs once they are committed. */
  private categorizeAfterWrites = false;
  private readonly activeMessages = new Set<string>();
  private started = false;
  private readonly statements = new Map<string, Database.Statement>();
  /** Bodies of recently accepted small messages, so a fast relay does not read them back. */
  private readonly bodies = new Map<string, Buffer>();
  private bodyBytes = 0;

  constructor(options: EngineOptions) {
    this.o = options;
    this.db = new Database(path.join(options.dataDir, 'queue', 'queue.db'));
    this.db.pragma('journal_mode = WAL');
    // The spool file is the durable record of acceptance; queue rows may lag a crash by a
    // transaction and are rebuilt from the spool, so NORMAL sync is enough here.
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, file TEXT NOT NULL, sender TEXT NOT NULL, size INTEGER NOT NULL,
        received_at INTEGER NOT NULL, envelope TEXT NOT NULL, frozen INTEGER NOT NULL DEFAULT 0,
        is_dsn INTEGER NOT NULL DEFAULT 0, dsn_count INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS recipients (
        id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, address TEXT NOT NULL, original TEXT NOT NULL,
        orcpt TEXT, notify TEXT, queue TEXT NOT NULL, next_hop TEXT, state TEXT NOT NULL,
        outcome TEXT, status TEXT, diagnostic TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL DEFAULT 0, first_failure INTEGER, last_error TEXT,
        dsn_pending TEXT, delay_notified INTEGER NOT NULL DEFAULT 0, route TEXT,
        recheck INTEGER NOT NULL DEFAULT 0, remote INTEGER NOT NULL DEFAULT 0, remote_mta TEXT);
      CREATE INDEX IF NOT EXISTS recipients_remote ON recipients(remote, state, next_attempt) WHERE remote = 1;
      CREATE INDEX IF NOT EXISTS recipients_work ON recipients(queue, state, next_attempt);
      CREATE INDEX IF NOT EXISTS recipients_message ON recipients(message_id);
      CREATE INDEX IF NOT EXISTS recipients_dsn ON recipients(dsn_pending) WHERE dsn_pending IS NOT NULL;
      CREATE TABLE IF NOT EXISTS queue_flags (name TEXT PRIMARY KEY, frozen INTEGER NOT NULL);
    `);
    const log = options.log;
    this.categorizerStage = new StageRunner(
      'categorizer',
      () => this.categorizeBatch(),
      () => undefined,
      log,
    );
    this.localStage = new StageRunner(
      'local delivery',
      () => this.localBatch(),
      () => this.nextDue(QUEUE.local),
      log,
    );
    this.dsnStage = new StageRunner(
      'dsn',
      () => this.dsnBatch(),
      () => undefined,
      log,
    );
    this.routingStage = new StageRunner(
      'routing',
      () => this.routeBatch(),
      () => this.nextHoldingDue(),
      log,
    );
    this.remoteStage = new StageRunner(
      'remote delivery',
      () => this.remoteBatch(),
      () => this.nextRemoteDue(),
      log,
    );
    this.runners.push(
      this.categorizerStage,
      this.localStage,
      this.dsnStage,
      this.routingStage,
      this.remoteStage,
    );
  }

  private writes: (() => void)[] = [];
  private writesScheduled = false;

  /**
   * State changes that arrive in the same turn of the event loop share one transaction:
   * a commit per message was the largest cost of the relay path after the fsyncs.
   */
  private deferWrite(fn: () => void): void {
    this.writes.push(fn);
    if (!this.writesScheduled) {
      this.writesScheduled = true;
      setImmediate(() => this.flushWrites());
    }
  }

  /** Applies deferred state changes now; callers flush before they read what they wrote. */
  private flushWrites(): void {
    this.writesScheduled = false;
    const batch = this.writes;
    this.writes = [];
    if (!batch.length || !this.db.open) return;
    this.db.transaction(() => {
      for (const fn of batch) fn();
    })();
    if (this.categorizeAfterWrites) {
      this.categorizeAfterWrites = false;
      if (this.started) this.categorizerStage.kick();
    }
  }

  /** Failed recipients of one message: NDR events in the diagnostic log, one FAIL tracking event. */
  private recordFailures(
    source: string,
    log: Logger | undefined,
    m: { id: string; sender?: string; messageId?: string },
    list: { address: string; status: string }[],
  ): void {
    if (!list.length) return;
    for (const f of list) this.logNdr(log, f.status, f.address, m.messageId ?? m.id);
    this.o.tracking.write({
      event: 'FAIL',
      source,
      internalMessageId: m.id,
      ...(m.messageId ? { messageId: m.messageId } : {}),
      ...(m.sender !== undefined ? { sender: m.sender } : {}),
      recipients: list.map((f) => f.address),
      recipientStatus: list.map((f) => f.status),
    });
  }

  /** An NDR for a recipient, logged as the event log message of [002] (ids 3000-3033). */
  private logNdr(log: Logger | undefined, status: string, recipient: string, messageId: string): void {
    const e = ndrEvent(status);
    const fn = e.severity === 'Error' ? log?.error : e.severity === 'Warning' ? log?.warn : log?.info;
    fn?.call(
      log,
      { eventId: e.id, status, recipient, messageId },
      `A non-delivery report with a status code of ${status} was generated for recipient ${recipient} (Message-ID ${messageId}).`,
    );
  }

  /** Prepared statements are cached: preparing is a large share of the cost per message. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  private static readonly BODY_CACHE_BYTES = 64 * 1024 * 1024;

  private rememberBody(id: string, body: Buffer): void {
    if (body.length > 256 * 1024) return;
    this.bodies.set(id, body);
    this.bodyBytes += body.length;
    // Oldest first: a body that waits long (retry) is read from the spool again.
    for (const [key, b] of this.bodies) {
      if (this.bodyBytes <= QueuingEngine.BODY_CACHE_BYTES) break;
      this.bodies.delete(key);
      this.bodyBytes -= b.length;
    }
  }

  private forgetBody(id: string): void {
    const b = this.bodies.get(id);
    if (b) {
      this.bodies.delete(id);
      this.bodyBytes -= b.length;
    }
  }

  /** The message bytes as spooled (Received header included). */
  private async body(m: MessageRow): Promise<Buffer> {
    const cached = this.bodies.get(m.id);
    if (cached) return cached;
    const read = await Spool.readFile(m.file);
    if (!read) throw new TransportError(451, '4.3.0', `spool file of ${m.id} is incomplete`);
    return read.message;
  }

  // ------------------------------------------------------------------ submission

  /** Called once a message is acknowledged; its rows share the turn's transaction. */
  submit(message: SpooledMessage, body?: Buffer): void {
    if (body) this.rememberBody(message.envelope.id, body);
    this.deferWrite(() => {
      this.insertMessage(message, QUEUE.categorizer, false);
      const e = message.envelope;
      this.o.tracking.write({
        event: 'SUBMIT',
        source: 'STOREDRIVER',
        internalMessageId: e.id,
        messageId: e.messageId,
        sender: e.sender,
        recipients: e.recipients.map((r) => r.address),
        totalBytes: message.size,
        subject: e.subject,
        returnPath: e.sender,
      });
    });
    this.categorizeAfterWrites = true;
  }

  private insertMessage(m: SpooledMessage, queue: string, isDsn: boolean): void {
    const e = m.envelope;
    const info = this.sql(
      `INSERT OR IGNORE INTO messages (id, file, sender, size, received_at, envelope, is_dsn)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(e.id, m.file, e.sender, m.size, Date.parse(e.receivedAt), JSON.stringify(e), isDsn ? 1 : 0);
    if (info.changes === 0) return;
    const ins = this.sql(
      `INSERT INTO recipients (message_id, address, original, orcpt, notify, queue, state)
       VALUES (?, ?, ?, ?, ?, ?, 'ready')`,
    );
    for (const r of e.recipients) {
      ins.run(e.id, r.address, r.address, r.orcpt ?? null, r.notify ? JSON.stringify(r.notify) : null, queue);
    }
  }

  /** Brings the database in line with the spool after a start or a crash. */
  async recover(spooled: SpooledMessage[]): Promise<{ inserted: number; lost: number }> {
    const known = new Set((this.sql('SELECT id FROM messages').all() as { id: string }[]).map((r) => r.id));
    const onDisk = new Set(spooled.map((s) => s.envelope.id));
    let inserted = 0;
    this.db.transaction(() => {
      for (const s of spooled) {
        if (!known.has(s.envelope.id)) {
          // DSNs are generated here with no client: they re-enter through the DSN queue.
          const isDsn = s.envelope.sender === '' && s.envelope.client.ip === '';
          this.insertMessage(s, isDsn ? QUEUE.dsn : QUEUE.categorizer, isDsn);
          inserted++;
        }
      }
      // Deliveries in flight at the crash may have completed: check the mailbox first.
      this.sql(`UPDATE recipients SET recheck = 1 WHERE queue = ? AND state != 'done'`).run(QUEUE.local);
    })();
    let lost = 0;
    for (const id of known) {
      if (!onDisk.has(id)) {
        const open = this.sql(
          `SELECT COUNT(*) AS n FROM recipients WHERE message_id = ? AND (state != 'done' OR dsn_pending IS NOT NULL)`,
        ).get(id) as { n: number };
        // Finished, and the crash came between its file and its rows: nothing is lost.
        if (open.n > 0) {
          // The body is gone (removed by hand or corrupt): nothing can be delivered.
          this.o.log.error({ id }, 'queued message has no spool file; removing it from the queues');
          lost++;
        }
        this.db.transaction(() => {
          this.sql('DELETE FROM recipients WHERE message_id = ?').run(id);
          this.sql('DELETE FROM messages WHERE id = ?').run(id);
        })();
      }
    }
    // A crash between the last outcome and the removal leaves a finished message queued
    // (and its spool file on disk) with nothing left to revisit it: finish it now.
    const finished = this.sql(
      `SELECT id FROM messages m WHERE NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id
       AND (r.state != 'done' OR r.dsn_pending IS NOT NULL))`,
    ).all() as { id: string }[];
    await this.completeIfDone(finished.map((r) => r.id));
    return { inserted, lost };
  }

  start(): void {
    this.started = true;
    for (const r of this.runners) r.kick();
  }

  async stop(): Promise<void> {
    this.flushWrites();
    for (const r of this.runners) r.stop();
    // Deliveries under way finish their round and record it: an outcome lost here is a
    // second copy after the restart.
    const deadline = Date.now() + 10_000;
    while ((this.runners.some((r) => r.busy) || this.serving.size > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    this.flushWrites();
    await this.o.remote.close();
    this.db.close();
  }

  // ------------------------------------------------------------------ helpers

  /** Queue freeze flags, read once: every batch of every stage asks. */
  private frozenQueues: Set<string> | undefined;

  private queueFrozen(name: string): boolean {
    this.frozenQueues ??= new Set(
      (this.sql('SELECT name FROM queue_flags WHERE frozen = 1').all() as { name: string }[]).map(
        (r) => r.name,
      ),
    );
    return this.frozenQueues.has(name);
  }

  private nextDue(queue: string): number | undefined {
    const row = this.sql(
      `SELECT MIN(r.next_attempt) AS due FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.queue = ? AND r.state = 'retry' AND m.frozen = 0`,
    ).get(queue) as { due: number | null };
    return row.due ?? undefined;
  }

  private dueMessages(queues: string[], limit: number): MessageRow[] {
    const live = queues.filter((q) => !this.queueFrozen(q));
    if (!live.length) return [];
    const marks = live.map(() => '?').join(',');
    const rows = this.sql(
      `SELECT * FROM messages WHERE frozen = 0 AND id IN (
           SELECT DISTINCT message_id FROM recipients
           WHERE queue IN (${marks}) AND state != 'done' AND next_attempt <= ?
         ) ORDER BY received_at LIMIT ?`,
    ).all(...live, Date.now(), limit + this.activeMessages.size) as MessageRow[];
    return rows.filter((r) => !this.activeMessages.has(r.id)).slice(0, limit);
  }

  private rowsOf(messageId: string, queues: string[]): RecipientRow[] {
    const marks = queues.map(() => '?').join(',');
    return this.sql(
      `SELECT * FROM recipients WHERE message_id = ? AND queue IN (${marks}) AND state != 'done'
         AND next_attempt <= ?`,
    ).all(messageId, ...queues, Date.now()) as RecipientRow[];
  }

  /** rowsOf for many messages in one query (a JSON array of ids), by message id. */
  private rowsOfMany(messageIds: string[], queue: string): Map<string, RecipientRow[]> {
    const rows = this.sql(
      `SELECT * FROM recipients WHERE message_id IN (SELECT value FROM json_each(?)) AND queue = ?
         AND state != 'done' AND next_attempt <= ? ORDER BY id`,
    ).all(JSON.stringify(messageIds), queue, Date.now()) as RecipientRow[];
    const out = new Map<string, RecipientRow[]>();
    for (const r of rows) {
      const list = out.get(r.message_id);
      if (list) list.push(r);
      else out.set(r.message_id, [r]);
    }
    return out;
  }

  private envelopeOf(m: MessageRow): Envelope {
    return JSON.parse(m.envelope) as Envelope;
  }

  /** Removes a message whose every recipient is final and reported. */
  private async completeIfDone(messageIds: Iterable<string>): Promise<void> {
    if (!this.db.open) return;
    const open = this.sql(
      `SELECT COUNT(*) AS n FROM recipients WHERE message_id = ? AND (state != 'done' OR dsn_pending IS NOT NULL)`,
    );
    const done: MessageRow[] = [];
    for (const id of new Set(messageIds)) {
      if ((open.get(id) as { n: number }).n > 0) continue;
      const m = this.sql('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
      if (m) done.push(m);
    }
    if (!done.length) return;
    // The body goes first: a crash before the rows go leaves a finished message without a
    // file, which recovery drops. The other order made recovery resubmit it: a duplicate.
    await Promise.all(done.map((m) => this.o.spool.recycle(m.file)));
    // Stopped meanwhile: the rows stay, and recovery finds them without their files.
    if (!this.db.open) return;
    this.db.transaction(() => {
      for (const m of done) {
        this.sql('DELETE FROM recipients WHERE message_id = ?').run(m.id);
        this.sql('DELETE FROM messages WHERE id = ?').run(m.id);
      }
    })();
    for (const m of done) this.forgetBody(m.id);
  }

  // ------------------------------------------------------------------ categorizer

  private async countReceived(m: MessageRow): Promise<number> {
    const cached = this.bodies.get(m.id);
    const head = cached
      ? cached.subarray(0, 64 * 1024).toString('utf8')
      : await this.readHead(m.file).catch(() => '');
    const headerEnd = head.search(/\r?\n\r?\n/);
    const headers = headerEnd === -1 ? head : head.slice(0, headerEnd);
    return (headers.match(/^Received:/gim) ?? []).length;
  }

  private async readHead(file: string): Promise<string> {
    const fh = await fsp.open(file, 'r');
    try {
      const buf = Buffer.alloc(64 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  }

  private async categorizeBatch(): Promise<boolean> {
    // Small batches with a yield every few messages: SMTP sessions share this thread, and a
    // long synchronous stretch here is latency on every one of their replies.
    const messages = this.dueMessages([QUEUE.categorizer, QUEUE.dsn], 50);
    if (!messages.length) return false;
    const touched: string[] = [];
    const woke = { local: false, routing: false, remote: false, dsn: false };
    for (const [i, m] of messages.entries()) {
      if (i > 0 && i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
      const envelope = this.envelopeOf(m);
      const rows = this.rowsOf(m.id, [QUEUE.categorizer, QUEUE.dsn]);
      if (!rows.length) continue;
      const receivedHeaders = envelope.receivedHeaders ?? (await this.countReceived(m));
      const result = await this.o.categorizer.categorize(
        rows.map((r) => ({ id: r.id, address: r.address, original: r.original })),
        {
          sender: m.sender,
          authenticated: envelope.client.authenticatedAs !== undefined,
          size: m.size,
          receivedHeaders,
          envelopeRecipientCount: envelope.recipients.length,
        },
      );
      this.deferWrite(() => this.applyCategorization(m, envelope, rows, result.leaves, woke));
      for (const e of result.events) {
        this.o.tracking.write({
          event: e.event,
          source: 'CATEGORIZER',
          internalMessageId: m.id,
          messageId: envelope.messageId,
          sender: m.sender,
          recipients: [e.recipient],
          relatedRecipientAddress: e.related,
          messageInfo: e.info,
        });
      }
      touched.push(m.id);
    }
    this.flushWrites();
    if (woke.local) this.localStage.kick();
    if (woke.routing) this.routingStage.kick();
    if (woke.remote) this.remoteStage.kick();
    if (woke.dsn) this.dsnStage.kick();
    await this.completeIfDone(touched);
    return messages.length === 50;
  }

  private applyCategorization(
    m: MessageRow,
    envelope: Envelope,
    rows: RecipientRow[],
    leaves: { sourceId: number; address: string; route: Route }[],
    /** Set where the recipients went, so only the stages with new work are woken. */
    woke: { local: boolean; routing: boolean; remote: boolean; dsn: boolean },
  ): void {
    const bySource = new Map<number, typeof leaves>();
    for (const l of leaves) bySource.set(l.sourceId, [...(bySource.get(l.sourceId) ?? []), l]);
    const update = this.sql(
      `UPDATE recipients SET address = ?, queue = ?, next_hop = ?, state = ?, outcome = ?, status = ?,
       diagnostic = ?, dsn_pending = ?, route = ?, remote = ?, next_attempt = 0 WHERE id = ?`,
    );
    const insert = this.sql(
      `INSERT INTO recipients (message_id, address, original, orcpt, notify, queue, next_hop, state, outcome,
       status, diagnostic, dsn_pending, route, remote) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const failures: { address: string; status: string }[] = [];
    const placed = <P extends { queue: string; dsn: string | null; state: string; remote: number }>(
      p: P,
    ): P => {
      if (p.dsn) woke.dsn = true;
      if (p.state !== 'done') {
        if (p.remote) woke.remote = true;
        else if (p.queue === QUEUE.local) woke.local = true;
        else woke.routing = true;
      }
      return p;
    };
    const placement = (row: RecipientRow, route: Route) => placed(placeFor(row, route));
    const placeFor = (row: RecipientRow, route: Route) => {
      if (route.kind === 'failed') {
        failures.push({ address: row.address, status: route.status });
        return {
          queue: row.queue,
          nextHop: null,
          state: 'done',
          outcome: 'failed',
          status: route.status,
          diagnostic: `smtp; ${route.code} ${route.status} ${route.text}`,
          dsn: dsnFor('failure', notifyList(row), m.sender),
          route: null,
          remote: 0,
        };
      }
      if (route.kind !== 'local' && !this.queueFrozen(QUEUE.routing)) {
        // Routed at once when a next hop is open now; holds, failures and a frozen routing
        // queue are the routing stage's, as for mail that waits there.
        const hop = this.o.route(route, m.sender, {
          size: m.size,
          priority: envelope.priority ?? 'normal',
          system: m.is_dsn === 1 || m.sender === '',
        });
        if ('queue' in hop && hop.destination) {
          return {
            queue: hop.queue,
            nextHop: JSON.stringify(hop.destination),
            remote: 1,
            state: 'ready',
            outcome: null,
            status: null,
            diagnostic: null,
            dsn: null,
            route: JSON.stringify(route),
          };
        }
      }
      const queue = route.kind === 'local' ? QUEUE.local : QUEUE.routing;
      const nextHop =
        route.kind === 'local'
          ? null
          : route.kind === 'server'
            ? route.server
            : route.kind === 'remote'
              ? route.domain
              : route.host;
      return {
        queue,
        nextHop,
        remote: 0,
        state: 'ready',
        outcome: null,
        status: null,
        diagnostic: null,
        dsn: null,
        route: JSON.stringify(route),
      };
    };
    this.db.transaction(() => {
      for (const row of rows) {
        const mine = bySource.get(row.id) ?? [];
        if (mine.length === 1) {
          const p = placement(row, mine[0]!.route);
          update.run(
            mine[0]!.address,
            p.queue,
            p.nextHop,
            p.state,
            p.outcome,
            p.status,
            p.diagnostic,
            p.dsn,
            p.route,
            p.remote,
            row.id,
          );
          continue;
        }
        // Expanded (group, deliver-and-forward) or expanded to nobody.
        update.run(
          row.address,
          row.queue,
          null,
          'done',
          'expanded',
          '2.0.0',
          null,
          dsnFor('success', notifyList(row), m.sender) ? 'expanded' : null,
          null,
          0,
          row.id,
        );
        if (dsnFor('success', notifyList(row), m.sender)) woke.dsn = true;
        for (const leaf of mine) {
          // Members of an expanded group report failures only (RFC 3461 §6.2.7.3).
          const memberNotify = notifyList(row)?.includes('NEVER') ? row.notify : JSON.stringify(['FAILURE']);
          const p = placement({ ...row, address: leaf.address, notify: memberNotify }, leaf.route);
          insert.run(
            m.id,
            leaf.address,
            row.original,
            row.orcpt,
            memberNotify,
            p.queue,
            p.nextHop,
            p.state,
            p.outcome,
            p.status,
            p.diagnostic,
            p.dsn,
            p.route,
            p.remote,
          );
        }
      }
    })();
    this.recordFailures(
      'CATEGORIZER',
      this.o.categorizerLog,
      { id: m.id, sender: m.sender, messageId: envelope.messageId },
      failures,
    );
  }

  // ------------------------------------------------------------------ local delivery

  private async localBatch(): Promise<boolean> {
    const messages = this.dueMessages([QUEUE.local], 32);
    if (!messages.length) return false;
    await Promise.all(messages.map((m) => this.deliverLocal(m)));
    this.flushWrites();
    this.dsnStage.kick();
    await this.completeIfDone(messages.map((m) => m.id));
    return true;
  }

  private async deliverLocal(m: MessageRow): Promise<void> {
    this.activeMessages.add(m.id);
    try {
      const envelope = this.envelopeOf(m);
      const rows = this.rowsOf(m.id, [QUEUE.local]);
      if (!rows.length) return;
      let body: Buffer;
      try {
        body = await this.body(m);
      } catch (err) {
        this.o.log.error({ err, id: m.id }, 'cannot read spool file for local delivery');
        return;
      }
      const now = Date.now();
      const results: { row: RecipientRow; error?: TransportError }[] = [];
      for (const row of rows) {
        const route = JSON.parse(row.route ?? '{}') as Extract<Route, { kind: 'local' }>;
        const prefix = Buffer.from(`Return-Path: <${m.sender}>\r\nDelivered-To: ${row.address}\r\n`, 'utf8');
        try {
          const r = await this.o.store.deliver(
            { store: route.store, address: route.mailboxAddress, quotaKb: route.quotaKb },
            `${m.id}.${row.id}`,
            prefix,
            body,
            row.recheck === 1 || row.attempts > 0,
          );
          results.push({ row });
          this.o.tracking.write({
            event: r.duplicate ? 'DUPLICATEDELIVER' : 'DELIVER',
            source: 'STOREDRIVER',
            internalMessageId: m.id,
            messageId: envelope.messageId,
            sender: m.sender,
            recipients: [row.address],
            recipientStatus: ['250 2.6.0'],
            totalBytes: m.size,
            subject: envelope.subject,
            relatedRecipientAddress: row.original !== row.address ? row.original : undefined,
            messageInfo: route.store,
          });
        } catch (err) {
          if (!(err instanceof TransportError)) throw err;
          results.push({ row, error: err });
        }
      }
      this.deferWrite(() => this.recordAttempts(m, envelope, results, this.o.localRetry, now, 'STOREDRIVER'));
    } finally {
      this.activeMessages.delete(m.id);
    }
  }

  /** Records delivery results: delivered, failed (DSN), or retried per the schedule. */
  private recordAttempts(
    m: MessageRow,
    envelope: Envelope,
    results: { row: RecipientRow; error?: TransportError }[],
    policy: RetryPolicy,
    now: number,
    source: string,
    remoteMta?: string,
  ): void {
    const delivered = this.sql(
      `UPDATE recipients SET state = 'done', outcome = ?, status = '2.0.0', dsn_pending = ?,
       attempts = attempts + 1, last_error = NULL, recheck = 0, remote_mta = ? WHERE id = ?`,
    );
    const failed = this.sql(
      `UPDATE recipients SET state = 'done', outcome = 'failed', status = ?, diagnostic = ?, dsn_pending = ?,
       attempts = attempts + 1, last_error = ?, recheck = 0, remote_mta = ? WHERE id = ?`,
    );
    const retry = this.sql(
      `UPDATE recipients SET state = 'retry', attempts = attempts + 1, next_attempt = ?, last_error = ?,
       first_failure = COALESCE(first_failure, ?), delay_notified = ?, dsn_pending = COALESCE(?, dsn_pending),
       recheck = 0 WHERE id = ?`,
    );
    const deferred: string[] = [];
    const failedList: { address: string; status: string }[] = [];
    this.db.transaction(() => {
      for (const { row, error } of results) {
        const notify = notifyList(row);
        if (!error) {
          delivered.run(
            remoteMta ? 'relayed' : 'delivered',
            dsnFor('success', notify, m.sender),
            remoteMta ?? null,
            row.id,
          );
          continue;
        }
        const text = `${error.code} ${error.status} ${error.message}`;
        // A remote server's reply goes into the DSN as it was received (RFC 3464 §2.3.6).
        const diagnostic = `smtp; ${error instanceof RemoteReplyError ? error.remoteReply : text}`;
        if (error.permanent) {
          failed.run(
            error.status,
            diagnostic,
            dsnFor('failure', notify, m.sender),
            text,
            remoteMta ?? null,
            row.id,
          );
          failedList.push({ address: row.address, status: error.status });
          continue;
        }
        const verdict = afterTransientFailure(
          policy,
          m.received_at,
          row.attempts + 1,
          row.delay_notified === 1,
          now,
        );
        if (verdict.action === 'expire') {
          const expired = `Could not deliver the message in the time limit specified. Last error: ${text}`;
          failed.run('4.4.7', diagnostic, dsnFor('failure', notify, m.sender), expired, null, row.id);
          failedList.push({ address: row.address, status: '4.4.7' });
        } else {
          const delayDsn = verdict.notifyDelay ? dsnFor('delay', notify, m.sender) : null;
          retry.run(
            verdict.nextAttempt,
            text,
            now,
            verdict.notifyDelay ? 1 : row.delay_notified,
            delayDsn,
            row.id,
          );
          deferred.push(row.address);
        }
      }
    })();
    if (deferred.length) {
      this.o.tracking.write({
        event: 'DEFER',
        source,
        internalMessageId: m.id,
        messageId: envelope.messageId,
        sender: m.sender,
        recipients: deferred,
      });
    }
    this.recordFailures(
      source,
      source === 'STOREDRIVER' ? this.o.storeDriverLog : this.o.log,
      { id: m.id, sender: m.sender, messageId: envelope.messageId },
      failedList,
    );
  }

  // ------------------------------------------------------------------ routing and remote delivery

  /** Moves routed recipients into the remote queue of their next hop. */
  private async routeBatch(): Promise<boolean> {
    // Mail in a holding queue is routed again when its time comes (a connector back up,
    // a schedule window opening).
    const rows = (
      this.sql(
        `SELECT r.*, m.sender AS sender, m.received_at AS received_at, m.size AS size, m.is_dsn AS is_dsn,
         json_extract(m.envelope, '$.priority') AS priority,
         json_extract(m.envelope, '$.messageId') AS header_message_id FROM recipients r
         JOIN messages m ON m.id = r.message_id
         WHERE (r.queue = ? OR r.next_hop = 'hold') AND r.state != 'done' AND r.next_attempt <= ?
         AND m.frozen = 0 LIMIT 200`,
      ).all(QUEUE.routing, Date.now()) as (RecipientRow & {
        sender: string;
        received_at: number;
        size: number;
        is_dsn: number;
        priority: 'high' | 'low' | null;
        header_message_id: string | null;
      })[]
    ).filter((r) => !this.queueFrozen(r.queue));
    if (!rows.length) return false;
    const toRemote = this.sql(
      `UPDATE recipients SET queue = ?, next_hop = ?, remote = 1, state = 'ready', next_attempt = 0 WHERE id = ?`,
    );
    const hold = this.sql(
      `UPDATE recipients SET queue = ?, next_hop = 'hold', remote = 0, state = 'retry', next_attempt = ?,
       last_error = ? WHERE id = ?`,
    );
    const fail = this.sql(
      `UPDATE recipients SET state = 'done', outcome = 'failed', status = ?, diagnostic = ?, last_error = ?,
       dsn_pending = ? WHERE id = ?`,
    );
    const failed = new Map<string, { address: string; status: string }[]>();
    this.db.transaction(() => {
      for (const r of rows) {
        const hop = this.o.route(JSON.parse(r.route ?? '{}') as Route, r.sender, {
          size: r.size,
          priority: r.priority ?? 'normal',
          system: r.is_dsn === 1 || r.sender === '',
        });
        if ('fail' in hop) {
          const text = `${hop.fail.code} ${hop.fail.status} ${hop.fail.text}`;
          fail.run(
            hop.fail.status,
            `smtp; ${text}`,
            hop.fail.text,
            dsnFor('failure', notifyList(r), r.sender),
            r.id,
          );
          failed.set(r.message_id, [
            ...(failed.get(r.message_id) ?? []),
            { address: r.address, status: hop.fail.status },
          ]);
        } else if (hop.destination) {
          toRemote.run(hop.queue, JSON.stringify(hop.destination), r.id);
        } else if (Date.now() - r.received_at >= this.o.remoteRetry.expiration * 1000) {
          // Held mail expires like any other: no route, no schedule window, no ETRN in time.
          const text = `Could not deliver the message in the time limit specified. ${hop.reason}`;
          fail.run(
            '4.4.7',
            `smtp; 550 4.4.7 ${text}`,
            text,
            dsnFor('failure', notifyList(r), r.sender),
            r.id,
          );
          failed.set(r.message_id, [
            ...(failed.get(r.message_id) ?? []),
            { address: r.address, status: '4.4.7' },
          ]);
        } else {
          // Come back at the hold time, or at expiry if that is sooner.
          const expiry = r.received_at + this.o.remoteRetry.expiration * 1000;
          hold.run(hop.queue, Math.min(hop.retryAt, expiry), hop.reason, r.id);
        }
      }
    })();
    for (const [id, list] of failed) {
      const row = rows.find((r) => r.message_id === id);
      this.recordFailures(
        'ROUTING',
        this.o.log,
        { id, sender: row?.sender, messageId: row?.header_message_id ?? undefined },
        list,
      );
    }
    if (failed.size) {
      this.dsnStage.kick();
      await this.completeIfDone(failed.keys());
    }
    this.remoteStage.kick();
    return rows.length === 200;
  }

  private nextHoldingDue(): number | undefined {
    const row = this.sql(
      `SELECT MIN(next_attempt) AS due FROM recipients WHERE next_hop = 'hold' AND state = 'retry'`,
    ).get() as { due: number | null };
    return row.due ?? undefined;
  }

  private nextRemoteDue(): number | undefined {
    const row = this.sql(
      `SELECT MIN(r.next_attempt) AS due FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.remote = 1 AND r.state = 'retry' AND m.frozen = 0`,
    ).get() as { due: number | null };
    return row.due ?? undefined;
  }

  /** Starts a delivery for every remote queue with due mail that nobody is serving yet. */
  private async remoteBatch(): Promise<boolean> {
    const queues = this.sql(
      `SELECT DISTINCT r.queue AS queue, r.next_hop AS hop FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.remote = 1 AND r.state != 'done' AND r.next_attempt <= ? AND m.frozen = 0`,
    ).all(Date.now()) as { queue: string; hop: string }[];
    for (const q of queues) {
      if (this.serving.has(q.queue) || this.queueFrozen(q.queue)) continue;
      if (this.connectionsInUse >= this.o.maxConnections) break;
      this.serving.add(q.queue);
      void this.serveQueue(q.queue, JSON.parse(q.hop) as Destination).finally(() => {
        this.serving.delete(q.queue);
        this.remoteStage.kick();
      });
    }
    return false;
  }

  /** One delivery job per message: its recipients in `queue`, results recorded as they come. */
  private deliveryJobs(
    queue: string,
    messages: MessageRow[],
    touched: string[],
    rowsFor: (m: MessageRow) => RecipientRow[],
  ): DeliveryJob[] {
    const jobs: DeliveryJob[] = [];
    for (const m of messages) {
      const rows = rowsFor(m);
      if (!rows.length) continue;
      const envelope = this.envelopeOf(m);
      jobs.push({
        envelope,
        recipients: rows.map((r) => ({
          address: r.address,
          ...(notifyList(r) ? { notify: notifyList(r) } : {}),
          ...(r.orcpt ? { orcpt: r.orcpt } : {}),
        })),
        load: () => this.body(m),
        // The submitter's identity travels to the next organisation server (XEXCH50).
        properties: Buffer.from(
          JSON.stringify({ authenticatedAs: envelope.client.authenticatedAs ?? null, id: m.id }),
        ),
        done: (outcome) => {
          const now = Date.now();
          if ('error' in outcome) {
            this.deferWrite(() =>
              this.recordAttempts(
                m,
                envelope,
                rows.map((row) => ({ row, error: outcome.error })),
                this.o.remoteRetry,
                now,
                'SMTP',
              ),
            );
          } else {
            const results = rows.map((row, i) => {
              const reply = outcome.results[i]!.reply;
              if (reply.code >= 200 && reply.code < 300) return { row };
              const status = reply.status ?? (reply.code >= 500 ? '5.0.0' : '4.0.0');
              return {
                row,
                error: new RemoteReplyError(
                  reply.code,
                  status,
                  `${outcome.remoteMta} said: ${reply.text}`,
                  reply.text,
                ),
              };
            });
            this.deferWrite(() =>
              this.recordAttempts(m, envelope, results, this.o.remoteRetry, now, 'SMTP', outcome.remoteMta),
            );
            const sent = results.filter((r) => !r.error).map((r) => r.row.address);
            if (sent.length) {
              this.o.tracking.write({
                event: 'SEND',
                source: 'SMTP',
                internalMessageId: m.id,
                messageId: envelope.messageId,
                sender: m.sender,
                recipients: sent,
                serverIp: outcome.remoteMta,
                connectorId: queue,
                totalBytes: m.size,
                subject: envelope.subject,
              });
            }
          }
          touched.push(m.id);
        },
      });
    }
    return jobs;
  }

  /**
   * ATRN / TURN [RFC 2645]: the client that asked now acts as the server on the same
   * connection; the held mail for `domains` in the connectors' holding queues goes over it.
   */
  async deliverOverConnection(socket: Socket, queues: string[], domains: string[]): Promise<void> {
    const held = (m: MessageRow) =>
      (
        this.sql(
          `SELECT * FROM recipients WHERE message_id = ? AND next_hop = 'hold' AND state != 'done'`,
        ).all(m.id) as RecipientRow[]
      ).filter((r) => queues.includes(r.queue) && domains.some((d) => addressInDomain(r.address, d)));
    const messages = (
      this.sql(
        `SELECT * FROM messages WHERE frozen = 0 AND id IN (
           SELECT message_id FROM recipients WHERE next_hop = 'hold' AND state != 'done')`,
      ).all() as MessageRow[]
    ).filter((m) => held(m).length > 0);
    const touched: string[] = [];
    const jobs = this.deliveryJobs(queues.join(', '), messages, touched, held);
    try {
      await this.o.remote.runOnSocket(socket, jobs);
    } finally {
      this.flushWrites();
      this.dsnStage.kick();
      await this.completeIfDone(touched);
    }
  }

  /** How many held recipients ATRN / TURN would deliver for `domains`. */
  heldFor(queues: string[], domains: string[]): number {
    if (!queues.length) return 0;
    const rows = this.sql(
      `SELECT address, queue FROM recipients WHERE next_hop = 'hold' AND state != 'done'`,
    ).all() as { address: string; queue: string }[];
    return rows.filter((r) => queues.includes(r.queue) && domains.some((d) => addressInDomain(r.address, d)))
      .length;
  }

  private async serveQueue(queue: string, destination: Destination): Promise<void> {
    for (let round = 0; round < 1000 && !this.remoteStage.stopped; round++) {
      if (this.queueFrozen(queue)) return;
      const messages = this.sql(
        `SELECT * FROM messages WHERE frozen = 0 AND id IN (
             SELECT message_id FROM recipients WHERE queue = ? AND remote = 1 AND state != 'done' AND next_attempt <= ?
           ) ORDER BY received_at LIMIT 200`,
      ).all(queue, Date.now()) as MessageRow[];
      if (!messages.length) return;
      const touched: string[] = [];
      const rows = this.rowsOfMany(
        messages.map((m) => m.id),
        queue,
      );
      const jobs = this.deliveryJobs(queue, messages, touched, (m) => rows.get(m.id) ?? []);
      const connections = Math.max(
        1,
        Math.min(
          this.o.maxConnectionsPerQueue,
          // Idle cached sessions to other next hops are open connections too.
          this.o.maxConnections - this.connectionsInUse - this.o.remote.idleSessions(destination),
          Math.ceil(jobs.length / 4),
        ),
      );
      this.connectionsInUse += connections;
      try {
        await this.o.remote.run(destination, jobs, connections);
      } finally {
        this.connectionsInUse -= connections;
      }
      this.flushWrites();
      this.dsnStage.kick();
      await this.completeIfDone(touched);
    }
  }

  // ------------------------------------------------------------------ DSNs

  private async dsnBatch(): Promise<boolean> {
    const ids = this.sql(
      `SELECT DISTINCT message_id FROM recipients WHERE dsn_pending IS NOT NULL LIMIT 50`,
    ).all() as { message_id: string }[];
    if (!ids.length) return false;
    for (const { message_id } of ids) {
      const m = this.sql('SELECT * FROM messages WHERE id = ?').get(message_id) as MessageRow | undefined;
      if (m) await this.generateDsn(m);
    }
    await this.completeIfDone(ids.map((i) => i.message_id));
    this.categorizerStage.kick();
    return ids.length === 50;
  }

  private async generateDsn(m: MessageRow): Promise<void> {
    const envelope = this.envelopeOf(m);
    const rows = this.sql('SELECT * FROM recipients WHERE message_id = ? AND dsn_pending IS NOT NULL').all(
      m.id,
    ) as RecipientRow[];
    if (!rows.length) return;
    const clear = () =>
      this.db.transaction(() => {
        for (const r of rows) this.sql('UPDATE recipients SET dsn_pending = NULL WHERE id = ?').run(r.id);
      })();
    if (!m.sender) {
      // Nothing can be returned to the null sender: set it aside as badmail [003:5049].
      await this.badmail(m, rows);
      clear();
      return;
    }
    let original: Buffer;
    try {
      original = (await Spool.readFile(m.file))?.message ?? Buffer.alloc(0);
    } catch {
      original = Buffer.alloc(0);
    }
    const actionOf = (r: RecipientRow): DsnAction =>
      r.dsn_pending === 'delay'
        ? 'delayed'
        : r.dsn_pending === 'expanded'
          ? 'expanded'
          : r.outcome === 'delivered'
            ? 'delivered'
            : r.outcome === 'relayed'
              ? 'relayed'
              : 'failed';
    const reports: RecipientReport[] = rows.map((r) => {
      const action = actionOf(r);
      const status = action === 'delayed' ? '4.0.0' : (r.status ?? (action === 'failed' ? '5.0.0' : '2.0.0'));
      const text =
        action === 'failed'
          ? (r.last_error ?? r.diagnostic?.replace(/^smtp; \d{3} \S+ /, '') ?? 'Delivery failed.')
          : action === 'delayed'
            ? `Delivery has been delayed: ${r.last_error ?? 'temporary failure'}`
            : action === 'expanded'
              ? 'The distribution list was expanded.'
              : action === 'relayed'
                ? `The message was relayed to ${r.remote_mta ?? 'the next hop'}.`
                : 'The message was delivered.';
      const policy = r.remote ? this.o.remoteRetry : this.o.localRetry;
      const expiry = m.received_at + policy.expiration * 1000;
      return {
        finalRecipient: r.address,
        ...(r.orcpt ? { originalRecipient: r.orcpt.replace(/^([^;]+);\s*/, '$1; ') } : {}),
        action,
        status: r.dsn_pending === 'delay' ? status : status,
        ...(r.diagnostic ? { diagnostic: r.diagnostic } : {}),
        ...(r.remote_mta ? { remoteMta: r.remote_mta } : {}),
        text: action === 'failed' ? text.replace(/^\d{3} \S+ /, '') : text,
        ...(action === 'delayed' ? { willRetryUntil: new Date(expiry) } : {}),
      };
    });
    const dsnId = `${m.id}N${m.dsn_count + 1}`;
    const spool = this.o.spool;
    const file = spool.fileFor(dsnId);
    // A DSN written before a crash is taken as it is; a file that cannot be read whole (a
    // write that never finished) is written again.
    const earlier = await Spool.readFile(file).catch(() => undefined);
    if (!earlier) await fsp.rm(file, { force: true });
    const failedAny = reports.some((r) => r.action === 'failed');
    const recipients = [{ address: m.sender }];
    if (failedAny && this.o.ndrCopyTo) recipients.push({ address: this.o.ndrCopyTo });
    const dsnEnvelope: Envelope = {
      id: dsnId,
      receivedAt: new Date().toISOString(),
      server: this.o.serverName,
      virtualServer: '',
      client: { ip: '', port: 0, helo: this.o.fqdn, tls: false },
      sender: '',
      body: '8BITMIME',
      smtputf8: envelope.smtputf8,
      recipients,
    };
    let spooled: SpooledMessage;
    if (earlier) {
      spooled = { envelope: earlier.envelope, size: earlier.message.length, file };
    } else {
      const dsn = buildDsn({
        reportingMta: this.o.fqdn,
        originalEnvelopeId: envelope.envid,
        arrivalDate: new Date(m.received_at),
        originalSender: m.sender,
        original,
        ret: envelope.ret ?? 'FULL',
        recipients: reports,
        now: new Date(),
      });
      dsnEnvelope.messageId = dsn.id;
      dsnEnvelope.subject = dsn.subject;
      const writer = spool.createWriter(dsnEnvelope);
      await writer.write(dsn.bytes);
      spooled = await writer.commit();
    }
    this.db.transaction(() => {
      this.insertMessage(spooled, QUEUE.dsn, true);
      this.sql('UPDATE messages SET dsn_count = dsn_count + 1 WHERE id = ?').run(m.id);
      for (const r of rows) this.sql('UPDATE recipients SET dsn_pending = NULL WHERE id = ?').run(r.id);
    })();
    this.o.tracking.write({
      event: 'DSN',
      source: 'DSN',
      internalMessageId: dsnId,
      messageId: spooled.envelope.messageId,
      sender: '',
      recipients: recipients.map((r) => r.address),
      reference: envelope.messageId ?? m.id,
      relatedRecipientAddress: rows.map((r) => r.address).join(';'),
      recipientStatus: reports.map((r) => r.status),
      messageInfo: [...new Set(reports.map((r) => r.action))].join(','),
    });
  }

  private async badmail(m: MessageRow, rows: RecipientRow[]): Promise<void> {
    const dir = path.resolve(this.o.dataDir, this.o.badmailDir);
    await fsp.mkdir(dir, { recursive: true });
    const target = path.join(dir, `${m.id}.bad`);
    await fsp.copyFile(m.file, target).catch(() => undefined);
    const report = rows
      .map((r) => `${r.address}\t${r.status ?? ''}\t${r.diagnostic ?? r.last_error ?? ''}`)
      .join('\n');
    await fsp.writeFile(path.join(dir, `${m.id}.bdr`), `${report}\n`).catch(() => undefined);
    this.o.tracking.write({
      event: 'BADMAIL',
      source: 'DSN',
      internalMessageId: m.id,
      sender: '',
      recipients: rows.map((r) => r.address),
      recipientStatus: rows.map((r) => r.status ?? ''),
      messageInfo: target,
    });
  }

  // ------------------------------------------------------------------ queue viewer operations

  listQueues(): QueueSummary[] {
    const rows = this.sql(
      `SELECT r.queue AS queue, r.next_hop AS hop, r.message_id AS mid, MIN(m.size) AS size,
                MIN(m.received_at) AS received, MAX(m.frozen) AS frozen,
                SUM(r.state = 'retry') AS retrying, COUNT(*) AS n,
                MIN(CASE WHEN r.state = 'retry' THEN r.next_attempt END) AS next_retry,
                SUM(r.next_hop = 'hold' AND r.last_error LIKE 'Connector schedule%') AS scheduled,
                SUM(r.next_hop = 'hold' AND r.last_error LIKE 'Remote triggered delivery%') AS remote_held,
                MAX(r.last_error) AS last_error
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.state != 'done' GROUP BY r.queue, r.message_id`,
    ).all() as {
      queue: string;
      mid: string;
      size: number;
      received: number;
      frozen: number;
      retrying: number;
      n: number;
      next_retry: number | null;
      last_error: string | null;
      scheduled: number;
      remote_held: number;
    }[];
    const flags = new Map(
      (this.sql('SELECT name, frozen FROM queue_flags').all() as { name: string; frozen: number }[]).map(
        (f) => [f.name, f.frozen === 1],
      ),
    );
    const out = new Map<
      string,
      QueueSummary & { allRetry: boolean; allScheduled: boolean; allRemote: boolean }
    >();
    // A frozen queue stays listed while empty: new mail for it will wait as Frozen.
    const frozenNames = [...flags].filter(([, f]) => f).map(([n]) => n);
    for (const q of [...Object.values(QUEUE), ...frozenNames]) {
      out.set(q, {
        name: q,
        state: 'Ready',
        frozen: flags.get(q) ?? false,
        messageCount: 0,
        totalSize: 0,
        allRetry: true,
        allScheduled: true,
        allRemote: true,
      });
    }
    for (const r of rows) {
      const s =
        out.get(r.queue) ??
        out
          .set(r.queue, {
            name: r.queue,
            state: 'Ready',
            frozen: flags.get(r.queue) ?? false,
            messageCount: 0,
            totalSize: 0,
            allRetry: true,
            allScheduled: true,
            allRemote: true,
          })
          .get(r.queue)!;
      s.messageCount++;
      s.totalSize += r.size;
      const received = new Date(r.received).toISOString();
      if (!s.oldest || received < s.oldest) s.oldest = received;
      if (r.next_retry !== null) {
        const nr = new Date(r.next_retry).toISOString();
        if (!s.nextRetry || nr < s.nextRetry) s.nextRetry = nr;
      }
      if (r.last_error) s.lastError = r.last_error;
      if (r.retrying < r.n) s.allRetry = false;
      if (r.scheduled < r.n) s.allScheduled = false;
      if (r.remote_held < r.n) s.allRemote = false;
    }
    return [...out.values()].map(({ allRetry, allScheduled, allRemote, ...s }) => ({
      ...s,
      state: s.frozen
        ? 'Frozen'
        : s.messageCount && allRemote
          ? 'Remote'
          : s.messageCount && allScheduled
            ? 'Scheduled'
            : s.messageCount && allRetry
              ? 'Retry'
              : this.activeIn(s.name)
                ? 'Active'
                : 'Ready',
    }));
  }

  private activeIn(queue: string): boolean {
    if (queue === QUEUE.local) return this.localStage.busy;
    if (queue === QUEUE.categorizer) return this.categorizerStage.busy;
    if (queue === QUEUE.dsn) return this.dsnStage.busy;
    return this.serving.has(queue);
  }

  findMessages(q: FindQuery = {}): MessageSummary[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.sender) {
      where.push('lower(m.sender) = lower(?)');
      args.push(q.sender);
    }
    if (q.recipient) {
      where.push(
        `m.id IN (SELECT message_id FROM recipients WHERE lower(address) = lower(?) OR lower(original) = lower(?))`,
      );
      args.push(q.recipient, q.recipient);
    }
    if (q.queue) {
      where.push(`m.id IN (SELECT message_id FROM recipients WHERE queue = ? AND state != 'done')`);
      args.push(q.queue);
    }
    const rows = this.sql(
      `SELECT * FROM messages m ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY received_at`,
    ).all(...args) as MessageRow[];
    const out: MessageSummary[] = [];
    for (const m of rows) {
      const s = this.summary(m);
      if (q.state && s.state !== q.state) continue;
      out.push(s);
      if (out.length >= (q.limit ?? 100)) break;
    }
    return out;
  }

  private summary(m: MessageRow): MessageSummary {
    const envelope = this.envelopeOf(m);
    const rcpts = this.sql('SELECT * FROM recipients WHERE message_id = ? ORDER BY id').all(
      m.id,
    ) as RecipientRow[];
    const open = rcpts.filter((r) => r.state !== 'done');
    const queues = [...new Set(open.map((r) => r.queue))];
    const state: QueueState =
      m.frozen || queues.some((q) => this.queueFrozen(q))
        ? 'Frozen'
        : this.activeMessages.has(m.id)
          ? 'Active'
          : open.length && open.every((r) => r.state === 'retry')
            ? 'Retry'
            : 'Ready';
    return {
      id: m.id,
      sender: m.sender,
      size: m.size,
      receivedAt: new Date(m.received_at).toISOString(),
      subject: envelope.subject,
      messageId: envelope.messageId,
      frozen: m.frozen === 1,
      state,
      queues,
      recipients: rcpts.map((r) => ({
        address: r.address,
        queue: r.queue,
        state: r.state === 'done' ? (r.outcome ?? 'done') : r.state,
        ...(r.status ? { status: r.status } : {}),
        ...(r.last_error ? { lastError: r.last_error } : {}),
      })),
    };
  }

  getMessage(id: string): MessageSummary | undefined {
    const m = this.sql('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
    return m ? this.summary(m) : undefined;
  }

  private requireMessage(id: string): MessageRow {
    const m = this.sql('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
    if (!m) throw new TransportError(550, '5.1.0', `no message ${id} in the queues`);
    return m;
  }

  freezeQueue(name: string, frozen: boolean): void {
    this.sql(
      'INSERT INTO queue_flags (name, frozen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET frozen = ?',
    ).run(name, frozen ? 1 : 0, frozen ? 1 : 0);
    this.frozenQueues = undefined;
    if (!frozen) this.kickAll();
  }

  /** Message freeze is independent of queue freeze [SPEC §6]. */
  freezeMessage(id: string, frozen: boolean): void {
    this.requireMessage(id);
    this.sql('UPDATE messages SET frozen = ? WHERE id = ?').run(frozen ? 1 : 0, id);
    if (!frozen) this.kickAll();
  }

  /** Deletes a message; with `ndr` every open recipient gets a failure DSN. Refused on DSNs. */
  deleteMessage(id: string, ndr: boolean): void {
    const m = this.requireMessage(id);
    if (ndr && (m.is_dsn || !m.sender)) {
      throw new TransportError(550, '5.7.1', 'a delivery status notification cannot be deleted with an NDR');
    }
    const envelope = this.envelopeOf(m);
    const open = this.sql(`SELECT * FROM recipients WHERE message_id = ? AND state != 'done'`).all(
      id,
    ) as RecipientRow[];
    if (ndr) {
      this.db.transaction(() => {
        for (const r of open) {
          this.sql(
            `UPDATE recipients SET state = 'done', outcome = 'failed', status = '5.0.0',
               diagnostic = 'smtp; 550 5.0.0 The message was deleted by an administrator.',
               last_error = 'The message was deleted by an administrator.', dsn_pending = ? WHERE id = ?`,
          ).run(dsnFor('failure', notifyList(r), m.sender), r.id);
        }
      })();
      this.dsnStage.kick();
    } else {
      this.db.transaction(() => {
        this.sql('DELETE FROM recipients WHERE message_id = ?').run(id);
        this.sql('DELETE FROM messages WHERE id = ?').run(id);
      })();
      void this.o.spool.recycle(m.file);
    }
    this.o.tracking.write({
      event: 'FAIL',
      source: 'ADMIN',
      internalMessageId: id,
      messageId: envelope.messageId,
      sender: m.sender,
      recipients: open.map((r) => r.address),
      // Deleted with NDR, each recipient failed with 5.0.0 (as its NDR says); without, none did.
      ...(ndr ? { recipientStatus: open.map(() => '5.0.0') } : {}),
      messageInfo: ndr ? 'deleted by administrator with NDR' : 'deleted by administrator without NDR',
    });
  }

  /** The message as it sits in the spool: its original bytes, Received header included. */
  async exportMessage(id: string): Promise<Buffer> {
    const m = this.requireMessage(id);
    const read = await Spool.readFile(m.file);
    if (!read) throw new TransportError(451, '4.3.0', `spool file of ${id} is incomplete`);
    return read.message;
  }

  /**
   * Held mail for `domain` in the named holding queues is routed again now (ETRN). Returns
   * how many recipients were waiting.
   */
  releaseHeld(queues: string[], domain: string): number {
    if (!queues.length) return 0;
    const marks = queues.map(() => '?').join(',');
    const d = domain.toLowerCase();
    const info = this.sql(
      `UPDATE recipients SET next_attempt = 0 WHERE next_hop = 'hold' AND state != 'done'
       AND queue IN (${marks}) AND (lower(address) LIKE ? OR lower(address) LIKE ?)`,
    ).run(...queues, `%@${d}`, `%.${d}`);
    // Mail not routed yet will meet the released connector when it is.
    const pending = this.sql(
      `SELECT COUNT(*) AS n FROM recipients WHERE queue IN (?, ?) AND state != 'done'
       AND (lower(address) LIKE ? OR lower(address) LIKE ?)`,
    ).get(QUEUE.categorizer, QUEUE.routing, `%@${d}`, `%.${d}`) as { n: number };
    if (info.changes) this.routingStage.kick();
    return info.changes + pending.n;
  }

  /** Routes held mail again now (link state changed: a connector or a server came back). */
  retryHeld(): void {
    this.sql(
      `UPDATE recipients SET next_attempt = 0 WHERE next_hop = 'hold' AND state = 'retry'
      AND last_error NOT LIKE 'Connector schedule%' AND last_error NOT LIKE 'Remote triggered delivery%'`,
    ).run();
    if (this.started) this.routingStage.kick();
  }

  /** Force connection: every recipient waiting for a retry in `queue` (or all) is due now. */
  retryNow(queue?: string): number {
    const info = queue
      ? this.sql(`UPDATE recipients SET next_attempt = 0 WHERE state = 'retry' AND queue = ?`).run(queue)
      : this.sql(`UPDATE recipients SET next_attempt = 0 WHERE state = 'retry'`).run();
    this.kickAll();
    return info.changes;
  }

  private kickAll(): void {
    if (this.started) for (const r of this.runners) r.kick();
  }
}
