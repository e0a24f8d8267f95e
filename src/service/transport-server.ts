// One Bridgehead server process: the server of the organisation named on the command line,
// with every SMTP virtual server it has, its spool and logs under its data directory.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { timingSafeEqual } from 'node:crypto';
import type { LoadedConfig } from '../config/load.js';
import { selectServer } from '../config/load.js';
import type { ServerConfig, VirtualServerConfig } from '../config/schema.js';
import { AcceptedDomains } from '../directory/accepted-domains.js';
import { EmbeddedDirectory, type Directory } from '../directory/directory.js';
import { EventLog } from '../logs/event-log.js';
import { ProtocolLog } from '../logs/protocol-log.js';
import { Spool, type RecoveryReport, type SpooledMessage } from '../queue/spool.js';
import { VirtualServerRuntime } from '../smtp/server/virtual-server.js';
import { buildQueuePipeline, type QueuePipeline } from './queue-pipeline.js';
import { Badmail } from '../dsn/badmail.js';
import { trackingEvent } from '../tracking/events.js';
import { RemoteDelivery } from '../delivery/remote/remote-delivery.js';
import { Router } from '../routing/router.js';
import { LinkStateService } from '../linkstate/service.js';
import { canonical as canonicalJson } from '../linkstate/table.js';
import { Filters } from '../hygiene/filters.js';
import { BlockListChecker } from '../hygiene/blocklists.js';
import { Greylist } from '../hygiene/greylist.js';
import { SessionHygiene, type HygieneEvent } from '../hygiene/session-hygiene.js';
import { makeResolver } from '../delivery/remote/dns.js';
import { allServers } from '../config/load.js';
import type { FastifyInstance } from 'fastify';
import { buildAdminApi } from '../admin/api.js';
import { TransportMetrics } from '../admin/metrics.js';
import { Categorizer } from '../categorizer/categorizer.js';
import { MaildirStore } from '../delivery/local/maildir.js';
import { MessageTracking } from '../tracking/tracking.js';

export interface TransportServerOptions {
  serverName?: string;
  /** Overrides the server's dataDir (relative paths resolve from the config file). */
  dataDir?: string;
  eventLog?: EventLog;
  /** Accept and queue mail but run no queue (maintenance): nothing is categorized or delivered. */
  hold?: boolean;
}

/**
 * Servers of the organisation authenticate to each other with their name and the shared
 * organisation secret; an authenticated server may relay, like Exchange servers do.
 */
function organisationAuthentication(directory: Directory, org: LoadedConfig['org']): Directory {
  const secret = org.organisation.secret;
  const names = new Set(allServers(org).map((s) => s.server.name.toLowerCase()));
  return {
    findByAddress: (a) => directory.findByAddress(a),
    findByName: (n) => directory.findByName(n),
    async authenticate(login, password) {
      if (secret && names.has(login.toLowerCase())) {
        const a = Buffer.from(password);
        const b = Buffer.from(secret);
        if (a.length === b.length && timingSafeEqual(a, b)) {
          return {
            name: login.toUpperCase(),
            primaryAddress: '',
            permissions: { submit: 'allow', relay: 'allow' },
          };
        }
        return undefined;
      }
      return directory.authenticate(login, password);
    },
  };
}

/** A self-signed certificate made once per data directory, for STARTTLS out of the box. */
async function selfSignedContext(dataDir: string, fqdn: string): Promise<tls.SecureContext> {
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'selfsigned.crt');
  const keyFile = path.join(dir, 'selfsigned.key');
  try {
    return tls.createSecureContext({ cert: await fsp.readFile(certFile), key: await fsp.readFile(keyFile) });
  } catch {
    const selfsigned = await import('selfsigned');
    const pems = await selfsigned.generate([{ name: 'commonName', value: fqdn }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: fqdn }] }],
    });
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(keyFile, pems.private, { mode: 0o600 });
    await fsp.writeFile(certFile, pems.cert);
    return tls.createSecureContext({ cert: pems.cert, key: pems.private });
  }
}

