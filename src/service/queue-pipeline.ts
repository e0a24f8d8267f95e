// NAME      queue pipeline: the queue core with every stage's worker registered
// SYNOPSIS  pipeline = buildQueuePipeline(options); pipeline.submit(m, body)
//           await pipeline.recover(report, known); pipeline.start(); await pipeline.stop()
// DESCRIPTION
//   The one place that knows every stage: it builds the queue core, the categorizer,
//   routing, local and remote delivery and DSN workers, registers them with the scheduler,
//   and offers the queue viewer and operations to the admin API. The workers never see
//   each other; they wake each other by stage name through the core.
import type { Logger } from 'pino';
import { QueueCore } from '../queue/core.js';
import { QUEUE, STAGE, type HoldReason } from '../queue/names.js';
import type { RetryPolicy } from '../queue/retry.js';
import type { Envelope, RecoveryReport, Spool, SpooledMessage } from '../queue/spool.js';
import { QueueViewer } from '../queue/admin/viewer.js';
import { QueueOperations } from '../queue/admin/operations.js';
import type { QueueAdmin } from '../queue/admin/index.js';
import type { QueueRecovery } from '../queue/recovery.js';
import type { Categorizer } from '../categorizer/categorizer.js';
import { CategorizerWorker } from '../categorizer/worker.js';
import { RoutingWorker, type RouteFn } from '../routing/worker.js';
import { RemoteTriggered } from '../routing/remote-triggered.js';
import type { OrganisationConfig } from '../config/schema.js';
import { LocalDeliveryWorker } from '../delivery/local/worker.js';
import type { StoreDrivers } from '../delivery/local/store-driver.js';
import { RemoteDeliveryWorker } from '../delivery/remote/worker.js';
import type { RemoteDelivery } from '../delivery/remote/remote-delivery.js';
import { DsnWorker } from '../dsn/worker.js';
import { Badmail } from '../dsn/badmail.js';
import { dsnFor } from '../dsn/notify.js';
import { failureRecorder } from '../dsn/failures.js';
import type { MessageTracking } from '../tracking/tracking.js';
import { trackingEvent } from '../tracking/events.js';
import type { QueueSink } from '../sinks/sink.js';
import { notifyQueueSinks } from '../sinks/runner.js';

export interface QueuePipelineOptions {
  serverName: string;
  fqdn: string;
  dataDir: string;
  spool: Spool;
  categorizer: Pick<Categorizer, 'categorize'>;
  /** The driver of each mailbox store (delivery/local/store-drivers.ts). */
  stores: StoreDrivers;
  /** The message as mailboxes show it (delivery/local/originators.ts). */
  presentOriginators?: (envelope: Envelope, message: Buffer) => Promise<Buffer>;
  tracking: Pick<MessageTracking, 'write'>;
  log: Logger;
  /** Diagnostic categories: NDRs are logged with the event ids of [002]. */
  categorizerLog?: Logger;
  /** Seconds before a message the directory could not resolve is categorized again. */
  directoryRetrySeconds?: number;
  storeDriverLog?: Logger;
  localRetry: RetryPolicy;
  remoteRetry: RetryPolicy;
  route: RouteFn;
  /** Link state: next hops whose queued mail is routed again when routes change. */
  unusableNextHops?: () => { servers: string[]; connectors: string[] };
  remote: Pick<RemoteDelivery, 'run' | 'runOnSocket' | 'idleSessions' | 'close'>;
  /** Connections to one next hop, and in total [SPEC §7: 100, 1000]. */
  maxConnectionsPerQueue: number;
  maxConnections: number;
  ndrCopyTo?: string;
  badmail: Badmail;
  /** For ETRN/ATRN: the organisation now, and the router's release of held connectors. */
  organisation: () => OrganisationConfig;
  releaseConnectors: (domain: string) => string[];
  /** Queue event sinks: on submission, after categorization, before routing. */
  sinks?: readonly QueueSink[];
}

export interface QueuePipeline extends QueueAdmin {
  core: QueueCore;
  remoteTriggered: RemoteTriggered;
  submit(message: SpooledMessage, body?: Buffer): void;
  recover(report: Pick<RecoveryReport, 'messages' | 'onDisk'>, known: Set<string>): Promise<QueueRecovery>;
  /** Held mail is routed again now (link state changed: no route, link down; a reload: `reasons` all). */
  retryHeld(reasons?: readonly HoldReason[]): void;
  start(): void;
  stop(): Promise<void>;
}

