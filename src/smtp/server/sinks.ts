// NAME      session sinks: the SMTP protocol events event sinks see
// DESCRIPTION
//   At connect, HELO/EHLO, MAIL, RCPT and the end of the message the session asks the
//   virtual server's protocol sinks (sinks/sink.ts) after its own checks and filters; a
//   reject becomes the reply the session sends, as its own refusals do. With no sink
//   configured (the default) nothing is asked and nothing waits.
import { runProtocolEvent } from '../../sinks/runner.js';
import type { ProtocolSink, SessionEventFacts } from '../../sinks/sink.js';
import { TransportError } from '../status.js';
import type { SessionContext } from './state.js';

export function eventFacts(
  session: Pick<SessionContext, 'facts' | 'server' | 'remoteAddress' | 'remotePort'>,
): SessionEventFacts {
  const { facts } = session;
  return {
    virtualServer: session.server.config.name,
    clientIp: session.remoteAddress,
    clientPort: session.remotePort,
    ...(facts.helo !== undefined ? { helo: facts.helo } : {}),
    tls: facts.tls,
    ...(facts.identity ? { authenticatedAs: facts.identity.name } : {}),
  };
}

type Event = Exclude<keyof ProtocolSink, 'name'>;
type ArgsAfterSession<E extends Event> =
  Parameters<NonNullable<ProtocolSink[E]>> extends [unknown, ...infer Rest] ? Rest : never;

/** Asks the sinks of `event`; a reject is thrown as the TransportError the session replies with. */
export async function askSinks<E extends Event>(
  session: Pick<SessionContext, 'facts' | 'server' | 'remoteAddress' | 'remotePort'>,
  event: E,
  ...args: ArgsAfterSession<E>
): Promise<void> {
  const sinks = session.server.sinks;
  if (!sinks.length) return;
  const verdict = await runProtocolEvent(
    sinks,
    event,
    ...([eventFacts(session), ...args] as unknown as Parameters<NonNullable<ProtocolSink[E]>>),
  );
  if (verdict.action === 'reject') throw new TransportError(verdict.code, verdict.status, verdict.text);
}
