// NAME      state: what one SMTP session knows, and what a command handler may do with it
// SYNOPSIS  SessionFacts (helo, esmtp, tls, identity, transaction, totals) ·
//           Transaction · SessionContext · Precondition
// DESCRIPTION
//   The facts are plain data, so the pure modules take the few they need as arguments.
//   SessionContext is the session as a command handler sees it: the facts, the virtual
//   server, replies, and the few ways a command changes how input is read (DATA and BDAT
//   bytes, an AUTH response, TLS, a reversed connection). session.ts implements it.
// SEE ALSO  session.ts (the COMMANDS table), README.md
import type net from 'node:net';
import type { TransportError, Reply } from '../status.js';
import type { Envelope, RecipientEnvelope, SpoolWriter } from '../../queue/spool.js';
import type { AuthenticatedIdentity } from '../../directory/directory.js';
import type { HygieneSessionState } from '../../hygiene/session-hygiene.js';
import type { SessionHost } from './session-host.js';
import type { HeaderScan } from './header-scan.js';

/** One mail transaction: from MAIL to the reply after the message, RSET, EHLO or STARTTLS. */
export interface Transaction {
  sender: string;
  body: Envelope['body'];
  smtputf8: boolean;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  declaredSize?: number;
  recipients: RecipientEnvelope[];
  rejectedRecipients: number;
  writer?: SpoolWriter;
  /** Client bytes of the message so far. */
  bytes: number;
  /** Set once the message exceeded a limit; data is still consumed to its end. */
  failure?: Reply;
  /** Why writing the spool failed, when that is the failure (logged at the end of the data). */
  spoolError?: unknown;
  header: HeaderScan;
  /** A failed BDAT poisons the rest of the transaction. */
  bdatFailed?: boolean;
  /** Sender filter "accept without notifying the sender": the message goes to badmail. */
  archive?: string;
  /** The submitter's authenticated identity, as the previous organisation server sent it (XEXCH50). */
  relayedIdentity?: string;
  /** The previous organisation server resolves this anonymous mail's sender (XEXCH50). */
  relayedResolveAnonymous?: boolean;
  /** When DATA or the first BDAT began (ms): connections.dataTimeLimit counts from here. */
  dataStartedAt?: number;
}

export interface SessionFacts {
  /** The EHLO/HELO argument; undefined until one (and again after STARTTLS). */
  helo: string | undefined;
  /** The client said EHLO rather than HELO. */
  esmtp: boolean;
  tls: boolean;
  identity: AuthenticatedIdentity | undefined;
  transaction: Transaction | undefined;
  messagesAccepted: number;
  /** Client bytes of the messages finished so far, for maxSessionSizeKb. */
  sessionBytes: number;
}

/** The session's unread input; a reader takes from the front before it awaits anything. */
export interface Input {
  pending: Buffer;
}

/** Reads input outside command mode (DATA, BDAT, XEXCH50). Resolves true if it made progress. */
export interface ByteReader {
  read(input: Input): Promise<boolean>;
}

export interface SessionContext {
  readonly id: string;
  readonly facts: SessionFacts;
  readonly server: SessionHost;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly hygieneState: HygieneSessionState;
  /** bareLineFeed for this client: its action, or 'normalise' when it is an exception. */
  readonly bareLineFeed: 'reject' | 'normalise';
  send(reply: Reply): void;
  close(): void;
  /** Counts a 5xx; too many close the session. */
  countError(): void;
  /** A line of the protocol log about the session itself ("*"). */
  note(text: string): void;
  /**
   * Input goes to `reader` until it calls readCommands(); 'data' times the transfer
   * (dataTimeout, minDataRate, dataTimeLimit) instead of the idle timeout.
   */
  readBytes(reader: ByteReader, timeout: 'data' | 'unchanged'): void;
  /** Back to command lines; 'idle' restores the idle timeout. */
  readCommands(timeout: 'idle' | 'unchanged'): void;
  /** The next input line is an AUTH response, for `step`. */
  readAuthResponse(step: (line: string) => Promise<void>): void;
  /** After the 220 to STARTTLS: discards pipelined input and restarts the session over TLS. */
  startTls(): void;
  /** Ends the session without closing the connection, which `use` then owns (ATRN, TURN). */
  handOver(reason: string, use: (socket: net.Socket) => Promise<void>): void;
}

/** A check before a command runs; the COMMANDS table lists them in the order they apply. */
export type Precondition = (session: SessionContext, arg: string, verb: string) => TransportError | undefined;
