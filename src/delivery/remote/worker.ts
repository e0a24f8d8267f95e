// NAME      remote delivery worker: serves the remote queues, one per next hop
// DESCRIPTION
//   Each batch (1) looks at remote recipients whose delay notice or expiry has come,
//   whatever their queue does, and (2) starts a round for every remote queue with due mail
//   whose next hop is not in Retry and that nobody serves yet. A round takes up to 200
//   messages, opens connectionsFor(...) sessions (connections.ts) and records each
//   message's verdicts as they come.
// STRATEGY  A next hop that cannot be reached puts its queue in Retry as a whole: the
//   next attempt is one connection at the queue's retry time, however many messages
//   wait; when one gets through, the whole queue is released and served at once. A 4xx
//   for one message or recipient (greylisting) keeps that recipient's own schedule.
// TRIGGERS  woken by the categorizer and routing when rows arrive; by the clock at the
//           earliest queue retry, recipient retry or deadline; wakes the DSN stage.
// SETTINGS  maxOutboundConnectionsPerDomain, maxOutboundConnections (virtual server delivery).
import type { Socket } from 'node:net';
import type { QueueCore } from '../../queue/core.js';
import { STAGE } from '../../queue/names.js';
import { deadlineVerdict } from '../../queue/outcomes.js';
import { retryDelay } from '../../queue/retry.js';
import type { Stage } from '../../queue/scheduler.js';
import { notifyList, type MessageRow, type RecipientRow } from '../../queue/store/rows.js';
import { addressInDomain } from '../../message/domains.js';
import { deferForNextHop, deliveryJobs, RoundHolds, type JobContext, type RoundReport } from './jobs.js';
import { connectionsFor } from './connections.js';
import type { Destination } from './destination.js';
import type { RemoteDelivery } from './remote-delivery.js';

export interface RemoteWorkerOptions extends Omit<JobContext, 'core' | 'holds'> {
  remote: Pick<RemoteDelivery, 'run' | 'runOnSocket' | 'idleSessions' | 'close'>;
  maxConnectionsPerQueue: number;
  maxConnections: number;
}

const ROUND = 200;

export class RemoteDeliveryWorker implements Stage {
  readonly name = STAGE.remote;
  /** Remote queues with a round under way. */
  private readonly serving = new Set<string>();
  private connectionsInUse = 0;
  private stopped = false;
  private readonly ctx: JobContext;
  /** Messages each queue's round holds (another queue may send the same message at once). */
  private readonly holds = new RoundHolds();

  constructor(
    private readonly core: Pick<QueueCore, 'store' | 'bodies' | 'wake' | 'finish'>,
    private readonly options: RemoteWorkerOptions,
  ) {
    this.ctx = { ...options, core, holds: this.holds };
  }

  /** A round is sending this message now (the viewer shows it Active). */
  isSending(messageId: string): boolean {
    return this.holds.holdsMessage(messageId);
  }

  /** A round of `queue` is sending this message now (routing leaves its rows alone). */
  isSendingIn(queue: string, messageId: string): boolean {
    return this.holds.has(queue, messageId);
  }

  /** A round is under way for this queue (the viewer shows it Active). */
  isServing(queue: string): boolean {
    return this.serving.has(queue);
  }

  inFlight(): number {
    return this.serving.size;
  }

  nextDue(): number | undefined {
    return this.core.store.remoteQueues.nextDue();
  }

  async runBatch(): Promise<boolean> {
    const now = Date.now();
    const more = await this.sweepDeadlines(now);
    const { store } = this.core;
    await this.deferInRetry(now);
    for (const queue of store.remoteQueues.due(now)) {
      if (this.serving.has(queue.name) || store.queueFrozen(queue.name)) continue;
      if (this.connectionsInUse >= this.options.maxConnections) break;
      if (!store.remoteQueues.dueMessageIds(queue.name, 1).length) {
        store.remoteQueues.dropIfEmpty(queue.name);
        continue;
      }
      this.serving.add(queue.name);
      void this.serve(queue.name, JSON.parse(queue.destination) as Destination).finally(() => {
        this.serving.delete(queue.name);
        this.core.wake(STAGE.remote);
      });
    }
    return more;
  }

  /** Recipients that arrived in a queue in Retry are deferred with its error, unsent. */
  private async deferInRetry(now: number): Promise<void> {
    const { store } = this.core;
    for (const queue of store.remoteQueues.inRetry(now)) {
      if (store.queueFrozen(queue.name)) continue;
      const ids = store.remoteQueues
        .readyMessageIds(queue.name, ROUND)
        .filter((id) => !this.holds.has(queue.name, id));
      if (!ids.length) continue;
      const messages = ids.map((id) => store.message(id)).filter((m): m is MessageRow => !!m && !m.frozen);
      const rows = store.remoteQueues.rowsOfMany(ids, queue.name);
      const [code, status, ...text] = (queue.last_error ?? '451 4.4.1 next hop unreachable').split(' ');
      store.transaction(() =>
        deferForNextHop(
          this.ctx,
          queue.name,
          messages,
          (m) => rows.get(m.id) ?? [],
          { code: Number(code) || 451, status: status ?? '4.4.1', message: text.join(' ') },
          queue.retry_at,
        ),
      );
      // Some may have expired or owe a delay notice now.
      this.core.wake(STAGE.dsn);
      await this.core.finish(messages.map((m) => m.id));
      // More may wait behind this batch.
      if (messages.length === ROUND) this.core.wake(STAGE.remote);
    }
  }