export function buildQueuePipeline(o: QueuePipelineOptions): QueuePipeline {
  const track = (e: Parameters<MessageTracking['write']>[0]) => o.tracking.write(e);
  const core = new QueueCore({
    dataDir: o.dataDir,
    spool: o.spool,
    log: o.log,
    onSubmitted: (m) => {
      if (o.sinks?.length) notifyQueueSinks(o.sinks, o.log, (sink) => sink.submitted?.(m));
      track(
        trackingEvent.submitted({
          id: m.envelope.id,
          messageId: m.envelope.messageId,
          sender: m.envelope.sender,
          subject: m.envelope.subject,
          size: m.size,
          recipients: m.envelope.recipients.map((r) => r.address),
        }),
      );
    },
  });
  const recordFailures = failureRecorder(track);
  const common = { notifyPolicy: dsnFor, track, recordFailures, ...(o.sinks ? { sinks: o.sinks } : {}) };
  // Routing takes back queued mail of unusable next hops, not what a round sends now
  // (`remote` is built below; routing asks only once the stages run).
  const routing = new RoutingWorker(core, {
    ...common,
    route: o.route,
    remoteRetry: o.remoteRetry,
    log: o.log,
    ...(o.unusableNextHops ? { unusableNextHops: o.unusableNextHops } : {}),
    inRound: (queue, id) => remote.isSendingIn(queue, id),
  });
  const categorizer = new CategorizerWorker(core, {
    ...common,
    categorizer: o.categorizer,
    remoteRetry: o.remoteRetry,
    openNextHop: (route, sender, message) => {
      const hop = o.route(route, sender, message);
      return 'queue' in hop && hop.destination
        ? { queue: hop.queue, destination: JSON.stringify(hop.destination) }
        : undefined;
    },
    ...(o.categorizerLog ? { log: o.categorizerLog } : {}),
    ...(o.directoryRetrySeconds ? { directoryRetrySeconds: o.directoryRetrySeconds } : {}),
  });
  const local = new LocalDeliveryWorker(core, {
    ...common,
    drivers: o.stores,
    ...(o.presentOriginators ? { presentOriginators: o.presentOriginators } : {}),
    retry: o.localRetry,
    log: o.log,
    ...(o.storeDriverLog ? { storeDriverLog: o.storeDriverLog } : {}),
  });
  const remote = new RemoteDeliveryWorker(core, {
    ...common,
    retry: o.remoteRetry,
    log: o.log,
    remote: o.remote,
    maxConnectionsPerQueue: o.maxConnectionsPerQueue,
    maxConnections: o.maxConnections,
  });
  const dsn = new DsnWorker(core, {
    serverName: o.serverName,
    fqdn: o.fqdn,
    ...(o.ndrCopyTo ? { ndrCopyTo: o.ndrCopyTo } : {}),
    localRetry: o.localRetry,
    remoteRetry: o.remoteRetry,
    badmail: o.badmail,
    track,
  });
  for (const stage of [categorizer, local, dsn, routing, remote]) core.scheduler.register(stage);
  const viewer = new QueueViewer(core.store, {
    queueActive: (name) =>
      name === QUEUE.local
        ? core.scheduler.busy(STAGE.local)
        : name === QUEUE.categorizer
          ? core.scheduler.busy(STAGE.categorizer)
          : name === QUEUE.dsn
            ? core.scheduler.busy(STAGE.dsn)
            : remote.isServing(name),
    messageActive: (id) => core.activeMessages.has(id) || remote.isSending(id),
  });
  const operations = new QueueOperations(core.store, core.scheduler, dsnFor, (d) =>
    track(trackingEvent.deletedByAdministrator(d, d.recipients, d.withNdr)),
  );
  const remoteTriggered = new RemoteTriggered({
    organisation: o.organisation,
    releaseConnectors: o.releaseConnectors,
    core,
    delivery: remote,
  });
  return {
    core,
    remoteTriggered,
    submit: (m, body) => core.submit(m, body),
    recover: (report, known) => core.recover(report, known),
    retryHeld: (reasons) => routing.releaseAfterLinkChange(reasons),
    start: () => core.start(),
    stop: async () => {
      core.store.flush();
      // No new remote rounds while the scheduler waits for those under way.
      remote.stopping();
      await core.scheduler.stop();
      await remote.stop();
      core.store.close();
    },
    listQueues: () => viewer.listQueues(),
    findMessages: (q) => viewer.findMessages(q),
    getMessage: (id) => viewer.getMessage(id),
    freezeQueue: (name, frozen) => operations.freezeQueue(name, frozen),
    freezeMessage: (id, frozen) => operations.freezeMessage(id, frozen),
    deleteMessage: (id, ndr) => operations.deleteMessage(id, ndr),
    exportMessage: (id) => operations.exportMessage(id),
    retryNow: (queue) => operations.retryNow(queue),
    queueExists: (name) => operations.queueExists(name),
  };
}
