// NAME      transactions: recipients a next hop refused for its own recipient limit
// DESCRIPTION
//   No I/O here. A next hop that takes no more recipients in one transaction answers 452
//   to the rest (Postfix: "452 4.5.3 Error: too many recipients" after
//   smtpd_recipient_limit). RFC 5321 §4.5.3.1.10: that is temporary for those recipients,
//   and the client sends them in a following transaction; Bridgehead does so at once on
//   the same connection, not after the retry interval. It goes on only while each
//   transaction delivered someone, so a peer that 452s everyone is an ordinary deferral.
// STANDARDS RFC 5321 §4.5.3.1.10
import type { RecipientEnvelope } from '../../queue/spool.js';
import type { RecipientResult } from '../../smtp/client/client.js';

/** Recipients to send in a following transaction, or none (nothing more to do now). */
export function overLimit(results: RecipientResult[]): RecipientEnvelope[] {
  const delivered = results.some((r) => r.reply.code >= 200 && r.reply.code < 300);
  if (!delivered) return [];
  return results.filter((r) => r.reply.code === 452).map((r) => r.recipient);
}

/** The replies of several transactions, each recipient with its last one, in the job's order. */
export function mergeResults(
  recipients: RecipientEnvelope[],
  rounds: RecipientResult[][],
): RecipientResult[] {
  const last = new Map<RecipientEnvelope, RecipientResult>();
  for (const round of rounds) for (const r of round) last.set(r.recipient, r);
  return recipients.map((r) => last.get(r)).filter((r): r is RecipientResult => r !== undefined);
}