  /** Delay notices and expiry of recipients their queue has not tried in time. */
  private async sweepDeadlines(now: number): Promise<boolean> {
    const { store } = this.core;
    const rows = store.remoteQueues
      .dueDeadlines(now, ROUND)
      .filter(
        (r) =>
          !this.holds.has(r.queue, r.message_id) && !this.serving.has(r.queue) && !store.queueFrozen(r.queue),
      );
    if (!rows.length) return false;
    const messages = new Map<string, MessageRow | undefined>();
    const failed: { row: RecipientRow; message: MessageRow }[] = [];
    store.transaction(() => {
      for (const row of rows) {
        if (!messages.has(row.message_id)) messages.set(row.message_id, store.message(row.message_id));
        const m = messages.get(row.message_id);
        if (!m) continue;
        const decision = deadlineVerdict({
          receivedAt: m.received_at,
          now,
          policy: this.options.retry,
          notify: notifyList(row),
          sender: m.sender,
          notifyPolicy: this.options.notifyPolicy,
          lastError: row.last_error,
          queueError: store.remoteQueues.get(row.queue)?.last_error ?? null,
        });
        if (decision.kind === 'expired') {
          store.record([{ row, verdict: decision.verdict }]);
          failed.push({ row, message: m });
        } else {
          store.remoteQueues.setDeadline(
            row.id,
            decision.nextDeadline,
            true,
            decision.dsn,
            decision.lastError,
          );
        }
      }
    });
    for (const { row, message } of failed) {
      const envelope = JSON.parse(message.envelope) as { messageId?: string };
      this.options.recordFailures(
        'SMTP',
        this.options.log,
        { id: message.id, sender: message.sender, messageId: envelope.messageId },
        [{ address: row.address, status: '4.4.7' }],
      );
    }
    this.core.wake(STAGE.dsn);
    await this.core.finish(failed.map((f) => f.message.id));
    return rows.length === ROUND;
  }

  /** Rounds of up to 200 messages until the queue is empty, in Retry, frozen or stopped. */
  private async serve(queue: string, destination: Destination): Promise<void> {
    const { store } = this.core;
    for (let round = 0; round < 1000 && !this.stopped; round++) {
      if (store.queueFrozen(queue)) return;
      const ids = store.remoteQueues
        .dueMessageIds(queue, ROUND + this.holds.count(queue))
        .filter((id) => !this.holds.has(queue, id))
        .slice(0, ROUND);
      if (!ids.length) {
        store.remoteQueues.dropIfEmpty(queue);
        return;
      }
      const messages = ids.map((id) => store.message(id)).filter((m): m is MessageRow => !!m && !m.frozen);
      const rows = store.remoteQueues.rowsOfMany(ids, queue);
      const report: RoundReport = { touched: [], reached: false };
      const failures = (store.remoteQueues.get(queue)?.failures ?? 0) + 1;
      const retryAt = Date.now() + retryDelay(this.options.retry, failures) * 1000;
      const jobs = deliveryJobs(this.ctx, queue, messages, (m) => rows.get(m.id) ?? [], report, retryAt);
      if (!jobs.length) return;
      // A queue coming back from Retry is probed with one session, not one per four messages.
      const probing = failures > 1;
      const connections = probing
        ? 1
        : connectionsFor({
            jobs: jobs.length,
            perNextHop: this.options.maxConnectionsPerQueue,
            total: this.options.maxConnections,
            inUse: this.connectionsInUse,
            idleElsewhere: this.options.remote.idleSessions(destination),
          });
      this.connectionsInUse += connections;
      try {
        await this.options.remote.run(destination, jobs, connections);
      } finally {
        this.connectionsInUse -= connections;
      }
      // Stopped while the round ran and the database is closed: its results are lost, and
      // the mail is sent again after the restart (Maildir and DSN ids make that harmless).
      if (!store.open) return;
      store.flush();
      const down = report.nextHopDown !== undefined && !report.reached;
      store.transaction(() => {
        if (down) store.remoteQueues.nextHopDown(queue, retryAt, report.nextHopDown!);
        else if (report.reached) store.remoteQueues.nextHopUp(queue);
      });
      this.core.wake(STAGE.dsn);
      await this.core.finish(report.touched);
      if (down) return;
    }
  }

  /**
   * ATRN / TURN [RFC 2645]: the client that asked now acts as the server on the same
   * connection; the held mail for `domains` in the connectors' holding queues goes over it.
   */
  async deliverOverConnection(socket: Socket, queues: string[], domains: string[]): Promise<void> {
    const { store } = this.core;
    const held = this.heldRows(queues, domains);
    const byMessage = new Map<string, RecipientRow[]>();
    for (const r of held) byMessage.set(r.message_id, [...(byMessage.get(r.message_id) ?? []), r]);
    const messages = [...byMessage.keys()].map((id) => store.message(id)).filter((m): m is MessageRow => !!m);
    const report: RoundReport = { touched: [], reached: false };
    const jobs = deliveryJobs(
      this.ctx,
      queues.join(', '),
      messages,
      (m) => byMessage.get(m.id) ?? [],
      report,
      Date.now() + retryDelay(this.options.retry, 1) * 1000,
    );
    try {
      await this.options.remote.runOnSocket(socket, jobs);
    } finally {
      store.flush();
      this.core.wake(STAGE.dsn);
      await this.core.finish(report.touched);
    }
  }

  /** How many held recipients ATRN / TURN would deliver for `domains`. */
  heldFor(queues: string[], domains: string[]): number {
    return queues.length ? this.heldRows(queues, domains).length : 0;
  }

  private heldRows(queues: string[], domains: string[]): RecipientRow[] {
    return this.core.store.holds
      .heldRows(queues)
      .filter((r) => domains.some((d) => addressInDomain(r.address, d)));
  }

  /** No new rounds; the one under way finishes (called before the scheduler waits). */
  stopping(): void {
    this.stopped = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.options.remote.close();
  }
}
