// Message tracking: every stage writes an event with the fields of [002 "Fields in Message
// Tracking"]; stored in SQLite beside the queues, indexed by message-id, sender,
// recipient and time, kept `retentionDays` days (7 by default) [003:7247-7282].
//
// Writes run on a worker thread (tracking-writer.ts), reads on this one: see README.md.
// A batch the database refuses (disk full) is held and written again later, in order;
// past maxHeldEvents the loss is recorded as a GAP event (HeldEvents, at the end).
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import {
  openTrackingDb,
  pruneEvents,
  type EventRowValues,
  type FromWriter,
  type ToWriter,
  type WriterData,
} from './schema.js';
import { HeldEvents } from './held-events.js';
import type { TrackingEventName } from './event-names.js';

export type { TrackingEventName } from './event-names.js';

export interface TrackingEvent {
  event: TrackingEventName;
  source: string;
  internalMessageId: string;
  messageId?: string;
  sender?: string;
  recipients?: string[];
  recipientStatus?: string[];
  clientIp?: string;
  serverIp?: string;
  connectorId?: string;
  totalBytes?: number;
  relatedRecipientAddress?: string;
  reference?: string;
  subject?: string;
  returnPath?: string;
  messageInfo?: string;
  directionality?: 'Incoming' | 'Originating';
}

export interface TrackingRow extends TrackingEvent {
  dateTime: string;
  serverHostname: string;
  recipientCount: number;
}

export interface TrackingQuery {
  sender?: string;
  recipient?: string;
  messageId?: string;
  internalMessageId?: string;
  event?: string;
  start?: Date;
  end?: Date;
  limit?: number;
}

export class MessageTracking {
  /** Reads (search); also the only connection when tracking is switched off (no writer thread). */
  private readonly db: Database.Database;
  /** The writer thread (when tracking is on); started again on the next batch if it dies. */
  private writer: Worker | undefined;
  private pending: EventRowValues[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private seq = 0;
  /** Messages posted to the writer and not yet answered, by sequence number. */
  private readonly unanswered = new Map<number, (r: FromWriter) => void>();
  /** Events whose batch failed (disk full): written again later, oldest first. */
  private readonly held = new HeldEvents();
  private retryTimer: NodeJS.Timeout | undefined;
  /** The answer to the last message posted to the writer. */
  private last: Promise<FromWriter> | undefined;
  private closing: Promise<void> | undefined;
  private quietUntil = 0;
  private suppressed = 0;
  /** Observers of every event (counters), called even when tracking is switched off. */
  readonly listeners: ((e: TrackingEvent) => void)[] = [];
  /**
   * Where failures of the writer thread go (disk full, a locked or damaged database):
   * tracking goes on, the batch in question is held and written again later. At most one
   * report every 10 s.
   */
  onError: (err: Error) => void = (err) => console.error(`bridgehead: message tracking: ${err.message}`);
  /** Events are being lost (more held than maxHeldEvents); said once per gap. */
  onWarning: (text: string) => void = (text) => console.warn(`bridgehead: message tracking: ${text}`);

  constructor(
    private readonly file: string,
    private readonly serverHostname: string,
    private readonly options: {
      enabled: boolean;
      logSubject: boolean;
      retentionDays: number;
      /** Events kept while the database cannot be written; beyond this they are lost (a GAP). */
      maxHeldEvents?: number;
    },
  ) {
    // The schema is created here, before any writer exists, so the read connection never
    // sees a missing table and a bad path still fails the constructor.
    this.db = openTrackingDb(file);
    if (options.enabled) this.writer = this.startWriter();
  }

  /** Records an event; the events of one tick go to the writer thread as one batch (one transaction). */
  write(e: TrackingEvent): void {
    for (const l of this.listeners) l(e);
    if (!this.options.enabled || this.closing) return;
    const recipients = e.recipients ?? [];
    this.pending.push([
      Date.now(),
      this.serverHostname,
      e.event,
      e.source,
      e.internalMessageId,
      e.messageId ?? null,
      e.sender?.toLowerCase() ?? null,
      JSON.stringify(recipients),
      e.recipientStatus ? JSON.stringify(e.recipientStatus) : null,
      recipients.length,
      e.clientIp ?? null,
      e.serverIp ?? null,
      e.connectorId ?? null,
      e.totalBytes ?? null,
      e.relatedRecipientAddress ?? null,
      e.reference ?? null,
      this.options.logSubject ? (e.subject ?? null) : null,
      e.returnPath ?? null,
      e.messageInfo ?? null,
      e.directionality ?? null,
    ]);
    // Events of one short burst share a commit; readers of the database see them within 20 ms.
    this.flushTimer ??= setTimeout(() => this.flush(), 20);
  }

  /** Hands the pending events to the writer thread now (without waiting for the commit). */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const rows = this.pending;
    this.pending = [];
    if (!rows.length) return;
    // While earlier events wait to be written again, new ones queue behind them, in order.
    if (this.held.waiting) {
      this.hold(rows, undefined);
      return;
    }
    this.postBatch(rows);
  }

