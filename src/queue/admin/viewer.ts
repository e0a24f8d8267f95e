// NAME      queue viewer: queues and messages as the administrator sees them
// SYNOPSIS  listQueues() · findMessages({sender, recipient, state, queue, limit=100}) · getMessage(id)
// DESCRIPTION
//   Queue summaries come from queue_counts (kept by triggers as rows change) and a few
//   index lookups per queue: a /metrics scrape or `queue list` costs the same with 200,000
//   messages queued as with none. findMessages streams messages in arrival order, derives
//   each one's state (queue/states.ts) and stops at the limit; nothing loads the queue.
//   The state of a queue and of a message come from the same derivation.
import type { QueueState } from '../names.js';
import { QUEUE } from '../names.js';
import { deriveState } from '../states.js';
import type { QueueStore } from '../store/queue-store.js';
import type { MessageRow, QueueCountRow, RecipientRow } from '../store/rows.js';
import type { Envelope } from '../spool.js';

export interface QueueSummary {
  name: string;
  state: QueueState;
  frozen: boolean;
  messageCount: number;
  totalSize: number;
  oldest?: string;
  nextRetry?: string;
  lastError?: string;
}

export interface MessageSummary {
  id: string;
  sender: string;
  size: number;
  receivedAt: string;
  subject?: string;
  messageId?: string;
  frozen: boolean;
  state: QueueState;
  queues: string[];
  recipients: { address: string; queue: string; state: string; status?: string; lastError?: string }[];
}

export interface FindQuery {
  sender?: string;
  recipient?: string;
  state?: QueueState;
  queue?: string;
  limit?: number;
}

/** What the viewer asks of the running stages. */
export interface ActivityView {
  /** A stage is working on this queue now. */
  queueActive(name: string): boolean;
  /** A stage is delivering this message now. */
  messageActive(id: string): boolean;
}

const OPEN = `r.state IN ('ready', 'retry')`;
const OWN_RETRY = `r.state = 'retry' AND IFNULL(r.hold_reason, '') NOT IN ('schedule', 'remote-triggered')`;

export class QueueViewer {
  constructor(
    private readonly store: QueueStore,
    private readonly activity: ActivityView,
  ) {}

  listQueues(): QueueSummary[] {
    const counts = new Map(
      (this.store.sql('SELECT * FROM queue_counts').all() as QueueCountRow[]).map((c) => [c.queue, c]),
    );
    const frozen = new Set(this.store.frozenQueueNames());
    const remote = new Map(this.store.remoteQueues.all().map((q) => [q.name, q]));
    const names = new Set<string>([...Object.values(QUEUE), ...frozen]);
    for (const [name, c] of counts) if (c.recipients > 0) names.add(name);
    const now = Date.now();
    return [...names].map((name) => {
      const c = counts.get(name);
      const hop = remote.get(name);
      const nextHopDown = hop !== undefined && hop.retry_at > now;
      const summary: QueueSummary = {
        name,
        state: deriveState({
          frozen: frozen.has(name),
          active: this.activity.queueActive(name),
          open: c?.recipients ?? 0,
          retrying: c?.retrying ?? 0,
          scheduled: c?.scheduled ?? 0,
          remoteHeld: c?.remote_held ?? 0,
          nextHopRetry: nextHopDown ? (c?.recipients ?? 0) : 0,
        }),
        frozen: frozen.has(name),
        messageCount: c?.messages ?? 0,
        totalSize: c?.bytes ?? 0,
      };
      if (c && c.recipients > 0) Object.assign(summary, this.details(name, nextHopDown ? hop : undefined));
      return summary;
    });
  }

  /** Oldest message, next retry and last error of one queue: index lookups, no scan. */
  private details(
    name: string,
    hop: { retry_at: number; last_error: string | null } | undefined,
  ): Pick<QueueSummary, 'oldest' | 'nextRetry' | 'lastError'> {
    const out: Pick<QueueSummary, 'oldest' | 'nextRetry' | 'lastError'> = {};
    const oldest = this.store
      .sql(
        `SELECT MIN(m.received_at) FROM messages m WHERE m.id IN (
           SELECT message_id FROM (SELECT message_id FROM recipients WHERE queue = ? AND state = 'ready' LIMIT 1)
           UNION SELECT message_id FROM (SELECT message_id FROM recipients WHERE queue = ? AND state = 'retry'
             ORDER BY next_attempt LIMIT 1))`,
      )
      .pluck()
      .get(name, name) as number | null;
    if (oldest !== null) out.oldest = new Date(oldest).toISOString();
    const retry = this.store
      .sql(
        `SELECT next_attempt, last_error FROM recipients WHERE queue = ? AND state = 'retry'
         ORDER BY next_attempt LIMIT 1`,
      )
      .get(name) as { next_attempt: number; last_error: string | null } | undefined;
    const nextRetry = hop ? hop.retry_at : retry?.next_attempt;
    if (nextRetry !== undefined) out.nextRetry = new Date(nextRetry).toISOString();
    const lastError = hop?.last_error ?? retry?.last_error;
    if (lastError) out.lastError = lastError;
    return out;
  }

