// NAME      event sinks: where code plugs into the transport [003:3635-3690]
// DESCRIPTION
//   No I/O here. Exchange 2003 runs event sinks on SMTP protocol events, on submission, in
//   the categorizer and in routing; these are Bridgehead's. A protocol sink answers each
//   event with a verdict: continue, or reject with a reply (4xx tempfail, 5xx refusal),
//   which the session sends as it would its own. Queue-side sinks observe (submission,
//   after categorization) or may redirect a recipient's route (before routing).
//   Today only the built-in behaviour runs: no sink is configured by default; milters,
//   rspamd and ClamAV plug in here (issue "Transport event sinks and content filtering").
import type { Envelope, SpooledMessage } from '../queue/spool.js';
import type { Route } from '../categorizer/categorizer.js';

export type SinkVerdict =
  { action: 'continue' } | { action: 'reject'; code: number; status: string; text: string };

export const CONTINUE: SinkVerdict = { action: 'continue' };

/** What a protocol sink knows of the session at each event. */
export interface SessionEventFacts {
  virtualServer: string;
  clientIp: string;
  clientPort: number;
  helo?: string;
  tls: boolean;
  authenticatedAs?: string;
}

/** The message at the end of DATA/BDAT: its envelope, header block and bytes so far. */
export interface EndOfDataFacts {
  envelope: Envelope;
  header: string;
}

type Answer = SinkVerdict | Promise<SinkVerdict>;

export interface ProtocolSink {
  readonly name: string;
  connect?(session: SessionEventFacts): Answer;
  helo?(session: SessionEventFacts, helo: string): Answer;
  mailFrom?(session: SessionEventFacts, sender: string): Answer;
  rcptTo?(session: SessionEventFacts, recipient: string, sender: string): Answer;
  endOfData?(session: SessionEventFacts, message: EndOfDataFacts): Answer;
}

export interface QueueSink {
  readonly name: string;
  /** A message entered the queues (after the 250). */
  submitted?(message: SpooledMessage): void;
  /** The categorizer resolved a message's recipients. */
  categorized?(messageId: string, recipients: { address: string; route: Route }[]): void;
  /** Routing is about to choose a next hop: a sink may return another route. */
  beforeRouting?(recipient: string, route: Route, sender: string): Route | undefined;
}

export interface EventSinks {
  protocol: ProtocolSink[];
  queue: QueueSink[];
}

export const NO_SINKS: EventSinks = { protocol: [], queue: [] };
