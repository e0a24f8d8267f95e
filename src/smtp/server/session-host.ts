// NAME      session host: what an SMTP session needs of its virtual server
// DESCRIPTION
//   No I/O here. The virtual server (virtual-server.ts) implements it; the session and its
//   command files see only this, so they do not import the listener that creates them.
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { VirtualServerConfig } from '../../config/schema.js';
import type { AcceptedDomains } from '../../directory/accepted-domains.js';
import type { AuthenticatedIdentity, Directory } from '../../directory/directory.js';
import type { SessionHygiene } from '../../hygiene/session-hygiene.js';
import type { ProtocolLog } from '../../logs/protocol-log.js';
import type { IpRangeList } from '../../net/ip-range.js';
import type { Spool, SpooledMessage } from '../../queue/spool.js';
import { reply, type Reply } from '../status.js';
import type { ProtocolSink } from '../../sinks/sink.js';

/** ATRN / TURN: the reply, and when mail is waiting, what to do with the reversed connection. */
export interface TurnResult {
  reply: Reply;
  reverse?: (socket: net.Socket) => Promise<void>;
}

export interface RemoteTriggeredDelivery {
  etrn(node: string, identity: AuthenticatedIdentity | undefined): Promise<Reply>;
  /** `domains` is ATRN's comma-separated argument; empty for TURN or a bare ATRN. */
  atrn(domains: string, identity: AuthenticatedIdentity): Promise<TurnResult>;
}

/** ETRN / ATRN answers come from the queue side; without it, nothing waits. */
export const noHeldQueues: RemoteTriggeredDelivery = {
  async etrn(node) {
    return reply(458, '4.3.0', `Unable to queue messages for node ${node.replace(/^[@#]/, '')}`);
  },
  async atrn() {
    return { reply: reply(453, '4.3.0', 'You have no mail') };
  },
};

export interface SessionStorage {
  /** Bytes free for the server; undefined when unknown. Cheap: read at most once a second. */
  available(): Promise<number | undefined>;
  /** Bytes to keep free (queueMinFreeKb, or its default). */
  readonly reserve: number;
}

export interface SessionHost {
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
  /** A domain a connector lets this virtual server relay to, from anyone [003:2939]. */
  readonly relayDomain: (domain: string) => boolean;
  /** bareLineFeed.exceptions: clients whose bare LFs are normalised. */
  readonly bareLineFeedExceptions: IpRangeList;
  readonly maxRecipients: number | null;
  readonly hygiene: SessionHygiene | undefined;
  readonly linkState: { session(): (args: string) => Reply } | undefined;
  /** Protocol event sinks, in order; none by default. */
  readonly sinks: readonly ProtocolSink[];
  /** Room on the data directory's file system: MAIL waits (452 4.3.1) below `reserve` bytes. */
  readonly storage: SessionStorage | undefined;
  /** A session ended (closed by either side). */
  sessionEnded(session: object): void;
  /** Is `name` a server of the organisation (it authenticates with the secret)? */
  isServer(name: string): boolean;
  /** A message the sender filter accepts silently: to badmail, never to the queues. */
  archived(message: SpooledMessage, reason: string): void;
  /** An acknowledged message, for the queues. */
  accepted(message: SpooledMessage): void;
}