  findMessages(query: FindQuery = {}): MessageSummary[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (query.sender) {
      where.push('lower(m.sender) = lower(?)');
      args.push(query.sender);
    }
    if (query.recipient) {
      where.push(
        `m.id IN (SELECT message_id FROM recipients WHERE lower(address) = lower(?) OR lower(original) = lower(?))`,
      );
      args.push(query.recipient, query.recipient);
    }
    if (query.queue) {
      where.push(
        `m.id IN (SELECT message_id FROM recipients WHERE queue = ? AND state IN ('ready', 'retry'))`,
      );
      args.push(query.queue);
    }
    const limit = query.limit ?? 100;
    const out: MessageSummary[] = [];
    const rows = this.store
      .sql(`${FACTS} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY m.received_at`)
      .iterate(Date.now(), ...args) as IterableIterator<MessageRow & MessageFacts>;
    for (const row of rows) {
      const state = this.stateOf(row);
      if (query.state && state !== query.state) continue;
      out.push(this.summary(row, state));
      if (out.length >= limit) {
        rows.return?.();
        break;
      }
    }
    return out;
  }

  getMessage(id: string): MessageSummary | undefined {
    const row = this.store.sql(`${FACTS} WHERE m.id = ?`).get(Date.now(), id) as
      (MessageRow & MessageFacts) | undefined;
    return row ? this.summary(row, this.stateOf(row)) : undefined;
  }

  private stateOf(row: MessageRow & MessageFacts): QueueState {
    return deriveState({
      frozen: row.frozen === 1 || row.queue_frozen > 0,
      active: this.activity.messageActive(row.id),
      open: row.open,
      retrying: row.retrying,
      scheduled: row.scheduled,
      remoteHeld: row.remote_held,
      nextHopRetry: row.next_hop_retry,
    });
  }

  private summary(m: MessageRow, state: QueueState): MessageSummary {
    const envelope = JSON.parse(m.envelope) as Envelope;
    const rows: RecipientRow[] = this.store.allRowsOf(m.id);
    const open = rows.filter((r) => r.state !== 'done');
    return {
      id: m.id,
      sender: m.sender,
      size: m.size,
      receivedAt: new Date(m.received_at).toISOString(),
      subject: envelope.subject,
      messageId: envelope.messageId,
      frozen: m.frozen === 1,
      state,
      queues: [...new Set(open.map((r) => r.queue))],
      recipients: rows.map((r) => ({
        address: r.address,
        queue: r.queue,
        state: r.state === 'done' ? (r.outcome ?? 'done') : r.state,
        ...(r.status ? { status: r.status } : {}),
        ...(r.last_error ? { lastError: r.last_error } : {}),
      })),
    };
  }
}

interface MessageFacts {
  open: number;
  retrying: number;
  scheduled: number;
  remote_held: number;
  next_hop_retry: number;
  queue_frozen: number;
}

/** A message with the counts its state derives from; the first parameter is "now". */
const FACTS = `SELECT m.*,
  (SELECT COUNT(*) FROM recipients r WHERE r.message_id = m.id AND ${OPEN}) AS open,
  (SELECT COUNT(*) FROM recipients r WHERE r.message_id = m.id AND ${OWN_RETRY}) AS retrying,
  (SELECT COUNT(*) FROM recipients r WHERE r.message_id = m.id AND ${OPEN}
     AND r.hold_reason = 'schedule') AS scheduled,
  (SELECT COUNT(*) FROM recipients r WHERE r.message_id = m.id AND ${OPEN}
     AND r.hold_reason = 'remote-triggered') AS remote_held,
  (SELECT COUNT(*) FROM recipients r JOIN remote_queues q ON q.name = r.queue
     WHERE r.message_id = m.id AND r.state = 'ready' AND q.retry_at > ?) AS next_hop_retry,
  (SELECT COUNT(*) FROM recipients r JOIN queue_flags f ON f.name = r.queue AND f.frozen = 1
     WHERE r.message_id = m.id AND ${OPEN}) AS queue_frozen
  FROM messages m`;
