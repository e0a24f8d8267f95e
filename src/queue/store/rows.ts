// NAME      queue rows: the shapes of queue.db rows the stages read
// DESCRIPTION  No I/O here. Column names as in schema.ts; JSON columns stay text.
import type { HoldReason } from '../names.js';

export interface RecipientRow {
  id: number;
  message_id: string;
  address: string;
  original: string;
  orcpt: string | null;
  /** RFC 3461 NOTIFY as a JSON array, or null (none given). */
  notify: string | null;
  queue: string;
  /** A remote row's destination as JSON; for a routed row waiting, the next hop's name. */
  next_hop: string | null;
  state: 'ready' | 'retry' | 'done';
  outcome: string | null;
  status: string | null;
  diagnostic: string | null;
  attempts: number;
  next_attempt: number;
  first_failure: number | null;
  last_error: string | null;
  /** The DSN still owed for this recipient: failure, delay, success, expanded, relayed. */
  dsn_pending: string | null;
  delay_notified: number;
  /** The categorizer's route as JSON. */
  route: string | null;
  recheck: number;
  remote: number;
  remote_mta: string | null;
  hold_reason: HoldReason | null;
  /** When a remote row's delay notice or expiry is due, whatever its queue does. */
  deadline: number | null;
  /**
   * 1: the sender did not name this recipient and may not learn it (a member of a group
   * with hidden membership, or a hidden user reached through a group, contact or
   * forwarding): reports name `original` instead.
   */
  concealed: number;
}

export interface MessageRow {
  id: string;
  file: string;
  sender: string;
  size: number;
  received_at: number;
  /** The spool envelope as JSON. */
  envelope: string;
  frozen: number;
  is_dsn: number;
  dsn_count: number;
}

/** A remote queue: one next hop, its destination, and its own retry when it is down. */
export interface RemoteQueueRow {
  name: string;
  destination: string;
  retry_at: number;
  failures: number;
  last_error: string | null;
}

/** Counts kept by triggers, per queue. */
export interface QueueCountRow {
  queue: string;
  messages: number;
  bytes: number;
  recipients: number;
  retrying: number;
  scheduled: number;
  remote_held: number;
}

export function notifyList(row: { notify: string | null }): string[] | undefined {
  return row.notify ? (JSON.parse(row.notify) as string[]) : undefined;
}
