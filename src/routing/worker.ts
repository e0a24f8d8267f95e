// NAME      routing worker: "Messages waiting to be routed" and the holding queues
// DESCRIPTION
//   Routes each waiting recipient (router.ts): into the remote queue of its next hop, into a
//   holding queue with a typed reason (connector schedule, remote triggered delivery, no
//   route, link down) until its hold time, or to a final failure. Held mail expires like
//   any other: no route, no schedule window, no ETRN in time means 4.4.7.
//   A link state change or reload also takes back the mail queued for next hops that are
//   now unusable (a bridgehead down, the only connector to it down: "reset routes"
//   [003:6445-6471]): their remote queues' open rows return to "Messages waiting to be
//   routed" and take the new path. Rows a delivery round holds (Active) are left alone
//   until the attempt ends: the queue waits in Retry meanwhile (no new round takes them)
//   and is asked again every second until it is empty.
// TRIGGERS  woken by the categorizer (rows to route), by link state changes and reloads
//           (releaseAfterLinkChange), by ETRN; by the clock at the earliest hold time.
//           Wakes remote delivery, and the DSN stage when something failed.
import type { Logger } from 'pino';
import { RELEASED_BY_LINK_STATE, STAGE, type HoldReason } from '../queue/names.js';
import type { QueueStore } from '../queue/store/queue-store.js';
import type { Holds } from '../queue/store/holds.js';
import type { RemoteQueues } from '../queue/store/remote-queues.js';
import type { Destination } from '../delivery/remote/destination.js';
import { deadlineFor, type NotifyPolicy } from '../queue/outcomes.js';
import type { RetryPolicy } from '../queue/retry.js';
import type { Stage } from '../queue/scheduler.js';
import { notifyList } from '../queue/store/rows.js';
import type { FailureRecorder } from '../dsn/failures.js';
import type { Route } from '../categorizer/categorizer.js';
import type { NextHop } from './next-hop.js';
import type { QueueSink } from '../sinks/sink.js';
import { routeAfterSinks } from '../sinks/runner.js';
import type { StageQueue } from '../queue/core.js';

/** What the routing stage needs of the queue core: small enough to fake in a unit test. */
export interface RoutingQueue extends StageQueue {
  store: Pick<QueueStore, 'place' | 'queueFrozen' | 'transaction'> & {
    holds: Pick<Holds, 'dueForRouting' | 'fail' | 'hold' | 'nextHoldDue' | 'releaseHoldsFor'>;
    remoteQueues: Pick<RemoteQueues, 'all' | 'returnToRouting' | 'releaseAll'>;
  };
}

export type RouteFn = (
  route: Route,
  sender: string,
  message: { size: number; priority: 'high' | 'normal' | 'low'; system: boolean },
) => NextHop;

export interface RoutingWorkerOptions {
  route: RouteFn;
  notifyPolicy: NotifyPolicy;
  remoteRetry: RetryPolicy;
  recordFailures: FailureRecorder;
  log: Logger;
  /** Event sinks asked before routing; one may redirect a recipient. */
  sinks?: readonly QueueSink[];
  /** Link state: next hops (servers, SMTP connectors) whose queued mail must be routed again. */
  unusableNextHops?: () => { servers: string[]; connectors: string[] };
  /** A delivery round holds this message of this queue now (Active): leave its rows alone. */
  inRound?: (queue: string, messageId: string) => boolean;
}

/** How often a queue with Active rows to take back is asked again. */
const REROUTE_AGAIN_MS = 1000;
/** Meanwhile no new delivery round starts in it (its next hop is down anyway). */
const HOLD_WHILE_ACTIVE_MS = 60_000;

const BATCH = 200;

export class RoutingWorker implements Stage {
  readonly name = STAGE.routing;

  constructor(
    private readonly core: RoutingQueue,
    private readonly options: RoutingWorkerOptions,
  ) {}

  /** Remote queues whose next hop is unusable and that still held Active rows. */
  private rerouting = new Set<string>();

  nextDue(): number | undefined {
    const held = this.core.store.holds.nextHoldDue();
    if (!this.rerouting.size) return held;
    const again = Date.now() + REROUTE_AGAIN_MS;
    return held === undefined ? again : Math.min(held, again);
  }

  /**
   * Routes changed (link state, a reload): held mail is looked at again, and mail queued
   * for next hops that are now unusable goes back to routing. A reload passes every hold
   * reason: a connector's schedule or ETRN setting may have changed.
   */
  releaseAfterLinkChange(reasons: readonly HoldReason[] = RELEASED_BY_LINK_STATE): void {
    this.core.store.holds.releaseHoldsFor(reasons);
    const unusable = new Set(this.unusableQueues());
    // A queue held while its mail was taken back whose next hop is usable again: try it now.
    for (const queue of this.rerouting)
      if (!unusable.has(queue)) this.core.store.remoteQueues.releaseAll(queue);
    this.rerouting = unusable;
    this.takeBack();
    this.core.wake(STAGE.routing);
  }

