// NAME      categorizer worker: drains "Messages awaiting directory lookup" and the DSN queue
// DESCRIPTION
//   Resolves each message's recipients (categorizer.ts: directory, expansion, restrictions,
//   limits, hop count) and places each leaf (placement.ts): final failure, Local delivery,
//   straight into an open remote queue, or to the routing stage. An expanded recipient is
//   final as "expanded" and its members are new rows. Small batches with a yield every ten
//   messages: SMTP sessions share this thread, and a long synchronous stretch here is
//   latency on every one of their replies.
//   A directory that cannot answer (DirectoryUnavailableError) decides nothing: the
//   message's rows stay in this queue in Retry (4.4.3) and are categorized again after
//   directoryRetrySeconds (or at `queue retry`); nothing gets 5.1.1 for it, though the
//   message's delay notice and 4.4.7 expiry still fall due.
// TRIGGERS  woken when a submission commits and when a DSN is spooled; wakes only the
//           stages whose queues received rows.
import type { Logger } from 'pino';
import type { QueueStore } from '../queue/store/queue-store.js';
import type { BodyCache } from '../queue/bodies.js';
import { QUEUE, STAGE, type StageName } from '../queue/names.js';
import { deadlineFor, verdictFor, type NotifyPolicy } from '../queue/outcomes.js';
import type { RetryPolicy } from '../queue/retry.js';
import type { Stage } from '../queue/scheduler.js';
import type { Envelope } from '../queue/spool.js';
import type { Placement } from '../queue/store/queue-store.js';
import { notifyList, type MessageRow, type RecipientRow } from '../queue/store/rows.js';
import { countReceivedHeaders } from '../message/headers.js';
import type { TrackingEvent } from '../tracking/tracking.js';
import { trackingEvent } from '../tracking/events.js';
import type { FailureRecorder } from '../dsn/failures.js';
import { memberNotify } from '../dsn/notify.js';
import type { Categorizer, Leaf, Route } from './categorizer.js';
import { expandedPlacement, placeRecipient } from './placement.js';
import type { QueueSink } from '../sinks/sink.js';
import { notifyQueueSinks, routeAfterSinks } from '../sinks/runner.js';
import type { StageQueue } from '../queue/core.js';
import { DirectoryUnavailableError } from '../directory/unavailable.js';

/** The next hop routing would choose now, if it is open (a remote queue and its destination). */
export type OpenNextHop = (
  route: Exclude<Route, { kind: 'local' | 'failed' }>,
  sender: string,
  message: { size: number; priority: 'high' | 'normal' | 'low'; system: boolean },
) => { queue: string; destination: string } | undefined;

export interface CategorizerWorkerOptions {
  categorizer: Pick<Categorizer, 'categorize'>;
  openNextHop: OpenNextHop;
  notifyPolicy: NotifyPolicy;
  remoteRetry: RetryPolicy;
  track: (e: TrackingEvent) => void;
  recordFailures: FailureRecorder;
  log?: Logger;
  /** Event sinks told after categorization, and asked before routing. */
  sinks?: readonly QueueSink[];
  /** Seconds before a message the directory could not resolve is tried again (60). */
  directoryRetrySeconds?: number;
}

/** What the categorizer stage needs of the queue core: small enough to fake in a unit test. */
export interface CategorizerQueue extends StageQueue {
  store: Pick<
    QueueStore,
    | 'dueMessages'
    | 'dueRowsOf'
    | 'defer'
    | 'flush'
    | 'place'
    | 'insertPlaced'
    | 'queueFrozen'
    | 'transaction'
    | 'record'
    | 'nextRetryIn'
  >;
  bodies: Pick<BodyCache, 'head'>;
  activeMessages: Set<string>;
}

const BATCH = 50;

export class CategorizerWorker implements Stage {
  readonly name = STAGE.categorizer;

  constructor(
    private readonly core: CategorizerQueue,
    private readonly options: CategorizerWorkerOptions,
  ) {}

  /** The earliest categorization the directory deferred. */
  nextDue(): number | undefined {
    const due = [QUEUE.categorizer, QUEUE.dsn]
      .map((q) => this.core.store.nextRetryIn(q))
      .filter((t): t is number => t !== undefined);
    return due.length ? Math.min(...due) : undefined;
  }