export class TransportServer {
  readonly server: ServerConfig;
  readonly dataDir: string;
  readonly eventLog: EventLog;
  readonly virtualServers: VirtualServerRuntime[] = [];
  readonly preSubmission: Spool;
  readonly directory: Directory;
  readonly acceptedDomains: AcceptedDomains;
  recovery: RecoveryReport | undefined;
  tracking!: MessageTracking;
  engine!: QueuePipeline;

  constructor(
    public loaded: LoadedConfig,
    private readonly options: TransportServerOptions = {},
  ) {
    const { server } = selectServer(loaded.org, options.serverName);
    this.server = server;
    this.dataDir = path.resolve(loaded.baseDir, options.dataDir ?? server.dataDir);
    this.eventLog = options.eventLog ?? new EventLog(server.diagnosticLogging);
    this.preSubmission = new Spool(path.join(this.dataDir, 'spool'));
    this.directory = organisationAuthentication(new EmbeddedDirectory(loaded.org.directory), loaded.org);
    this.acceptedDomains = new AcceptedDomains(loaded.org.recipientPolicies);
    this.badmail = new Badmail(
      path.resolve(this.dataDir, server.virtualServers[0]!.messages.badmailDirectory),
    );
  }

  private readonly badmail: Badmail;

  private async tlsContextFor(vs: VirtualServerConfig): Promise<tls.SecureContext | undefined> {
    if (!vs.tls.enabled) return undefined;
    if (vs.tls.certFile && vs.tls.keyFile) {
      const resolve = (f: string) => path.resolve(this.loaded.baseDir, f);
      return tls.createSecureContext({
        cert: readFileSync(resolve(vs.tls.certFile)),
        key: readFileSync(resolve(vs.tls.keyFile)),
      });
    }
    return selfSignedContext(this.dataDir, this.server.fqdn);
  }

