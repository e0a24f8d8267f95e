// NAME      transport server: one Bridgehead server process, its start and stop order
// SYNOPSIS  server = new TransportServer(loaded, { serverName, dataDir, hold });
//           await server.start(); server.reload(next); await server.stop()
// DESCRIPTION
//   Start: data directories; message tracking; link state (when the organisation has more
//   than one server) and the router; the queue pipeline (queue-pipeline.ts); spool
//   recovery, which reads only the files queue.db does not know, before any listener opens
//   so no live write can be taken for debris; the admin API; link state's port; the SMTP
//   virtual servers. Stop runs the other way: nothing new comes in, then the queues stop.
//   Options for each stage are built from the configuration in options.ts.
// SETTINGS  servers[] of the organisation file (docs/config.md).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { LoadedConfig } from '../config/load.js';
import { allServers, selectServer } from '../config/load.js';
import type { ServerConfig } from '../config/schema.js';
import { outboundSettings } from '../config/outbound.js';
import { AcceptedDomains } from '../directory/accepted-domains.js';
import type { Directory } from '../directory/directory.js';
import { openDirectory, type OpenedDirectory } from '../directory/open.js';
import { originatorPresenter } from '../delivery/local/originators.js';
import { EventLog } from '../logs/event-log.js';
import { ProtocolLog } from '../logs/protocol-log.js';
import { Spool, type RecoveryReport, type SpooledMessage } from '../queue/spool.js';
import type { QueueRecovery } from '../queue/recovery.js';
import { HOLD_REASONS } from '../queue/names.js';
import type { VirtualServerRuntime } from '../smtp/server/virtual-server.js';
import { RemoteDelivery } from '../delivery/remote/remote-delivery.js';
import { MaildirStore, PRIVATE_MAILDIR } from '../delivery/local/maildir.js';
import { storeDrivers } from '../delivery/local/store-drivers.js';
import { Router } from '../routing/router.js';
import { LinkStateService } from '../linkstate/service.js';
import { Filters } from '../hygiene/filters.js';
import type { Greylist } from '../hygiene/greylist.js';
import type { TransportMetrics } from '../admin/metrics.js';
import { Categorizer } from '../categorizer/categorizer.js';
import { Badmail } from '../dsn/badmail.js';
import { MessageTracking } from '../tracking/tracking.js';
import { trackingEvent } from '../tracking/events.js';
import { buildQueuePipeline, type QueuePipeline } from './queue-pipeline.js';
import { categorizerContext, connectionLimits, remoteSettings, retryPolicies } from './options.js';
import { organisationAuthentication } from './organisation-auth.js';
import { reloadPlan } from './reload.js';
import { startAdminApi } from './admin-wiring.js';
import { legacyMaildirs, makeDataDirPrivate, type LegacyMaildir, type PrivacyReport } from './data-dir.js';
import { modePolicy } from './file-modes.js';
import { storeFolder } from '../delivery/local/folder-names.js';
import { openGreylist, startVirtualServer } from './virtual-servers.js';

export interface TransportServerOptions {
  serverName?: string;
  /** Overrides the server's dataDir (relative paths resolve from the config file). */
  dataDir?: string;
  eventLog?: EventLog;
  /** Accept and queue mail but run no queue (maintenance): nothing is categorized or delivered. */
  hold?: boolean;
}

