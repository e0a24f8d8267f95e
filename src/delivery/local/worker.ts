// NAME      local delivery worker: drains "Local delivery" through a store driver
// DESCRIPTION
//   Up to 32 messages at once; each recipient's copy goes through the store driver
//   (store-driver.ts) with Return-Path and Delivered-To on top, and the From and Sender
//   display names the directory decides (originators.ts). Exactly once: the copy's
//   name derives from (queue id, recipient row), and a row a crash caught in flight, or one
//   tried before, is delivered with `recheck` so the driver finds its earlier copy. Results
//   become verdicts (queue/outcomes.ts) on the local retry schedule.
// TRIGGERS  woken by the categorizer when rows arrive, and by the clock for retries;
//           wakes the DSN stage after each batch.
import type { Logger } from 'pino';
import { QUEUE, STAGE } from '../../queue/names.js';
import type { QueueStore } from '../../queue/store/queue-store.js';
import type { BodyCache } from '../../queue/bodies.js';
import { verdictFor, type NotifyPolicy, type Verdict } from '../../queue/outcomes.js';
import type { RetryPolicy } from '../../queue/retry.js';
import type { Stage } from '../../queue/scheduler.js';
import type { Envelope } from '../../queue/spool.js';
import { notifyList, type MessageRow, type RecipientRow } from '../../queue/store/rows.js';
import { TransportError } from '../../message/status.js';
import type { TrackingEvent } from '../../tracking/tracking.js';
import { trackedMessage, trackingEvent, type TrackedMessage } from '../../tracking/events.js';
import type { FailureRecorder } from '../../dsn/failures.js';
import type { Route } from '../../categorizer/categorizer.js';
import type { StoreDriver } from './store-driver.js';
import type { StageQueue } from '../../queue/core.js';

export interface LocalDeliveryOptions {
  driver: StoreDriver;
  retry: RetryPolicy;
  notifyPolicy: NotifyPolicy;
  track: (e: TrackingEvent) => void;
  recordFailures: FailureRecorder;
  log: Logger;
  /** The Store Driver diagnostic category (NDR events). */
  storeDriverLog?: Logger;
  /** The message as mailboxes show it: originators' display names (originators.ts). */
  presentOriginators?: (envelope: Envelope, message: Buffer) => Promise<Buffer>;
}

/** What local delivery needs of the queue core: small enough to fake in a unit test. */
export interface LocalQueue extends StageQueue {
  store: Pick<QueueStore, 'dueMessages' | 'dueRowsOf' | 'defer' | 'flush' | 'record' | 'nextRetryIn'>;
  bodies: Pick<BodyCache, 'body'>;
  activeMessages: Set<string>;
}

const BATCH = 32;

export class LocalDeliveryWorker implements Stage {
  readonly name = STAGE.local;

  constructor(
    private readonly core: LocalQueue,
    private readonly options: LocalDeliveryOptions,
  ) {}

  nextDue(): number | undefined {
    return this.core.store.nextRetryIn(QUEUE.local);
  }

  async runBatch(): Promise<boolean> {
    const messages = this.core.store.dueMessages([QUEUE.local], BATCH, this.core.activeMessages);
    if (!messages.length) return false;
    await Promise.all(messages.map((m) => this.deliver(m)));
    this.core.store.flush();
    this.core.wake(STAGE.dsn);
    await this.core.finish(messages.map((m) => m.id));
    return true;
  }

  private async deliver(m: MessageRow): Promise<void> {
    const { store, bodies, activeMessages } = this.core;
    activeMessages.add(m.id);
    try {
      const envelope = JSON.parse(m.envelope) as Envelope;
      const rows = store.dueRowsOf(m.id, [QUEUE.local]);
      if (!rows.length) return;
      let body: Buffer;
      try {
        body = await bodies.body(m);
      } catch (err) {
        this.options.log.error({ err, id: m.id }, 'cannot read spool file for local delivery');
        return;
      }
      const now = Date.now();
      const tracked = trackedMessage(m, envelope);
      let shown: Buffer | TransportError = body;
      try {
        if (this.options.presentOriginators) shown = await this.options.presentOriginators(envelope, body);
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        shown = err; // every copy waits for the directory
      }
      const results: { row: RecipientRow; verdict: Verdict }[] = [];
      for (const row of rows) {
        const route = JSON.parse(row.route ?? '{}') as Extract<Route, { kind: 'local' }>;
        const prefix = Buffer.from(`Return-Path: <${m.sender}>\r\nDelivered-To: ${row.address}\r\n`, 'utf8');
        let error: TransportError | undefined;
        try {
          if (shown instanceof TransportError) throw shown;
          const delivered = await this.options.driver.deliver(
            { store: route.store, address: route.mailboxAddress, quotaKb: route.quotaKb },
            `${m.id}.${row.id}`,
            prefix,
            shown,
            row.recheck === 1 || row.attempts > 0,
          );
          this.options.track(
            trackingEvent.delivered(tracked, {
              address: row.address,
              original: row.original,
              store: route.store,
              duplicate: delivered.duplicate,
            }),
          );
        } catch (err) {
          if (!(err instanceof TransportError)) throw err;
          error = err;
        }
        results.push({
          row,
          verdict: verdictFor({
            ...(error ? { error } : {}),
            notify: notifyList(row),
            sender: m.sender,
            receivedAt: m.received_at,
            attempts: row.attempts,
            delayNotified: row.delay_notified === 1,
            policy: this.options.retry,
            now,
            notifyPolicy: this.options.notifyPolicy,
          }),
        });
      }
      store.defer(() => this.record(tracked, results));
    } finally {
      activeMessages.delete(m.id);
    }
  }

  private record(tracked: TrackedMessage, results: { row: RecipientRow; verdict: Verdict }[]): void {
    this.core.store.record(results);
    const deferred = results.filter((r) => r.verdict.kind === 'retry').map((r) => r.row.address);
    if (deferred.length) this.options.track(trackingEvent.deferred(tracked, deferred, 'STOREDRIVER'));
    const failed = results.flatMap(({ row, verdict }) =>
      verdict.kind === 'failed' ? [{ address: row.address, status: verdict.status }] : [],
    );
    this.options.recordFailures('STOREDRIVER', this.options.storeDriverLog, tracked, failed);
  }
}