  async start(): Promise<void> {
    await fsp.mkdir(path.join(this.dataDir, 'queue'), { recursive: true });
    await fsp.mkdir(path.join(this.dataDir, 'tracking'), { recursive: true });

    const log = this.eventLog.category('SMTP Protocol');
    const queueLog = this.eventLog.category('Queuing Engine');
    await this.preSubmission.init();
    const org = this.loaded.org;
    const first = this.server.virtualServers[0]!;
    this.tracking = new MessageTracking(
      path.join(this.dataDir, 'tracking', 'tracking.db'),
      this.server.fqdn,
      this.server.messageTracking,
    );
    this.tracking.onError = (err) =>
      this.eventLog.category('Queuing Engine').error({ err }, 'message tracking write failed');
    this.tracking.prune();
    // Retention applies to long-running servers too, not only at start.
    this.pruneTimer = setInterval(() => this.tracking.prune(), 3600_000);
    this.pruneTimer.unref();
    const servers = allServers(org);
    if (servers.length > 1) {
      const ls = org.organisation.linkState;
      this.linkState = new LinkStateService({
        org,
        self: this.server,
        group: selectServer(org, this.server.name).group,
        log: this.eventLog.category('Link State'),
        pollIntervalMs: ls.pollInterval * 1000,
        probeIntervalMs: ls.probeInterval * 1000,
        dampingWindowMs: ls.dampingWindow * 1000,
        heloName: first.delivery.fqdn ?? this.server.fqdn,
        // A new table changes routes for new mail, and held mail is looked at again.
        onChange: () => {
          this.router?.invalidate();
          this.engine?.retryHeld();
        },
      });
    }
    this.router = this.makeRouter(org);
    const local = first.delivery.local;
    const d = first.delivery;
    const policy = (p: typeof local) => ({
      glitchInterval: d.glitchRetryInterval,
      glitchCount: d.glitchRetryCount,
      first: p.first,
      second: p.second,
      third: p.third,
      subsequent: p.subsequent,
      delayNotification: p.delayNotification,
      expiration: p.expiration,
    });
    const sendLog = first.protocolLog.enabled
      ? await ProtocolLog.open(this.dataDir, 'send', first.name, first.protocolLog.retentionDays)
      : undefined;
    this.sendLog = sendLog;
    const sec = d.outboundSecurity;
    const remote = new RemoteDelivery({
      heloName: d.fqdn ?? this.server.fqdn,
      port: d.outboundPort,
      timeoutMs: d.outboundTimeout * 1000,
      heloOnly: d.heloInsteadOfEhlo,
      tls: sec.tls,
      verifyCertificate: sec.verifyCertificate,
      ...(sec.auth === 'basic' && sec.username
        ? { auth: { username: sec.username, password: sec.password ?? '' } }
        : {}),
      resolver: makeResolver(d.externalDnsServers),
      maxMessagesPerConnection: 100,
      protocolLog: sendLog
        ? (session, event, data) => sendLog.write(session, 0, '', '', event, data)
        : undefined,
    });
    this.engine = buildQueuePipeline({
      serverName: this.server.name,
      fqdn: first.delivery.fqdn ?? this.server.fqdn,
      dataDir: this.dataDir,
      spool: this.preSubmission,
      categorizer: new Categorizer({
        serverName: this.server.name,
        directory: this.directory,
        acceptedDomains: this.acceptedDomains,
        forwardUnresolvedTo: first.messages.forwardUnresolvedTo,
        orgMaxRecipients: org.organisation.maxRecipientsPerMessage,
        orgMaxReceiveSizeKb: org.organisation.maxReceiveSizeKb,
        orgMaxSendSizeKb: org.organisation.maxSendSizeKb,
        maxHopCount: first.delivery.maxHopCount,
      }),
      store: new MaildirStore(path.join(this.dataDir, 'mailboxes')),
      tracking: this.tracking,
      log: queueLog,
      categorizerLog: this.eventLog.category('Categorizer'),
      storeDriverLog: this.eventLog.category('Store Driver'),
      localRetry: policy(local),
      remoteRetry: policy(d.outbound),
      route: (r, sender, message) => this.router.nextHop(r, sender, message),
      remote,
      maxConnectionsPerQueue: d.maxOutboundConnectionsPerDomain ?? 100_000,
      maxConnections: d.maxOutboundConnections ?? 100_000,
      ndrCopyTo: first.messages.ndrCopyTo,
      badmail: this.badmail,
      organisation: () => this.loaded.org,
      releaseConnectors: (domain) => this.router.releaseRemoteTriggered(domain),
    });
    // Recovery runs before any listener opens, so no live write can be mistaken for debris;
    // it reads only the spool files the queue database does not know.
    const known = this.engine.core.knownMessageIds();
    this.recovery = await this.preSubmission.recover((id) => known.has(id));
    if (this.recovery.incomplete.length || this.recovery.corrupt.length) {
      queueLog.warn(
        { incomplete: this.recovery.incomplete.length, corrupt: this.recovery.corrupt.length },
        'spool recovery removed incomplete files and set aside corrupt ones',
      );
    }
    // Archived messages a crash left in the spool finish their way to badmail.
    for (const m of this.recovery.messages) {
      if (m.envelope.archived !== undefined) await this.archived(m, m.envelope.archived);
    }
    this.queueRecovery = await this.engine.recover(this.recovery, known);
    if (!this.options.hold) this.engine.start();
    await this.startAdminApi();
    if (this.linkState) {
      try {
        await this.linkState.start();
      } catch (err) {
        this.linkStateError = `link state port ${this.server.address}:${this.server.linkStatePort}: ${(err as Error).message}`;
        this.eventLog.category('Link State').error(this.linkStateError);
      }
    }
    const filters = new Filters(org.filters);
    const grey = org.filters.greylisting;
    if (this.server.virtualServers.some((v) => v.filters.greylisting)) {
      await fsp.mkdir(path.join(this.dataDir, 'hygiene'), { recursive: true });
      this.greylist = new Greylist(
        path.join(this.dataDir, 'hygiene', 'greylist.db'),
        grey.delay * 1000,
        grey.expiry * 1000,
        grey.whitelist,
      );
    }
    for (const vs of this.server.virtualServers) {
      const anyFilter = Object.values(vs.filters).some(Boolean);
      const hygiene = anyFilter
        ? new SessionHygiene(
            vs.filters,
            filters,
            org.filters.connection.blockLists.length
              ? new BlockListChecker(
                  org.filters.connection.blockLists,
                  makeResolver(vs.delivery.externalDnsServers, 3000),
                  this.eventLog.category('Connection Manager'),
                )
              : undefined,
            this.greylist,
            this.directory,
            this.acceptedDomains,
            (e) => this.filtered(vs.name, e),
          )
        : undefined;
      const runtime = new VirtualServerRuntime({
        serverName: this.server.name,
        fqdn: this.server.fqdn,
        config: vs,
        acceptedDomains: this.acceptedDomains,
        directory: this.directory,
        spool: this.preSubmission,
        orgMaxRecipients: this.loaded.org.organisation.maxRecipientsPerMessage,
        tlsContext: await this.tlsContextFor(vs),
        protocolLog: vs.protocolLog.enabled
          ? await ProtocolLog.open(this.dataDir, 'receive', vs.name, vs.protocolLog.retentionDays)
          : undefined,
        log,
        onAccepted: (m) => this.accepted(m),
        onArchived: (m, reason) => void this.archived(m, reason),
        hygiene,
        onRefused: (ip) =>
          this.filtered(vs.name, {
            stage: 'connection control',
            ip,
            verdict: { action: 'reject', code: 0, status: '5.7.1', text: 'dropped at connect' },
          }),
        ...(this.linkState ? { linkState: this.linkState } : {}),
        organisationServers: allServers(org).map((x) => x.server.name),
        remoteTriggered: {
          etrn: async (node) => this.engine.remoteTriggered.etrn(node),
          atrn: async (domains, identity) => this.engine.remoteTriggered.atrn(domains, identity),
        },
      });
      try {
        await runtime.listen();
      } catch (err) {
        await this.stop();
        throw new Error(
          `virtual server "${vs.name}" cannot listen on ${vs.ip}:${vs.port}: ${(err as Error).message}`,
        );
      }
      this.virtualServers.push(runtime);
      this.eventLog.service.info(
        { virtualServer: vs.name, ip: vs.ip, port: runtime.address()?.port },
        'SMTP virtual server listening',
      );
    }
  }