export class TransportServer {
  readonly server: ServerConfig;
  readonly dataDir: string;
  readonly eventLog: EventLog;
  readonly virtualServers: VirtualServerRuntime[] = [];
  readonly preSubmission: Spool;
  readonly directory: Directory;
  /** The backend behind `directory` (its counters, its connections to close). */
  readonly backend: OpenedDirectory;
  readonly acceptedDomains: AcceptedDomains;
  recovery: RecoveryReport | undefined;
  queueRecovery: QueueRecovery | undefined;
  tracking!: MessageTracking;
  engine!: QueuePipeline;
  /** Routing decisions for this server (connectors, routing groups, smart host, DNS). */
  router!: Router;
  linkState: LinkStateService | undefined;
  linkStateError: string | undefined;
  metrics: TransportMetrics | undefined;
  admin: FastifyInstance | undefined;
  /** Where the admin API listens ("http://host:port"), or why it does not. */
  adminUrl: string | undefined;
  adminError: string | undefined;
  /** The file holding the admin API's token when none is configured. */
  adminTokenFile: string | undefined;
  /** What start found readable by others in the data directory and made private. */
  privacy: PrivacyReport | undefined;
  /** Maildirs still under their old folder name (see docs/operations.md). */
  legacyMaildirs: LegacyMaildir[] = [];
  private readonly badmail: Badmail;
  private readonly startedAt = Date.now();
  private sendLog: ProtocolLog | undefined;
  private storeDrivers: ReturnType<typeof storeDrivers> | undefined;
  private greylist: Greylist | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(
    public loaded: LoadedConfig,
    private readonly options: TransportServerOptions = {},
  ) {
    const { server } = selectServer(loaded.org, options.serverName);
    this.server = server;
    this.dataDir = path.resolve(loaded.baseDir, options.dataDir ?? server.dataDir);
    this.eventLog = options.eventLog ?? new EventLog(server.diagnosticLogging);
    this.preSubmission = new Spool(path.join(this.dataDir, 'spool'));
    this.backend = openDirectory(loaded.org.directory, { baseDir: loaded.baseDir, serverName: server.name });
    this.directory = organisationAuthentication(this.backend, loaded.org);
    this.acceptedDomains = new AcceptedDomains(loaded.org.recipientPolicies);
    this.badmail = new Badmail(
      path.resolve(this.dataDir, outboundSettings(server).messages.badmailDirectory),
    );
  }

  async start(): Promise<void> {
    await this.makePrivate();
    await fsp.mkdir(path.join(this.dataDir, 'queue'), { recursive: true, mode: 0o700 });
    await fsp.mkdir(path.join(this.dataDir, 'tracking'), { recursive: true, mode: 0o700 });
    await this.preSubmission.init();
    this.startTracking();
    this.startLinkStateService();
    this.router = this.makeRouter(this.loaded.org);
    await this.buildQueues();
    await this.recoverQueues();
    if (!this.options.hold) this.engine.start();
    const admin = await startAdminApi({
      server: this.server,
      dataDir: this.dataDir,
      queues: this.engine,
      tracking: this.tracking,
      eventLog: this.eventLog,
      linkState: () => this.linkState,
      virtualServers: () => this.virtualServers,
      startedAt: this.startedAt,
      directoryCounters: () => this.backend.counters as Readonly<Record<string, number>> | undefined,
    });
    this.metrics = admin.metrics;
    this.admin = admin.admin;
    this.adminUrl = admin.url;
    this.adminError = admin.error;
    this.adminTokenFile = admin.tokenFile;
    await this.listenForLinkState();
    await this.startVirtualServers();
  }

  /**
   * Mail is private to this server's user: umask 077 for everything created from now on
   * (SQLite's databases among them), and what an older version left readable is tightened.
   */
  private async makePrivate(): Promise<void> {
    process.umask(0o077);
    const policy = modePolicy(this.server);
    await fsp.mkdir(path.join(this.dataDir, 'mailboxes'), { recursive: true, mode: 0o700 });
    this.privacy = await makeDataDirPrivate(this.dataDir, policy);
    const log = this.eventLog.service;
    if (this.privacy.tightened.length) {
      log.warn(
        {
          dataDir: this.dataDir,
          count: this.privacy.tightened.length,
          first: this.privacy.tightened.slice(0, 5),
        },
        'data directory made private: files and directories were readable by others',
      );
    }
    const me = this.server.name.toLowerCase();
    this.legacyMaildirs = await legacyMaildirs(
      this.dataDir,
      this.loaded.org.directory.users
        .filter((u) => u.mailbox.server.toLowerCase() === me)
        .map((u) => ({
          name: u.name,
          address: u.addresses[0]!.replace(/^smtp:/i, '').toLowerCase(),
          store: u.mailbox.store,
        })),
    );
    for (const m of this.legacyMaildirs)
      log.warn({ legacy: m.legacy, owners: m.owners }, 'Maildir under its old folder name');
    for (const f of this.privacy.failed)
      log.error({ path: f.path, error: f.error }, 'cannot set the mode of a data file');
  }

  private startTracking(): void {
    this.tracking = new MessageTracking(
      path.join(this.dataDir, 'tracking', 'tracking.db'),
      this.server.fqdn,
      this.server.messageTracking,
    );
    this.tracking.onError = (err) =>
      this.eventLog.category('Queuing Engine').error({ err }, 'message tracking write failed');
    this.tracking.onWarning = (text) =>
      this.eventLog.category('Queuing Engine').warn(`message tracking: ${text}`);
    this.tracking.prune();
    // Retention applies to long-running servers too, not only at start.
    this.pruneTimer = setInterval(() => this.tracking.prune(), 3600_000);
    this.pruneTimer.unref();
  }

