// An SMTP virtual server: one (IP, port) listener with its own access, limits, TLS and
// protocol log. Connection control is applied at connect: a refused client is dropped
// before the banner [003:5693].
import net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { VirtualServerConfig } from '../../config/schema.js';
import { IpRangeList } from '../../net/ip-range.js';
import type { AcceptedDomains } from '../../directory/accepted-domains.js';
import type { Directory } from '../../directory/directory.js';
import type { Spool, SpooledMessage } from '../../queue/spool.js';
import type { ProtocolLog } from '../../logs/protocol-log.js';
import { formatReply, reply, type Reply } from '../status.js';
import { SmtpSession } from './session.js';
import {
  noHeldQueues,
  type RemoteTriggeredDelivery,
  type SessionHost,
  type SessionStorage,
} from './session-host.js';
import { queueMinFree } from './storage.js';
import type { SessionHygiene } from '../../hygiene/session-hygiene.js';
import type { ProtocolSink } from '../../sinks/sink.js';

export { noHeldQueues, type RemoteTriggeredDelivery, type TurnResult } from './session-host.js';

export interface VirtualServerDeps {
  serverName: string;
  /** Server FQDN; the virtual server's delivery.fqdn overrides it. */
  fqdn: string;
  config: VirtualServerConfig;
  acceptedDomains: AcceptedDomains;
  directory: Directory;
  spool: Spool;
  /** Maximum recipients: the stricter of the virtual server's and the organisation's. */
  orgMaxRecipients: number | null;
  tlsContext?: tls.SecureContext;
  protocolLog?: ProtocolLog;
  log: Logger;
  remoteTriggered?: RemoteTriggeredDelivery;
  /** Hands an acknowledged message to the queuing engine. */
  onAccepted?: (message: SpooledMessage) => void;
  /** A message the sender filter accepts silently: it goes to badmail, not to the queues. */
  onArchived?: (message: SpooledMessage, reason: string) => void;
  /** Connection, sender and recipient filters switched on for this virtual server. */
  hygiene?: SessionHygiene;
  /** A client dropped at connect by connection control (tracking and counters). */
  onRefused?: (ip: string) => void;
  /** Link state (organisations of more than one server): answers X-LINK2STATE. */
  linkState?: { session(): (args: string) => Reply };
  /** Names of the organisation's servers (they authenticate with the organisation secret). */
  organisationServers?: string[];
  /** Protocol event sinks (connect, HELO, MAIL, RCPT, end of data), in order. */
  sinks?: readonly ProtocolSink[];
  /** Free bytes on the data directory's file system (queue/free-space.ts); none: no check. */
  freeSpace?: () => Promise<number | undefined>;
  /** The server's queueMinFreeKb (null: its default, see storage.ts). */
  queueMinFreeKb?: number | null;
  /**
   * Domains a connector's address space lets this virtual server relay to ("Allow messages
   * to be relayed to these domains", routing/relay-domains.ts); none: no such domain.
   */
  relayDomain?: (domain: string) => boolean;
}

export class VirtualServerRuntime implements SessionHost {
  readonly config: VirtualServerConfig;
  readonly fqdn: string;
  readonly serverName: string;
  readonly acceptedDomains: AcceptedDomains;
  readonly directory: Directory;
  readonly spool: Spool;
  readonly tlsContext: tls.SecureContext | undefined;
  readonly protocolLog: ProtocolLog | undefined;
  readonly log: Logger;
  readonly remoteTriggered: RemoteTriggeredDelivery;
  readonly relayList: IpRangeList;
  readonly relayDomain: (domain: string) => boolean;
  readonly bareLineFeedExceptions: IpRangeList;
  readonly maxRecipients: number | null;
  private readonly connectionList: IpRangeList;
  private readonly sessions = new Set<SmtpSession>();
  private readonly onAccepted: ((message: SpooledMessage) => void) | undefined;
  private readonly onArchived: ((message: SpooledMessage, reason: string) => void) | undefined;
  readonly hygiene: SessionHygiene | undefined;
  readonly sinks: readonly ProtocolSink[];
  readonly storage: SessionStorage | undefined;
  private readonly onRefused: ((ip: string) => void) | undefined;
  readonly linkState: { session(): (args: string) => Reply } | undefined;
  private readonly servers: Set<string>;
  private server: net.Server | undefined;
  accepted_total = 0;