  queueRecovery: { inserted: number; lost: number } | undefined;
  private sendLog: ProtocolLog | undefined;
  metrics: TransportMetrics | undefined;
  admin: FastifyInstance | undefined;
  /** Where the admin API listens ("http://host:port"), or why it does not. */
  adminUrl: string | undefined;
  adminError: string | undefined;
  private readonly startedAt = Date.now();

  private async startAdminApi(): Promise<void> {
    const cfg = this.server.adminApi;
    this.metrics = new TransportMetrics({
      queues: () => this.engine.listQueues(),
      inboundConnections: () =>
        this.virtualServers.map((v) => ({ virtualServer: v.config.name, count: v.connectionCount })),
    });
    const metrics = this.metrics;
    this.tracking.listeners.push((e) => metrics.observe(e));
    this.admin = buildAdminApi({
      serverName: this.server.name,
      fqdn: this.server.fqdn,
      engine: this.engine,
      tracking: this.tracking,
      eventLog: this.eventLog,
      metrics,
      token: cfg.token,
      readOnlyToken: cfg.readOnlyToken,
      linkState: () =>
        this.linkState
          ? {
              master: this.linkState.masterName,
              isMaster: this.linkState.isMaster,
              port: this.linkState.port,
              digest: this.linkState.digest,
              table: this.linkState.table,
            }
          : undefined,
      info: () => ({
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
        dataDir: this.dataDir,
        virtualServers: this.virtualServers.map((v) => ({
          name: v.config.name,
          address: v.address(),
          connections: v.connectionCount,
          accepted: v.accepted_total,
        })),
      }),
    });
    try {
      const url = await this.admin.listen({ host: cfg.host, port: cfg.port });
      this.adminUrl = url.replace('[::1]', '127.0.0.1');
    } catch (err) {
      // The transport keeps running without its admin API; the operator is told why.
      this.adminError = `admin API cannot listen on ${cfg.host}:${cfg.port}: ${(err as Error).message}`;
      this.eventLog.service.error(this.adminError);
      await this.admin.close().catch(() => undefined);
      this.admin = undefined;
    }
  }