  private startLinkStateService(): void {
    const org = this.loaded.org;
    if (allServers(org).length < 2) return;
    const ls = org.organisation.linkState;
    this.linkState = new LinkStateService({
      org,
      self: this.server,
      group: selectServer(org, this.server.name).group,
      log: this.eventLog.category('Link State'),
      pollIntervalMs: ls.pollInterval * 1000,
      probeIntervalMs: ls.probeInterval * 1000,
      dampingWindowMs: ls.dampingWindow * 1000,
      heloName: outboundSettings(this.server).heloName,
      // A new table changes routes for new mail, and held mail is looked at again.
      onChange: () => {
        this.router?.invalidate();
        this.engine?.retryHeld();
      },
    });
  }

  private async listenForLinkState(): Promise<void> {
    if (!this.linkState) return;
    try {
      await this.linkState.start();
    } catch (err) {
      this.linkStateError = `link state port ${this.server.address}:${this.server.linkStatePort}: ${(err as Error).message}`;
      this.eventLog.category('Link State').error(this.linkStateError);
    }
  }

  private async buildQueues(): Promise<void> {
    const org = this.loaded.org;
    const outbound = outboundSettings(this.server);
    const sendLog = outbound.virtualServer.protocolLog.enabled
      ? await ProtocolLog.open(
          this.dataDir,
          'send',
          outbound.virtualServer.name,
          outbound.virtualServer.protocolLog.retentionDays,
        )
      : undefined;
    this.sendLog = sendLog;
    const maildirModes = modePolicy(this.server).stores;
    const storeDriverLog = this.eventLog.category('Store Driver');
    this.storeDrivers = storeDrivers(this.server.mailboxStores, {
      // By folder, as the start-up walk sets them: a store's modes follow its folder.
      maildir: new MaildirStore(
        path.join(this.dataDir, 'mailboxes'),
        (store) => maildirModes.get(storeFolder(store)) ?? PRIVATE_MAILDIR,
      ),
      lhloName: outbound.heloName,
      log: (store, event, data) => storeDriverLog.debug({ store, event, data }, 'LMTP'),
    });
    const retry = retryPolicies(this.server);
    const limits = connectionLimits(this.server);
    this.engine = buildQueuePipeline({
      serverName: this.server.name,
      fqdn: outbound.heloName,
      dataDir: this.dataDir,
      spool: this.preSubmission,
      categorizer: new Categorizer(
        categorizerContext(this.server, org, {
          directory: this.directory,
          acceptedDomains: this.acceptedDomains,
        }),
      ),
      stores: this.storeDrivers,
      presentOriginators: originatorPresenter(this.directory),
      tracking: this.tracking,
      log: this.eventLog.category('Queuing Engine'),
      categorizerLog: this.eventLog.category('Categorizer'),
      ...(this.loaded.org.directory.ldap && this.loaded.org.directory.backend === 'ldap'
        ? { directoryRetrySeconds: this.loaded.org.directory.ldap.retrySeconds }
        : {}),
      storeDriverLog,
      localRetry: retry.local,
      remoteRetry: retry.remote,
      route: (r, sender, message) => this.router.nextHop(r, sender, message),
      unusableNextHops: () => this.router.unusableNextHops(),
      remote: new RemoteDelivery(
        remoteSettings(
          this.server,
          sendLog ? (session, event, data) => sendLog.write(session, 0, '', '', event, data) : undefined,
        ),
      ),
      maxConnectionsPerQueue: limits.perQueue,
      maxConnections: limits.total,
      ...(outbound.messages.ndrCopyTo ? { ndrCopyTo: outbound.messages.ndrCopyTo } : {}),
      badmail: this.badmail,
      organisation: () => this.loaded.org,
      releaseConnectors: (domain) => this.router.releaseRemoteTriggered(domain),
    });
  }

  /** Spool and queue.db agree again; archived messages a crash left go to badmail. */
  private async recoverQueues(): Promise<void> {
    const log = this.eventLog.category('Queuing Engine');
    const known = this.engine.core.knownMessageIds();
    this.recovery = await this.preSubmission.recover((id) => known.has(id));
    if (this.recovery.incomplete.length || this.recovery.corrupt.length) {
      log.warn(
        { incomplete: this.recovery.incomplete.length, corrupt: this.recovery.corrupt.length },
        'spool recovery removed incomplete files and set aside corrupt ones',
      );
    }
    for (const m of this.recovery.messages) {
      if (m.envelope.archived !== undefined) await this.archived(m, m.envelope.archived);
    }
    this.queueRecovery = await this.engine.recover(this.recovery, known);
  }

