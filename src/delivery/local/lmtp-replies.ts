// NAME      LMTP replies: what an LMTP store's answers mean for each copy
// SYNOPSIS  replyOutcome(reply, store) · transactionResults(transaction, store)
//           storeUnavailable(error, count)
// DESCRIPTION
//   No I/O here. An LMTP transaction (RFC 2033) answers MAIL once, each RCPT, DATA once,
//   and then once per accepted recipient. A copy's outcome is the first reply that refused
//   it, else its own reply after the message: 2xx delivered, 4xx retry in "Local delivery",
//   5xx NDR quoting the store (Dovecot's over-quota "552 5.2.2" is NDR 5.2.2). A reply that
//   never came (the store closed or stopped answering) is a retry: 4.4.2, never an NDR.
// STANDARDS RFC 2033 (LMTP), RFC 3463 (enhanced status codes)
import { TransportError } from '../../message/status.js';
import { RemoteReplyError } from '../../smtp/client/client.js';
import type { CopyResult } from './store-driver.js';

export interface LmtpReply {
  code: number;
  /** The enhanced status the reply carried, if any. */
  status?: string;
  /** The whole reply as one line, as received. */
  text: string;
}

/** One reply's meaning for a copy: 2xx delivered, 4xx retry, 5xx NDR with the store's text. */
export function replyOutcome(reply: LmtpReply, store: string): CopyResult {
  if (reply.code >= 200 && reply.code < 300) return { duplicate: false };
  const known = reply.code >= 400 && reply.code < 600;
  const code = known ? reply.code : 451;
  const status = known && reply.status ? reply.status : code >= 500 ? '5.0.0' : '4.5.0';
  const text = `Mailbox store ${store} said: ${reply.text}`;
  return {
    error: known
      ? new RemoteReplyError(code, status, text, reply.text)
      : new TransportError(code, status, text),
  };
}

/** The same failure for every copy: the store could not be reached or stopped answering. */
export function storeUnavailable(error: TransportError, count: number): CopyResult[] {
  return Array.from({ length: count }, () => ({ error }));
}

/** What one transaction's replies were; `finals` may be short when the store went away. */
export interface LmtpTransaction {
  mail: LmtpReply;
  rcpts: readonly LmtpReply[];
  /** Absent when no recipient was accepted and DATA was not sent. */
  data?: LmtpReply;
  /** One reply per accepted recipient after the message, in RCPT order. */
  finals: readonly LmtpReply[];
  /** Why replies stopped coming, if they did. */
  lost?: TransportError;
}

/** One result per recipient of the transaction, in RCPT order. */
export function transactionResults(t: LmtpTransaction, store: string): CopyResult[] {
  const lost = (): CopyResult => ({
    error:
      t.lost ?? new TransportError(451, '4.4.2', `Mailbox store ${store} did not answer for this recipient`),
  });
  if (t.mail.code < 200 || t.mail.code >= 300) return t.rcpts.map(() => replyOutcome(t.mail, store));
  let accepted = 0;
  return t.rcpts.map((rcpt) => {
    if (rcpt.code < 200 || rcpt.code >= 300) return replyOutcome(rcpt, store);
    if (!t.data) return lost();
    if (t.data.code !== 354) {
      const refused = t.data.code >= 200 && t.data.code < 300 ? { ...t.data, code: 451 } : t.data;
      return replyOutcome(refused, store);
    }
    const final = t.finals[accepted++];
    return final ? replyOutcome(final, store) : lost();
  });
}
