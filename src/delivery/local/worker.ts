// NAME      local delivery worker: drains "Local delivery" through the store drivers
// DESCRIPTION
//   Up to 32 messages at once. A message's recipients are grouped by mailbox store, and
//   each group goes to that store's driver (store-driver.ts) in one call: Maildir writes
//   one copy each with Return-Path and Delivered-To on top, LMTP makes one transaction.
//   A copy's unique id derives from (queue id, recipient row), and a row a crash caught in
//   flight, or one tried before, is delivered with `recheck` so a driver that can look
//   finds its earlier copy. Results become verdicts (queue/outcomes.ts) on the local retry
//   schedule; a store not configured on this server defers (4.3.5). Every store gets the
//   message with the From and Sender display names the directory decides (originators.ts).
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
import type { CopyResult, StoreDrivers } from './store-driver.js';
import type { StageQueue } from '../../queue/core.js';

export interface LocalDeliveryOptions {
  /** The driver of each mailbox store (store-driver.ts). */
  drivers: StoreDrivers;
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

type LocalRoute = Extract<Route, { kind: 'local' }>;
interface LocalRow {
  row: RecipientRow;
  route: LocalRoute;
}

/** Rows grouped by mailbox store, in the order the stores first appear. */
function byStore(rows: readonly RecipientRow[]): Map<string, LocalRow[]> {
  const groups = new Map<string, LocalRow[]>();
  for (const row of rows) {
    const route = JSON.parse(row.route ?? '{}') as LocalRoute;
    const group = groups.get(route.store) ?? [];
    group.push({ row, route });
    groups.set(route.store, group);
  }
  return groups;
}

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
      const all: { row: RecipientRow; verdict: Verdict }[] = [];
      for (const [storeName, batch] of byStore(rows)) {
        const outcomes: CopyResult[] =
          shown instanceof TransportError
            ? batch.map(() => ({ error: shown }))
            : await this.deliverToStore(storeName, m, shown, batch);
        const results: { row: RecipientRow; verdict: Verdict }[] = [];
        batch.forEach(({ row, route }, i) => {
          const outcome = outcomes[i]!;
          const error = 'error' in outcome ? outcome.error : undefined;
          if (!error)
            this.options.track(
              trackingEvent.delivered(tracked, {
                address: row.address,
                original: row.original,
                store: route.store,
                duplicate: 'duplicate' in outcome && outcome.duplicate,
              }),
            );
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
        });
        // Recorded as soon as this store answered: an LMTP store cannot be asked again
        // after a crash whether it already has the copy.
        store.defer(() => store.record(results));
        all.push(...results);
      }
      store.defer(() => this.trackOutcomes(tracked, all));
    } finally {
      activeMessages.delete(m.id);
    }
  }

  /** Every copy of one message bound for one store, in one call of that store's driver. */
  private async deliverToStore(
    storeName: string,
    m: MessageRow,
    body: Buffer,
    batch: readonly LocalRow[],
  ): Promise<CopyResult[]> {
    const driver = this.options.drivers(storeName);
    // A store the configuration does not list (a directory other than the file's named it):
    // the mail waits, and the administrator sees why in the queue.
    if (!driver) {
      const error = new TransportError(
        451,
        '4.3.5',
        `Mailbox store "${storeName}" is not configured on this server (mailboxStores)`,
      );
      return batch.map(() => ({ error }));
    }
    return driver.deliver(
      { sender: m.sender, body },
      batch.map(({ row, route }) => ({
        mailbox: { store: route.store, address: route.mailboxAddress, quotaKb: route.quotaKb },
        recipient: row.address,
        uniqueId: `${m.id}.${row.id}`,
        recheck: row.recheck === 1 || row.attempts > 0,
      })),
    );
  }

  /** One DEFER and one FAIL event for the message, whichever stores its recipients are on. */
  private trackOutcomes(tracked: TrackedMessage, results: { row: RecipientRow; verdict: Verdict }[]): void {
    const deferred = results.filter((r) => r.verdict.kind === 'retry').map((r) => r.row.address);
    if (deferred.length) this.options.track(trackingEvent.deferred(tracked, deferred, 'STOREDRIVER'));
    const failed = results.flatMap(({ row, verdict }) =>
      verdict.kind === 'failed' ? [{ address: row.address, status: verdict.status }] : [],
    );
    this.options.recordFailures('STOREDRIVER', this.options.storeDriverLog, tracked, failed);
  }
}