  private postBatch(rows: EventRowValues[]): Promise<FromWriter> {
    return this.post({ type: 'batch', seq: ++this.seq, rows }).then((r) => {
      if (r.error) this.hold(rows, r.error);
      return r;
    });
  }

  /** Keeps the rows of a failed batch (bounded) and tries them again in a second. */
  private hold(rows: EventRowValues[], error: string | undefined): void {
    const limit = this.options.maxHeldEvents ?? 10_000;
    const hadGap = this.held.gap !== undefined;
    this.held.add(rows, limit, error);
    if (!hadGap && this.held.gap) {
      try {
        this.onWarning(
          `${limit} events wait to be written (${error ?? 'the database cannot be written'}); ` +
            'further events are lost until it can be written again, and a GAP event will say how many',
        );
      } catch {
        // A failing logger must not stop tracking.
      }
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = undefined;
      this.retryHeld();
    }, 1000);
    // A full disk must not keep a stopping process alive: close() tries once more.
    this.retryTimer.unref();
  }

  /** One batch: every held event, then a GAP event if some were lost. */
  private retryHeld(): Promise<FromWriter> | undefined {
    const taken = this.held.take(this.serverHostname);
    if (!taken) return undefined;
    return this.post({ type: 'batch', seq: ++this.seq, rows: taken.rows }).then((r) => {
      if (r.error) this.held.putBack(taken, r.error);
      else this.held.done();
      if (this.held.waiting && !this.closing) this.scheduleRetry();
      return r;
    });
  }

  /**
   * Resolves once every event written so far is committed (or its failure reported).
   * Held events are tried again now rather than at the next retry.
   */
  async flushed(): Promise<void> {
    this.flush();
    if (this.held.waiting) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      const retry = this.retryHeld();
      if (!retry) this.scheduleRetry();
    }
    await this.last;
  }

  /** True while a writer thread runs (never when tracking is switched off). */
  get writerRunning(): boolean {
    return this.writer !== undefined;
  }

  /** Events matching `q`, oldest first; includes every event written before the call. */
  async search(q: TrackingQuery): Promise<TrackingRow[]> {
    await this.flushed();
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.sender) {
      where.push('e.sender = ?');
      args.push(q.sender.toLowerCase());
    }
    if (q.recipient) {
      where.push('e.id IN (SELECT event_id FROM event_recipients WHERE recipient = ?)');
      args.push(q.recipient.toLowerCase());
    }
    if (q.messageId) {
      where.push('e.message_id = ?');
      args.push(q.messageId);
    }
    if (q.internalMessageId) {
      where.push('e.internal_message_id = ?');
      args.push(q.internalMessageId);
    }
    if (q.event) {
      where.push('e.event = ?');
      args.push(q.event.toUpperCase());
    }
    if (q.start) {
      where.push('e.time >= ?');
      args.push(q.start.getTime());
    }
    if (q.end) {
      where.push('e.time <= ?');
      args.push(q.end.getTime());
    }
    const sql = `SELECT * FROM events e ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY e.id LIMIT ?`;
    args.push(q.limit ?? 1000);
    return (this.db.prepare(sql).all(...args) as Record<string, unknown>[]).map((r) => ({
      dateTime: new Date(r.time as number).toISOString(),
      serverHostname: r.server as string,
      event: r.event as TrackingEventName,
      source: r.source as string,
      internalMessageId: r.internal_message_id as string,
      messageId: (r.message_id as string) ?? undefined,
      sender: (r.sender as string) ?? undefined,
      recipients: JSON.parse(r.recipients as string) as string[],
      recipientStatus: r.recipient_status
        ? (JSON.parse(r.recipient_status as string) as string[])
        : undefined,
      recipientCount: r.recipient_count as number,
      clientIp: (r.client_ip as string) ?? undefined,
      serverIp: (r.server_ip as string) ?? undefined,
      connectorId: (r.connector_id as string) ?? undefined,
      totalBytes: (r.total_bytes as number) ?? undefined,
      relatedRecipientAddress: (r.related_recipient as string) ?? undefined,
      reference: (r.reference as string) ?? undefined,
      subject: (r.subject as string) ?? undefined,
      returnPath: (r.return_path as string) ?? undefined,
      messageInfo: (r.message_info as string) ?? undefined,
      directionality: (r.directionality as 'Incoming' | 'Originating') ?? undefined,
    }));
  }

  /**
   * Deletes events older than the retention period, on the writer thread; resolves with
   * how many. Never rejects: a failure is reported through `onError` and counts 0.
   */
  async prune(now = Date.now()): Promise<number> {
    if (this.closing) return 0;
    const cutoff = now - this.options.retentionDays * 86400_000;
    if (!this.options.enabled) {
      // No writer thread and no event writes: the old events still age out, here.
      try {
        return pruneEvents(this.db, cutoff);
      } catch (err) {
        this.report(err as Error);
        return 0;
      }
    }
    this.flush();
    const r = await this.post({ type: 'prune', seq: ++this.seq, cutoff });
    return r.error ? 0 : r.changes;
  }

  /**
   * Commits the pending events, stops the writer thread and closes the read connection.
   * Await it before the process exits, or the last batch may be lost. Never rejects.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    try {
      clearTimeout(this.retryTimer);
      this.flush();
      // Held events get one last try.
      this.retryHeld();
      const w = this.writer;
      if (w) {
        // Answered after every batch and purge posted before it: the writer commits them all.
        await this.post({ type: 'close', seq: ++this.seq });
        this.writer = undefined; // the exit that follows is expected
        await w.terminate();
      }
      if (this.held.waiting) {
        // Not rate-limited: the last word on what this run could not record.
        const lost = this.held.count + (this.held.gap?.lost ?? 0);
        this.onError(new Error(`${lost} event(s) lost at shutdown: the tracking database cannot be written`));
      }
      this.db.close();
    } catch (err) {
      this.report(err as Error);
    }
  }

  /** Posts `m` to the writer (starting it if need be); resolves with its answer, never rejects. */
  private post(m: ToWriter): Promise<FromWriter> {
    const w = (this.writer ??= this.startWriter());
    // The thread keeps the process alive only while it has work in hand.
    if (this.unanswered.size === 0) w.ref();
    const answer = new Promise<FromWriter>((resolve) => this.unanswered.set(m.seq, resolve));
    w.postMessage(m);
    this.last = answer;
    return answer;
  }

  private startWriter(): Worker {
    const data: WriterData = { file: this.file };
    const w = new Worker(new URL('./tracking-writer.js', import.meta.url), { workerData: data });
    w.unref();
    w.on('message', (r: FromWriter) => {
      const resolve = this.unanswered.get(r.seq);
      this.unanswered.delete(r.seq);
      if (this.unanswered.size === 0) w.unref();
      if (r.error) this.report(new Error(r.error));
      resolve?.(r);
    });
    w.on('error', (err) => this.report(err));
    w.on('exit', (code) => {
      if (this.writer !== w) return;
      // Died unexpectedly: what it had in hand is lost; the next batch starts a new thread.
      this.writer = undefined;
      const lost = [...this.unanswered];
      this.unanswered.clear();
      this.report(
        new Error(
          `writer thread exited (code ${code}); ${lost.length} unanswered batch(es) or purge(s) lost`,
        ),
      );
      for (const [seq, resolve] of lost) resolve({ seq, changes: 0, error: 'writer thread exited' });
    });
    return w;
  }

  private report(err: Error): void {
    const now = Date.now();
    if (now < this.quietUntil) {
      this.suppressed++;
      return;
    }
    this.quietUntil = now + 10_000;
    const more = this.suppressed ? ` (and ${this.suppressed} further error(s) in the last 10 s)` : '';
    this.suppressed = 0;
    try {
      this.onError(new Error(err.message + more, { cause: err }));
    } catch {
      // A failing logger must not stop tracking.
    }
  }
}
