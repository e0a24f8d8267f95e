// NAME      acceptance: a message's envelope and Received line, its header facts, and the
//           commit to the spool that the 250 promises
// SYNOPSIS  openMessage(session, transaction) · applyHeaderFacts(envelope, headerText)
//           finishMessage(session, transaction)
// DESCRIPTION
//   openMessage() starts the spool file with the envelope and our Received line, the
//   first line of the stored message. finishMessage() runs at the end of DATA or BDAT
//   LAST: a limit failure, then the hop count, then the header From filter, then the
//   commit; the 250 goes out only after the spool file and its directory entry are
//   fsync'd. A message the sender filter archives is marked in the spool file itself,
//   so a crash before its move to badmail cannot let recovery deliver it.
// DIAGNOSTICS  554 5.4.6 hop count · 552 5.3.4 size (a session size overrun also closes) ·
//           452 4.3.1 the disk is full (ENOSPC, EDQUOT) · 451 4.3.0 other spool write failures
// STANDARDS RFC 5321 §4.4 (Received), §6.3 (loops), 3848 ("with" keywords)
// SEE ALSO  queue/spool.ts
import { reply, type TransportError } from '../status.js';
import { newMessageId, type Envelope } from '../../queue/spool.js';
import { rfc5322Date } from '../../message/date.js';
import { askSinks } from './sinks.js';
import { countReceivedHeaders } from '../../message/headers.js';
import { headerFields } from './header-scan.js';
import { isOrganisationServer } from './org-verbs.js';
import { spoolFailure } from './storage.js';
import type { SessionContext, SessionFacts, Transaction } from './state.js';

/** Who submitted the message, as the envelope records it. */
function submitter(session: SessionContext, transaction: Transaction): { authenticatedAs?: string } {
  const identity = session.facts.identity;
  // From another server of the organisation, the submitter's identity is what that server
  // sent with XEXCH50 (none: the sender was anonymous), never the server's own.
  if (isOrganisationServer(identity, session.server)) {
    return transaction.relayedIdentity ? { authenticatedAs: transaction.relayedIdentity } : {};
  }
  return identity ? { authenticatedAs: identity.primaryAddress || identity.name } : {};
}

/** "Resolve anonymous e-mail" [003:5805-5813]: this virtual server's, or the relaying server's. */
function resolvesAnonymous(
  session: SessionContext,
  transaction: Transaction,
): { resolveAnonymousEmail?: true } {
  if (isOrganisationServer(session.facts.identity, session.server)) {
    return transaction.relayedResolveAnonymous ? { resolveAnonymousEmail: true } : {};
  }
  return !session.facts.identity && session.server.config.resolveAnonymousEmail
    ? { resolveAnonymousEmail: true }
    : {};
}

/** RFC 3848 protocol keyword: UTF8SMTP / ESMTP / SMTP, then S for TLS, A for AUTH. */
function withKeyword(facts: SessionFacts, smtputf8: boolean): string {
  return (
    (smtputf8 ? 'UTF8SMTP' : facts.esmtp ? 'ESMTP' : 'SMTP') +
    (facts.tls ? 'S' : '') +
    (facts.identity ? 'A' : '')
  );
}

export function openMessage(session: SessionContext, transaction: Transaction): void {
  const { facts, server } = session;
  const id = newMessageId();
  const envelope: Envelope = {
    id,
    receivedAt: new Date().toISOString(),
    server: server.serverName,
    virtualServer: server.config.name,
    client: {
      ip: session.remoteAddress,
      port: session.remotePort,
      helo: facts.helo ?? '',
      tls: facts.tls,
      ...submitter(session, transaction),
    },
    sender: transaction.sender,
    body: transaction.body,
    smtputf8: transaction.smtputf8,
    ...(transaction.ret ? { ret: transaction.ret } : {}),
    ...(transaction.envid !== undefined ? { envid: transaction.envid } : {}),
    ...(transaction.declaredSize !== undefined ? { declaredSize: transaction.declaredSize } : {}),
    recipients: transaction.recipients,
    ...(transaction.archive !== undefined ? { archived: transaction.archive } : {}),
    ...resolvesAnonymous(session, transaction),
  };
  transaction.writer = server.spool.createWriter(envelope);
  transaction.dataStartedAt = Date.now();
  const received =
    `Received: from ${facts.helo} ([${session.remoteAddress}]) by ${server.fqdn} with ${withKeyword(facts, transaction.smtputf8)}\r\n` +
    `\tid ${id}; ${rfc5322Date(new Date())}\r\n`;
  void transaction.writer.write(Buffer.from(received, 'utf8'));
}