  constructor(deps: VirtualServerDeps) {
    this.config = deps.config;
    this.fqdn = deps.config.delivery.fqdn ?? deps.fqdn;
    this.serverName = deps.serverName;
    this.acceptedDomains = deps.acceptedDomains;
    this.directory = deps.directory;
    this.spool = deps.spool;
    this.tlsContext = deps.config.tls.enabled ? deps.tlsContext : undefined;
    this.protocolLog = deps.protocolLog;
    this.log = deps.log;
    this.remoteTriggered = deps.remoteTriggered ?? noHeldQueues;
    this.relayDomain = deps.relayDomain ?? (() => false);
    this.onAccepted = deps.onAccepted;
    this.onArchived = deps.onArchived;
    this.hygiene = deps.hygiene;
    this.sinks = deps.sinks ?? [];
    this.storage = deps.freeSpace
      ? {
          available: deps.freeSpace,
          reserve: queueMinFree(deps.queueMinFreeKb ?? null, deps.config.messages.maxMessageSizeKb),
        }
      : undefined;
    this.onRefused = deps.onRefused;
    this.linkState = deps.linkState;
    this.servers = new Set((deps.organisationServers ?? []).map((n) => n.toLowerCase()));
    this.relayList = new IpRangeList(deps.config.relay.list);
    this.bareLineFeedExceptions = new IpRangeList(deps.config.bareLineFeed.exceptions);
    this.connectionList = new IpRangeList(deps.config.connectionControl.list);
    const limits = [deps.config.messages.maxRecipientsPerMessage, deps.orgMaxRecipients].filter(
      (n): n is number => n !== null,
    );
    this.maxRecipients = limits.length ? Math.min(...limits) : null;
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Connection control: "all except the list below" or "only the list below". */
  connectionAllowed(ip: string): boolean {
    const listed = this.connectionList.contains(ip);
    return this.config.connectionControl.mode === 'allExcept' ? !listed : listed;
  }

  listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    this.server = server;
    server.maxConnections = 100_000;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.config.ip, port: this.config.port, backlog: 1024 }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error({ err }, 'listener error'));
        resolve();
      });
    });
  }

  address(): net.AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  private onConnection(socket: net.Socket): void {
    const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    socket.on('error', () => undefined);
    if (!this.connectionAllowed(ip)) {
      this.log.info({ ip, virtualServer: this.config.name }, 'connection refused by connection control');
      this.onRefused?.(ip);
      socket.destroy();
      return;
    }
    const max = this.config.connections.maxInbound;
    if (max !== null && this.sessions.size >= max) {
      socket.end(
        formatReply(reply(421, '4.3.2', `${this.fqdn} Service not available, too many connections`)),
      );
      return;
    }
    const session = new SmtpSession(socket, this);
    this.sessions.add(session);
    session.start();
  }

  sessionEnded(session: SmtpSession): void {
    this.sessions.delete(session);
  }

  isServer(name: string): boolean {
    return this.servers.has(name.toLowerCase());
  }

  archived(message: SpooledMessage, reason: string): void {
    this.onArchived?.(message, reason);
  }

  accepted(message: SpooledMessage): void {
    this.accepted_total++;
    this.onAccepted?.(message);
  }

  /** Stops listening; open sessions are given `graceMs` to finish, then cut. */
  async close(graceMs = 2000): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const cut = setTimeout(() => {
      for (const s of this.sessions) s.destroy();
    }, graceMs);
    await closed;
    clearTimeout(cut);
    await this.protocolLog?.close();
  }
}
