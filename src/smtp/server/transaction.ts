// NAME      transaction: MAIL opens a mail transaction, RCPT adds recipients, RSET ends it
// SYNOPSIS  mail(session, arg) · rcpt(session, arg) · resetTransaction(facts)
// DESCRIPTION
//   MAIL: anonymous submission and the user's submit permission, the per-connection
//   message limit (421, closes), the path and its parameters (envelope-params.ts), the
//   free space of the data directory against queueMinFreeKb and SIZE= (storage.ts), then
//   the sender filter, which may refuse, drop the connection or mark the message for
//   badmail. RCPT: parameters, the recipient limit, the relay decision (relay-policy.ts)
//   and the recipient filters. A refused recipient is counted so DATA can tell
//   "554 No valid recipients" from "503 Need rcpt command".
// DIAGNOSTICS  530 5.7.1 anonymous refused · 550 5.7.1 no submit permission ·
//           452 4.3.1 Insufficient system storage (below the reserve, or SIZE= does not fit) ·
//           452 4.5.3 too many recipients · 550 5.7.1 Unable to relay for <addr>
// STANDARDS RFC 5321 §3.3, §4.5.1 (Postmaster), 3461, 6531
// SECURITY  the relay decision is made here for every recipient; see relay-policy.ts.
import { parsePath } from '../address.js';
import { reply, TransportError } from '../status.js';
import type { RecipientEnvelope } from '../../queue/spool.js';
import { recipientParameters, senderParameters } from './envelope-params.js';
import { mayRelay, needsRelay } from './relay-policy.js';
import { HeaderScan } from './header-scan.js';
import { askSinks } from './sinks.js';
import { storageRefusal } from './storage.js';
import type { Precondition, SessionContext, SessionFacts } from './state.js';

/** MAIL inside a transaction. */
export const noSenderYet: Precondition = (session) =>
  session.facts.transaction ? new TransportError(503, '5.5.1', 'Sender already specified') : undefined;

export async function mail(session: SessionContext, arg: string): Promise<void> {
  const { facts, server } = session;
  const config = server.config;
  if (!config.authentication.anonymous && !facts.identity) {
    throw new TransportError(530, '5.7.1', 'Client was not authenticated');
  }
  if (facts.identity?.permissions?.submit === 'deny') {
    throw new TransportError(550, '5.7.1', 'Client does not have permission to submit mail to this server');
  }
  const max = config.messages.maxMessagesPerConnection;
  if (max !== null && facts.messagesAccepted >= max) {
    throw new TransportError(
      421,
      '4.7.0',
      `${server.fqdn} Too many messages for this connection, closing transmission channel`,
      true,
    );
  }
  const path = parsePath(arg, 'sender');
  const parameters = senderParameters(path, {
    esmtp: facts.esmtp,
    maxMessageSizeKb: config.messages.maxMessageSizeKb,
  });
  if (parameters instanceof TransportError) throw parameters;
  // Before the filters: a full disk is the same answer for everyone (Postfix queue_minfree).
  if (server.storage) {
    const refusal = storageRefusal({
      available: await server.storage.available(),
      reserve: server.storage.reserve,
      ...(parameters.declaredSize !== undefined ? { declaredSize: parameters.declaredSize } : {}),
    });
    if (refusal) throw refusal;
  }
  const verdict = server.hygiene?.atMail(session.remoteAddress, path.address, facts.identity !== undefined);
  if (verdict?.action === 'reject') {
    throw new TransportError(verdict.code, verdict.status, verdict.text, verdict.drop ?? false);
  }
  await askSinks(session, 'mailFrom', path.address);
  facts.transaction = {
    sender: path.address,
    ...parameters,
    recipients: [],
    rejectedRecipients: 0,
    bytes: 0,
    header: new HeaderScan(),
    ...(verdict?.action === 'archive' ? { archive: verdict.reason } : {}),
  };
  session.send(reply(250, '2.1.0', `${path.address || '<>'}....Sender OK`));
}

export async function rcpt(session: SessionContext, arg: string): Promise<void> {
  const { facts, server } = session;
  const transaction = facts.transaction!;
  const path = parsePath(arg, 'recipient');
  const parameters = recipientParameters(path, transaction.smtputf8);
  if (parameters instanceof TransportError) throw parameters;
  const recipient: RecipientEnvelope = { address: path.address, ...parameters };
  const max = server.maxRecipients;
  if (max !== null && transaction.recipients.length >= max) {
    transaction.rejectedRecipients++;
    throw new TransportError(452, '4.5.3', 'Too many recipients');
  }
  // "Postmaster" without a domain is always ours (RFC 5321 §4.5.1). A connector's relay
  // domain is accepted here like our own, tricks in its local part still need relay rights.
  const localDomain =
    path.domain === '' ||
    server.acceptedDomains.match(path.domain) !== undefined ||
    server.relayDomain(path.domain);
  const relayAllowed = mayRelay({
    permission: facts.identity?.permissions?.relay,
    authenticated: facts.identity !== undefined,
    allowAuthenticated: server.config.relay.allowAuthenticated,
    listMode: server.config.relay.mode,
    clientListed: server.relayList.contains(session.remoteAddress),
  });
  if (needsRelay(path, localDomain) && !relayAllowed) {
    transaction.rejectedRecipients++;
    throw new TransportError(550, '5.7.1', `Unable to relay for ${path.address}`);
  }
  if (server.hygiene && path.domain) {
    const verdict = await server.hygiene.atRcpt(
      session.hygieneState,
      session.remoteAddress,
      transaction.sender,
      path.address,
      facts.identity !== undefined,
    );
    if (verdict.action === 'reject') {
      transaction.rejectedRecipients++;
      throw new TransportError(verdict.code, verdict.status, verdict.text, verdict.drop ?? false);
    }
  }
  try {
    await askSinks(session, 'rcptTo', path.address, transaction.sender);
  } catch (err) {
    transaction.rejectedRecipients++;
    throw err;
  }
  transaction.recipients.push(recipient);
  session.send(reply(250, '2.1.5', path.address));
}

/** Forgets the open transaction; a message already started is removed from the spool. */
export async function resetTransaction(facts: SessionFacts): Promise<void> {
  const writer = facts.transaction?.writer;
  facts.transaction = undefined;
  if (writer) await writer.abort();
}