  private async startVirtualServers(): Promise<void> {
    const org = this.loaded.org;
    this.greylist = await openGreylist(org, this.server, this.dataDir);
    const shared = { filters: new Filters(org.filters), greylist: this.greylist };
    const wiring = {
      loaded: this.loaded,
      currentOrg: () => this.loaded.org,
      server: this.server,
      dataDir: this.dataDir,
      directory: this.directory,
      acceptedDomains: this.acceptedDomains,
      spool: this.preSubmission,
      eventLog: this.eventLog,
      tracking: this.tracking,
      ...(this.linkState ? { linkState: this.linkState } : {}),
      onAccepted: (m: SpooledMessage) => this.accepted(m),
      onArchived: (m: SpooledMessage, reason: string) => void this.archived(m, reason),
      remoteTriggered: {
        etrn: async (node: string) => this.engine.remoteTriggered.etrn(node),
        atrn: async (domains: string, identity: { name: string; primaryAddress: string }) =>
          this.engine.remoteTriggered.atrn(domains, identity),
      },
    };
    for (const vs of this.server.virtualServers) {
      let runtime: VirtualServerRuntime;
      try {
        runtime = await startVirtualServer(wiring, vs, shared);
      } catch (err) {
        await this.stop();
        throw err;
      }
      this.virtualServers.push(runtime);
      this.eventLog.service.info(
        { virtualServer: vs.name, ip: vs.ip, port: runtime.address()?.port },
        'SMTP virtual server listening',
      );
    }
  }

  private makeRouter(org: LoadedConfig['org']): Router {
    const ls = this.linkState;
    return ls
      ? new Router(
          org,
          this.server.name,
          (n) => ls.serverUp(n),
          (c) => ls.connectorState(c),
        )
      : new Router(org, this.server.name);
  }

  /**
   * Configuration reload (SIGHUP): the plan (reload.ts) says what applies now and what at
   * the next start; routing applies at once and held mail is routed again.
   */
  reload(next: LoadedConfig): string[] {
    const plan = reloadPlan(this.loaded.org, this.server, next.org);
    if (!plan.ok) throw new Error(plan.error);
    this.linkState?.reconfigure(next.org, plan.group, this.server);
    this.router = this.makeRouter(next.org);
    this.loaded = next;
    // Every hold, schedule and ETRN included: the connectors' settings may have changed.
    this.engine.retryHeld(HOLD_REASONS);
    return plan.notes;
  }

  /** Sender filtering's "accept without notifying": the message goes straight to badmail. */
  private async archived(m: SpooledMessage, reason: string): Promise<void> {
    try {
      await this.badmail.move(m.envelope.id, m.file, reason);
    } catch (err) {
      // Still marked archived in the spool: the next start tries again; it is never delivered.
      this.eventLog.category('Queuing Engine').error({ err, id: m.envelope.id }, 'cannot move to badmail');
      return;
    }
    await fsp.rm(Spool.archiveMarkFor(m.file), { force: true });
    this.tracking.write(
      trackingEvent.badmail(
        {
          id: m.envelope.id,
          messageId: m.envelope.messageId,
          sender: m.envelope.sender,
          recipients: m.envelope.recipients.map((r) => r.address),
          clientIp: m.envelope.client.ip,
        },
        'FILTER',
        reason,
      ),
    );
  }

  private accepted(m: SpooledMessage): void {
    const e = m.envelope;
    this.tracking.write(
      trackingEvent.received({
        id: e.id,
        messageId: e.messageId,
        sender: e.sender,
        subject: e.subject,
        size: m.size,
        recipients: e.recipients.map((r) => r.address),
        clientIp: e.client.ip,
        connectorId: `${this.server.name}\\${e.virtualServer}`,
        originating: e.client.authenticatedAs !== undefined,
      }),
    );
    this.engine.submit(m, m.body);
  }

  async stop(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.linkState?.stop();
    await this.admin?.close();
    await Promise.all(this.virtualServers.map((v) => v.close()));
    await this.engine?.stop();
    await this.storeDrivers?.close();
    await this.preSubmission?.close();
    await this.tracking?.close();
    await this.sendLog?.close();
    this.greylist?.close();
    await this.backend.close?.();
  }
}
