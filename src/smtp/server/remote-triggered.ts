// NAME      remote-triggered: ETRN, ATRN and TURN, the protocol side
// SYNOPSIS  etrn(session, arg) · turn(session, arg, verb) · authenticated (precondition)
// DESCRIPTION
//   The policy (which connector holds mail for whom, who may dequeue it) is the virtual
//   server's remoteTriggered callbacks; this file only speaks the verbs. ETRN releases
//   held mail to its smart hosts and answers at once. ATRN and TURN, for an
//   authenticated client, reverse the connection: after the positive reply the session
//   stops reading commands and hands its socket to the queuing engine, which reads the
//   client's banner and delivers the held mail over it.
// DIAGNOSTICS  530 5.7.0 Authentication required (ATRN, TURN) · 501 5.5.4 ETRN syntax
// STANDARDS RFC 1985 (ETRN), 2645 (ATRN); TURN of RFC 821, authenticated here
// SECURITY  the reversed connection carries no new STARTTLS or AUTH.
import { TransportError } from '../status.js';
import type { Precondition, SessionContext } from './state.js';

export const authenticated: Precondition = (session) =>
  session.facts.identity ? undefined : new TransportError(530, '5.7.0', 'Authentication required');

/** ETRN, after the table's checks (hello, outside a transaction, an argument). */
export async function etrn(session: SessionContext, arg: string): Promise<void> {
  session.send(await session.server.remoteTriggered.etrn(arg, session.facts.identity));
}

/** ATRN or TURN, after the table's checks (hello, authenticated, outside a transaction). */
export async function turn(session: SessionContext, arg: string, verb: string): Promise<void> {
  const result = await session.server.remoteTriggered.atrn(
    verb === 'TURN' ? '' : arg,
    session.facts.identity!,
  );
  session.send(result.reply);
  // The roles reverse (RFC 2645): this session ends as a server and the connection carries
  // our deliveries, with the client now answering as the server.
  if (result.reverse) session.handOver(`connection reversed for ${verb}`, result.reverse);
}
