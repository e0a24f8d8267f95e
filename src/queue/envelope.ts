// NAME      envelope: what the spool file's header line records about a message
// DESCRIPTION
//   No I/O here. Written once at acceptance (smtp/server/acceptance.ts) and read by every
//   stage; split from spool.ts, which re-exports it.
export interface RecipientEnvelope {
  address: string;
  /** DSN NOTIFY (RFC 3461): NEVER or a subset of SUCCESS, FAILURE, DELAY. */
  notify?: string[];
  /** DSN ORCPT as "type;address" (decoded from xtext). */
  orcpt?: string;
}

export interface Envelope {
  id: string;
  receivedAt: string;
  server: string;
  virtualServer: string;
  client: { ip: string; port: number; helo: string; tls: boolean; authenticatedAs?: string };
  /** Reverse path; "" is the null sender. */
  sender: string;
  body: '7BIT' | '8BITMIME' | 'BINARYMIME';
  smtputf8: boolean;
  /** DSN RET and ENVID (RFC 3461). */
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** Declared SIZE= at MAIL, if any. */
  declaredSize?: number;
  recipients: RecipientEnvelope[];
  /** Message-ID header, when the message carried one. */
  messageId?: string;
  subject?: string;
  headerFrom?: string;
  /** Received header fields in the message, ours included (hop count). */
  receivedHeaders?: number;
  /** Accepted silently by the sender filter: it belongs in badmail, never in the queues. */
  archived?: string;
  /** From Importance / X-Priority; absent means normal. */
  priority?: 'high' | 'low';
  /**
   * Anonymous mail from a virtual server with resolveAnonymousEmail (or relayed for one by
   * another organisation server): mailboxes show its sender's directory display name.
   */
  resolveAnonymousEmail?: true;
}
