// NAME      store driver: the interface local delivery writes mailboxes through
// DESCRIPTION
//   No I/O here. A driver delivers one copy of a message to one mailbox under a unique id
//   derived from (queue id, recipient row): a delivery repeated after a crash (`recheck`)
//   must find its earlier copy and report it as a duplicate instead of making a second.
//   Failures are TransportErrors with their RFC 3463 status (quota 5.2.2 / 4.2.2, ...).
//   Maildir (maildir.ts) is the built-in driver; LMTP and others plug in here.

export interface MailboxRef {
  /** The mailbox store (database) the mailbox lives in. */
  store: string;
  /** The mailbox's primary SMTP address. */
  address: string;
  quotaKb: number | null;
}

export interface StoreDriver {
  deliver(
    mailbox: MailboxRef,
    uniqueId: string,
    /** Lines this server adds at the top (Return-Path, Delivered-To). */
    prefix: Buffer,
    message: Buffer,
    recheck: boolean,
  ): Promise<{ duplicate: boolean }>;
}
