// NAME      preconditions: the checks the COMMANDS table names before a verb runs. No I/O here.
// SYNOPSIS  firstRefusal([hello, insideTransaction], session, arg, verb) -> TransportError | undefined
// DESCRIPTION
//   Each check reads the session's facts and answers with the refusal the client gets,
//   or undefined. The order in a table row is the order the client sees the refusals.
//   Checks that belong to one verb family live beside it (auth.ts, starttls.ts, ...).
// STANDARDS RFC 5321 §4.1.4 (order of commands), §4.3.2 (503 bad sequence)
import { TransportError } from '../status.js';
import type { Precondition, SessionContext } from './state.js';

const badSequence = (text: string) => new TransportError(503, '5.5.1', text);

export function firstRefusal(
  checks: readonly Precondition[],
  session: SessionContext,
  arg: string,
  verb: string,
): TransportError | undefined {
  for (const check of checks) {
    const refusal = check(session, arg, verb);
    if (refusal) return refusal;
  }
  return undefined;
}

/** EHLO or HELO first. */
export const hello: Precondition = (session) =>
  session.facts.helo ? undefined : badSequence('Send hello first');

/** Verbs that change the session's footing (TLS, AUTH, turns) wait for the transaction's end. */
export const outsideTransaction: Precondition = (session, _arg, verb) =>
  session.facts.transaction ? badSequence(`${verb} not allowed during a mail transaction`) : undefined;

export const insideTransaction: Precondition = (session) =>
  session.facts.transaction ? undefined : badSequence('Need mail command');

/** Message data may start: at least one recipient; none accepted of some tried is 554. */
export const withRecipients: Precondition = (session) => {
  const transaction = session.facts.transaction;
  if (!transaction || transaction.recipients.length > 0) return undefined;
  if (transaction.rejectedRecipients > 0) return new TransportError(554, '5.5.1', 'No valid recipients');
  return badSequence('Need rcpt command');
};

export const noArgument =
  (syntax: string): Precondition =>
  (_session, arg) =>
    arg ? new TransportError(501, '5.5.4', syntax) : undefined;

export const anArgument =
  (syntax: string): Precondition =>
  (_session, arg) =>
    arg ? undefined : new TransportError(501, '5.5.4', syntax);

/** Message data may start (DATA, and BDAT once its chunk is read). */
export const readyForData: readonly Precondition[] = [hello, insideTransaction, withRecipients];