  async runBatch(): Promise<boolean> {
    const { store } = this.core;
    const queues = [QUEUE.categorizer, QUEUE.dsn];
    const messages = store.dueMessages(queues, BATCH, this.core.activeMessages);
    if (!messages.length) return false;
    const touched: string[] = [];
    const woke = new Set<StageName>();
    for (const [i, m] of messages.entries()) {
      if (i > 0 && i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
      const envelope = JSON.parse(m.envelope) as Envelope;
      const rows = store.dueRowsOf(m.id, queues);
      if (!rows.length) continue;
      const receivedHeaders =
        envelope.receivedHeaders ?? countReceivedHeaders(await this.core.bodies.head(m).catch(() => ''));
      const result = await this.options.categorizer
        .categorize(
          rows.map((r) => ({ id: r.id, address: r.address, original: r.original })),
          {
            sender: m.sender,
            authenticated: envelope.client.authenticatedAs !== undefined,
            size: m.size,
            receivedHeaders,
            envelopeRecipientCount: envelope.recipients.length,
          },
        )
        .catch((err: unknown) => {
          if (err instanceof DirectoryUnavailableError) return err;
          throw err;
        });
      if (result instanceof DirectoryUnavailableError) {
        this.deferForDirectory(m, envelope, rows, result, woke);
        continue;
      }
      const sinks = this.options.sinks ?? [];
      if (sinks.length)
        notifyQueueSinks(sinks, this.options.log, (sink) =>
          sink.categorized?.(
            m.id,
            result.leaves.map((leaf) => ({ address: leaf.address, route: leaf.route })),
          ),
        );
      store.defer(() => this.apply(m, envelope, rows, result.leaves, woke));
      const tracked = { id: m.id, messageId: envelope.messageId, sender: m.sender };
      for (const e of result.events) this.options.track(trackingEvent.categorized(tracked, e));
      touched.push(m.id);
    }
    store.flush();
    for (const stage of woke) this.core.wake(stage);
    await this.core.finish(touched);
    return messages.length === BATCH;
  }

  /**
   * The directory could not answer: nothing is decided about the recipients, each waits in
   * Retry and is asked again after directoryRetrySeconds. The message's own clock still
   * runs: a delay notice when it falls due, 4.4.7 at expiry, as for any other deferral.
   */
  private deferForDirectory(
    m: MessageRow,
    envelope: Envelope,
    rows: RecipientRow[],
    err: DirectoryUnavailableError,
    woke: Set<StageName>,
  ): void {
    const now = Date.now();
    this.options.log?.warn(
      { messageId: m.id, reason: err.reason },
      'directory unavailable: categorization deferred',
    );
    const results = rows.map((row) => {
      const verdict = verdictFor({
        error: { code: err.code, status: err.status, message: err.message, permanent: false },
        notify: notifyList(row),
        sender: m.sender,
        receivedAt: m.received_at,
        attempts: row.attempts,
        delayNotified: row.delay_notified === 1,
        policy: this.options.remoteRetry,
        now,
        notifyPolicy: this.options.notifyPolicy,
      });
      // The directory's own retry interval, not the recipient's glitch schedule.
      if (verdict.kind === 'retry')
        verdict.nextAttempt = now + (this.options.directoryRetrySeconds ?? 60) * 1000;
      return { row, verdict };
    });
    this.core.store.record(results, false);
    if (results.some((r) => r.verdict.dsn !== null)) woke.add(STAGE.dsn);
    const failures = results.flatMap(({ row, verdict }) =>
      verdict.kind === 'failed' ? [{ address: row.address, status: verdict.status }] : [],
    );
    this.options.recordFailures(
      'CATEGORIZER',
      this.options.log,
      { id: m.id, sender: m.sender, messageId: envelope.messageId },
      failures,
    );
  }

  private apply(
    m: MessageRow,
    envelope: Envelope,
    rows: RecipientRow[],
    leaves: Leaf[],
    woke: Set<StageName>,
  ): void {
    const { store } = this.core;
    const bySource = new Map<number, Leaf[]>();
    for (const leaf of leaves) bySource.set(leaf.sourceId, [...(bySource.get(leaf.sourceId) ?? []), leaf]);
    const failures: { address: string; status: string }[] = [];
    const facts = {
      size: m.size,
      priority: envelope.priority ?? ('normal' as const),
      system: m.is_dsn === 1 || m.sender === '',
    };
    /** `address` is the one a failure is recorded under. */
    const place = (row: RecipientRow, address: string, notify: string | null, resolved: Route): Placement => {
      const route =
        resolved.kind === 'failed'
          ? resolved
          : routeAfterSinks(this.options.sinks ?? [], address, resolved, m.sender, this.options.log);
      const nextHop =
        route.kind !== 'local' && route.kind !== 'failed' && !store.queueFrozen(QUEUE.routing)
          ? this.options.openNextHop(route, m.sender, facts)
          : undefined;
      const p = placeRecipient(
        {
          route,
          currentQueue: row.queue,
          notify: notifyList({ notify }),
          sender: m.sender,
          ...(nextHop ? { nextHop } : {}),
          remoteDeadline: deadlineFor(this.options.remoteRetry, m.received_at, false),
        },
        this.options.notifyPolicy,
      );
      if (route.kind === 'failed') failures.push({ address, status: route.status });
      if (p.dsn) woke.add(STAGE.dsn);
      if (p.state !== 'done')
        woke.add(p.remote ? STAGE.remote : p.queue === QUEUE.local ? STAGE.local : STAGE.routing);
      return p;
    };
    store.transaction(() => {
      for (const row of rows) {
        const mine = bySource.get(row.id) ?? [];
        if (mine.length === 1) {
          const leaf = mine[0]!;
          store.place(row.id, leaf.address, {
            ...place(row, row.address, row.notify, leaf.route),
            ...(leaf.concealed ? { concealed: true } : {}),
          });
          continue;
        }
        // Expanded (group, deliver-and-forward) or expanded to nobody.
        const expanded = expandedPlacement(row.queue, notifyList(row), m.sender, this.options.notifyPolicy);
        store.place(row.id, row.address, expanded);
        if (expanded.dsn) woke.add(STAGE.dsn);
        for (const leaf of mine) {
          // Members of an expanded group report failures only (RFC 3461 §6.2.7.3).
          const notify = memberNotify(row.notify);
          store.insertPlaced(row, leaf.address, notify, {
            ...place(row, leaf.address, notify, leaf.route),
            ...(leaf.concealed ? { concealed: true } : {}),
          });
        }
      }
    });
    this.options.recordFailures(
      'CATEGORIZER',
      this.options.log,
      { id: m.id, sender: m.sender, messageId: envelope.messageId },
      failures,
    );
  }
}