/** Hop count: the message's Received fields and ours, the first line of the stored message. */
function hopCount(headerText: string): number {
  return countReceivedHeaders(headerText) + 1;
}

/** Message-ID, Subject, From and the hop count of the header section, kept in the envelope. */
export function applyHeaderFacts(envelope: Envelope, headerText: string): void {
  const fields = headerFields(headerText);
  const field = (name: string) => fields.find((candidate) => candidate.name.toLowerCase() === name)?.value;
  envelope.receivedHeaders = hopCount(headerText);
  const messageId = field('message-id');
  if (messageId) envelope.messageId = messageId;
  const subject = field('subject');
  if (subject !== undefined) envelope.subject = subject;
  const from = field('from');
  if (from !== undefined) envelope.headerFrom = from;
  // Importance / X-Priority / Priority: what connectors' content restrictions look at.
  const importance = (field('importance') ?? field('priority') ?? '').toLowerCase();
  const xPriority = /^\s*(\d)/.exec(field('x-priority') ?? '')?.[1];
  if (importance === 'high' || importance === 'urgent' || xPriority === '1' || xPriority === '2') {
    envelope.priority = 'high';
  } else if (importance === 'low' || importance === 'non-urgent' || xPriority === '4' || xPriority === '5') {
    envelope.priority = 'low';
  }
}

export async function finishMessage(session: SessionContext, transaction: Transaction): Promise<void> {
  const { facts, server } = session;
  facts.transaction = undefined;
  facts.sessionBytes += transaction.bytes;
  if (transaction.failure) {
    await transaction.writer?.abort();
    if (transaction.spoolError) {
      server.log.error({ err: transaction.spoolError }, 'cannot write message to the spool');
    }
    session.send(transaction.failure);
    if (transaction.failure.text.toString().startsWith('Session size')) session.close();
    return;
  }
  const writer = transaction.writer!;
  const headerText = transaction.header.text();
  if (hopCount(headerText) > server.config.delivery.maxHopCount) {
    await writer.abort();
    session.send(reply(554, '5.4.6', 'Hop count exceeded - possible mail loop'));
    return;
  }
  applyHeaderFacts(writer.envelope, headerText);
  const headerVerdict = server.hygiene?.atData(
    session.remoteAddress,
    writer.envelope.headerFrom,
    facts.identity !== undefined,
  );
  if (headerVerdict?.action === 'reject') {
    await writer.abort();
    session.send(reply(headerVerdict.code, headerVerdict.status, headerVerdict.text));
    if (headerVerdict.drop) session.close();
    return;
  }
  try {
    await askSinks(session, 'endOfData', { envelope: writer.envelope, header: headerText });
  } catch (err) {
    await writer.abort();
    session.send((err as TransportError).reply);
    return;
  }
  const archive =
    transaction.archive ?? (headerVerdict?.action === 'archive' ? headerVerdict.reason : undefined);
  // Marked in the spool file itself: a crash before the move to badmail must not let
  // recovery deliver it.
  if (archive) writer.envelope.archived = archive;
  try {
    const spooled = await writer.commit();
    facts.messagesAccepted++;
    session.send(reply(250, '2.6.0', `<${writer.envelope.id}@${server.fqdn}> Queued mail for delivery`));
    if (archive) server.archived(spooled, archive);
    else server.accepted(spooled);
  } catch (err) {
    await writer.abort();
    server.log.error({ err, id: writer.envelope.id }, 'cannot write message to the spool');
    session.send(spoolFailure(err));
  }
}