  /** Remote queues whose destination is a next hop link state says is unusable. */
  private unusableQueues(): string[] {
    const hops = this.options.unusableNextHops?.();
    if (!hops || (!hops.servers.length && !hops.connectors.length)) return [];
    const servers = new Set(hops.servers.map((n) => n.toLowerCase()));
    const connectors = new Set(hops.connectors);
    return this.core.store.remoteQueues
      .all()
      .filter((q) => {
        const d = JSON.parse(q.destination) as Destination;
        return (
          (d.type === 'server' && servers.has(d.name.toLowerCase())) ||
          (d.connector !== undefined && connectors.has(d.connector))
        );
      })
      .map((q) => q.name);
  }

  /** Returns the open rows of the unusable queues to routing, all but the Active ones. */
  private takeBack(): void {
    if (!this.rerouting.size) return;
    const { store } = this.core;
    const inRound = this.options.inRound ?? (() => false);
    let returned = 0;
    store.transaction(() => {
      for (const queue of this.rerouting) {
        if (store.queueFrozen(queue)) {
          this.rerouting.delete(queue);
          continue;
        }
        const r = store.remoteQueues.returnToRouting(
          queue,
          (id) => inRound(queue, id),
          Date.now() + HOLD_WHILE_ACTIVE_MS,
        );
        returned += r.returned;
        if (!r.kept) this.rerouting.delete(queue);
      }
    });
    if (returned)
      this.options.log.info(
        { recipients: returned },
        'link state: queued mail for unusable next hops routed again',
      );
  }

  async runBatch(): Promise<boolean> {
    const { store } = this.core;
    this.takeBack();
    const rows = store.holds.dueForRouting(BATCH).filter((r) => !store.queueFrozen(r.queue));
    if (!rows.length) return false;
    const expiration = this.options.remoteRetry.expiration * 1000;
    const failed = new Map<string, { address: string; status: string }[]>();
    const fail = (messageId: string, address: string, status: string) =>
      failed.set(messageId, [...(failed.get(messageId) ?? []), { address, status }]);
    const now = Date.now();
    store.transaction(() => {
      for (const r of rows) {
        const route = routeAfterSinks(
          this.options.sinks ?? [],
          r.address,
          JSON.parse(r.route ?? '{}') as Route,
          r.sender,
          this.options.log,
        );
        const hop = this.options.route(route, r.sender, {
          size: r.size,
          priority: r.priority ?? 'normal',
          system: r.is_dsn === 1 || r.sender === '',
        });
        const dsn = this.options.notifyPolicy('failure', notifyList(r), r.sender);
        if ('fail' in hop) {
          const text = `${hop.fail.code} ${hop.fail.status} ${hop.fail.text}`;
          store.holds.fail(r.id, hop.fail.status, `smtp; ${text}`, hop.fail.text, dsn);
          fail(r.message_id, r.address, hop.fail.status);
        } else if (hop.destination) {
          store.place(r.id, r.address, {
            queue: hop.queue,
            nextHop: JSON.stringify(hop.destination),
            state: 'ready',
            outcome: null,
            status: null,
            diagnostic: null,
            dsn: null,
            route: r.route,
            remote: true,
            deadline: deadlineFor(this.options.remoteRetry, r.received_at, r.delay_notified === 1),
          });
        } else if (now - r.received_at >= expiration) {
          const text = `Could not deliver the message in the time limit specified. ${hop.reason}`;
          store.holds.fail(r.id, '4.4.7', `smtp; 550 4.4.7 ${text}`, text, dsn);
          fail(r.message_id, r.address, '4.4.7');
        } else {
          // Come back at the hold time, or at expiry if that is sooner.
          store.holds.hold(
            r.id,
            hop.queue,
            hop.hold,
            Math.min(hop.retryAt, r.received_at + expiration),
            hop.reason,
          );
        }
      }
    });
    for (const [id, list] of failed) {
      const row = rows.find((r) => r.message_id === id);
      this.options.recordFailures(
        'ROUTING',
        this.options.log,
        { id, sender: row?.sender, messageId: row?.header_message_id ?? undefined },
        list,
      );
    }
    if (failed.size) {
      this.core.wake(STAGE.dsn);
      await this.core.finish(failed.keys());
    }
    this.core.wake(STAGE.remote);
    return rows.length === BATCH;
  }
}