  /** Routing decisions for this server (connectors, routing groups, smart host, DNS). */
  router!: Router;

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
   * Configuration reload (SIGHUP): routing groups, connectors and costs take effect at once
   * (a major link state update); other settings (listeners, limits, directory) are read at
   * the next start, and the operator is told so.
   */
  reload(next: LoadedConfig): string[] {
    const found = allServers(next.org).find((s) => s.server.name === this.server.name);
    if (!found) throw new Error(`server ${this.server.name} is no longer in the organisation file`);
    const notes: string[] = [];
    const later: string[] = [];
    const changed = (a: unknown, b: unknown) => canonicalJson(a) !== canonicalJson(b);
    const old = this.loaded.org;
    const { smartHost: _newSmartHost, ...newFirst } = found.server.virtualServers[0]!.delivery;
    const { smartHost: _oldSmartHost, ...oldFirst } = this.server.virtualServers[0]!.delivery;
    if (
      changed(
        { ...found.server, virtualServers: found.server.virtualServers.slice(1) },
        {
          ...this.server,
          virtualServers: this.server.virtualServers.slice(1),
        },
      ) ||
      changed(newFirst, oldFirst) ||
      changed(
        { ...found.server.virtualServers[0], delivery: null },
        { ...this.server.virtualServers[0], delivery: null },
      )
    ) {
      later.push(`this server's settings (${this.server.name})`);
    }
    if (changed(next.org.directory, old.directory)) later.push('directory');
    if (changed(next.org.recipientPolicies, old.recipientPolicies)) later.push('recipient policies');
    if (changed(next.org.filters, old.filters)) later.push('filters');
    if (changed(next.org.organisation, old.organisation))
      later.push('organisation settings (limits, secret, link state timers)');
    notes.push('routing groups, connectors, costs and the smart host apply now');
    if (later.length) notes.push(`at the next start: ${later.join(', ')}`);
    this.linkState?.reconfigure(next.org, found.group, this.server);
    this.router = this.makeRouter(next.org);
    this.loaded = next;
    this.engine.retryHeld();
    return notes;
  }

  private greylist: Greylist | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  linkState: LinkStateService | undefined;
  linkStateError: string | undefined;

  /** Every filter rejection is a tracking event (and so a counter). */
  private filtered(virtualServer: string, e: HygieneEvent): void {
    const v = e.verdict;
    this.tracking.write({
      event: 'FAIL',
      source: 'FILTER',
      internalMessageId: '',
      sender: e.sender,
      recipients: e.recipient ? [e.recipient] : [],
      recipientStatus: v.action === 'reject' ? [v.status] : [],
      clientIp: e.ip,
      connectorId: `${this.server.name}\\${virtualServer}`,
      messageInfo: `${e.stage}: ${v.action === 'reject' ? `${v.code ? `${v.code} ` : ''}${v.status} ${v.text}` : v.action === 'archive' ? v.reason : ''}`,
      directionality: 'Incoming',
    });
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
    await this.preSubmission?.close();
    await this.tracking?.close();
    await this.sendLog?.close();
    this.greylist?.close();
  }
}
