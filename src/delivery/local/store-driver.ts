// NAME      store driver: the interface local delivery writes mailboxes through
// SYNOPSIS  driver = drivers(storeName); results = await driver.deliver(message, copies)
// DESCRIPTION
//   No I/O here. Each mailbox store of a server (mailboxStores[]) has one driver, chosen by
//   its `driver` setting: Maildir (maildir.ts, the default) or LMTP (lmtp.ts). The worker
//   hands a driver every copy of one message bound for its store at once, so a driver that
//   can (LMTP) delivers them in one transaction; it answers one result per copy, in order,
//   and throws only for a bug: a recipient's failure, or the store's, is a result.
//   A copy's unique id derives from (queue id, recipient row): a delivery repeated after a
//   crash (`recheck`) lets a driver that can look (Maildir) find its earlier copy and report
//   a duplicate instead of making a second. Failures are TransportErrors with their RFC 3463
//   status (quota 5.2.2, store unreachable 4.4.1, ...).

import type { TransportError } from '../../message/status.js';

export interface MailboxRef {
  /** The mailbox store (database) the mailbox lives in. */
  store: string;
  /** The mailbox's primary SMTP address. */
  address: string;
  quotaKb: number | null;
}

/** One recipient's copy: a row of the "Local delivery" queue. */
export interface StoreCopy {
  mailbox: MailboxRef;
  /** The envelope recipient as the row has it (Delivered-To). */
  recipient: string;
  /** Unique per (queue id, recipient row). */
  uniqueId: string;
  /** An earlier attempt may have completed before a crash, or was tried before. */
  recheck: boolean;
}

/** The message all copies of one call share. */
export interface StoreMessage {
  /** Envelope sender ("" for the null sender). */
  sender: string;
  body: Buffer;
}

export type CopyResult = { duplicate: boolean } | { error: TransportError };

export interface StoreDriver {
  /** Delivers copies of one message to mailboxes of this store: one result per copy, in order. */
  deliver(message: StoreMessage, copies: readonly StoreCopy[]): Promise<CopyResult[]>;
  /** Lets go of connections and timers (server stop). */
  close?(): Promise<void>;
}

/** The driver of a store by name; undefined: the store is not configured on this server. */
export type StoreDrivers = (store: string) => StoreDriver | undefined;
