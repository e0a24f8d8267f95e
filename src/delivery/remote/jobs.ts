// NAME      delivery jobs: one job a message, its recipients in one queue
// DESCRIPTION
//   Builds the jobs remote delivery carries (remote-delivery.ts) from queue rows and turns
//   each job's outcome into verdicts: a reply per recipient, one error for the message, or
//   a failure of the next hop itself (the queue's retry, not the recipient's).
import type { QueueCore } from '../../queue/core.js';
import {
  nextHopVerdict,
  verdictFor,
  type AttemptError,
  type NotifyPolicy,
  type Verdict,
} from '../../queue/outcomes.js';
import type { RetryPolicy } from '../../queue/retry.js';
import type { Envelope } from '../../queue/spool.js';
import { notifyList, type MessageRow, type RecipientRow } from '../../queue/store/rows.js';
import type { TrackingEvent } from '../../tracking/tracking.js';
import { trackedMessage, trackingEvent } from '../../tracking/events.js';
import type { FailureRecorder } from '../../dsn/failures.js';
import type { DeliveryJob, DeliveryOutcome } from './remote-delivery.js';

/**
 * Messages a remote round holds, by queue. Only the same queue's rounds skip them: another
 * remote queue may carry the same message's other recipients at the same time, and local
 * delivery its local ones, as before.
 */
export class RoundHolds {
  private readonly byQueue = new Map<string, Set<string>>();
  private readonly messages = new Map<string, number>();

  take(queue: string, id: string): void {
    let ids = this.byQueue.get(queue);
    if (!ids) this.byQueue.set(queue, (ids = new Set()));
    ids.add(id);
    this.messages.set(id, (this.messages.get(id) ?? 0) + 1);
  }

  release(queue: string, id: string): void {
    const ids = this.byQueue.get(queue);
    if (!ids?.delete(id)) return;
    if (!ids.size) this.byQueue.delete(queue);
    const n = (this.messages.get(id) ?? 1) - 1;
    if (n > 0) this.messages.set(id, n);
    else this.messages.delete(id);
  }

  has(queue: string, id: string): boolean {
    return this.byQueue.get(queue)?.has(id) ?? false;
  }

  /** Messages held in `queue` (to ask the database for that many more). */
  count(queue: string): number {
    return this.byQueue.get(queue)?.size ?? 0;
  }

  /** Some round holds the message (the viewer shows it Active). */
  holdsMessage(id: string): boolean {
    return this.messages.has(id);
  }
}

export interface JobContext {
  core: Pick<QueueCore, 'store' | 'bodies'>;
  holds: RoundHolds;
  retry: RetryPolicy;
  notifyPolicy: NotifyPolicy;
  track: (e: TrackingEvent) => void;
  recordFailures: FailureRecorder;
  log: import('pino').Logger;
}

/** What a round learnt of its next hop. */
export interface RoundReport {
  touched: string[];
  /** The next hop could not be reached, with the error. */
  nextHopDown?: string;
  /** Some message got through to the next hop. */
  reached: boolean;
}

export function deliveryJobs(
  ctx: JobContext,
  queue: string,
  messages: MessageRow[],
  rowsFor: (m: MessageRow) => RecipientRow[],
  report: RoundReport,
  /** When the queue retries if this round cannot reach its next hop. */
  nextHopRetryAt: number,
): DeliveryJob[] {
  const jobs: DeliveryJob[] = [];
  for (const m of messages) {
    const rows = rowsFor(m);
    if (!rows.length) continue;
    const envelope = JSON.parse(m.envelope) as Envelope;
    ctx.holds.take(queue, m.id);
    jobs.push({
      envelope,
      recipients: rows.map((r) => ({
        address: r.address,
        ...(notifyList(r) ? { notify: notifyList(r) } : {}),
        ...(r.orcpt ? { orcpt: r.orcpt } : {}),
      })),
      load: () => ctx.core.bodies.body(m),
      // The submitter's identity (and "resolve anonymous e-mail") travel to the next
      // organisation server (XEXCH50).
      properties: Buffer.from(
        JSON.stringify({
          authenticatedAs: envelope.client.authenticatedAs ?? null,
          id: m.id,
          ...(envelope.resolveAnonymousEmail ? { resolveAnonymousEmail: true } : {}),
        }),
      ),
      done: (outcome) => {
        ctx.holds.release(queue, m.id);
        const verdicts = verdictsOf(ctx, m, rows, outcome, Date.now(), nextHopRetryAt);
        // A permanent refusal (no such domain, null MX) fails its mail; it does not make the
        // queue wait for a retry.
        if ('error' in outcome && outcome.nextHop && !outcome.error.permanent)
          report.nextHopDown = `${outcome.error.code} ${outcome.error.status} ${outcome.error.message}`;
        else report.reached = true;
        ctx.core.store.defer(() => record(ctx, m, envelope, queue, verdicts, outcome));
        report.touched.push(m.id);
      },
    });
  }
  return jobs;
}

/**
 * Recipients that arrive in a queue whose next hop is in Retry are deferred at once with
 * the queue's error, without a connection (Postfix's dead-destination cache).
 */
export function deferForNextHop(
  ctx: JobContext,
  queue: string,
  messages: MessageRow[],
  rowsFor: (m: MessageRow) => RecipientRow[],
  error: { code: number; status: string; message: string },
  retryAt: number,
): void {
  const now = Date.now();
  for (const m of messages) {
    const rows = rowsFor(m);
    if (!rows.length) continue;
    const envelope = JSON.parse(m.envelope) as Envelope;
    const outcome = { error: { ...error, permanent: false }, nextHop: true } as const;
    const verdicts = verdictsOf(ctx, m, rows, outcome, now, retryAt);
    record(ctx, m, envelope, queue, verdicts, outcome, false);
  }
}

function verdictsOf(
  ctx: JobContext,
  m: MessageRow,
  rows: RecipientRow[],
  outcome: DeliveryOutcome | { error: AttemptError; nextHop: true },
  now: number,
  nextHopRetryAt: number,
): { row: RecipientRow; verdict: Verdict }[] {
  return rows.map((row, i) => {
    const input = {
      notify: notifyList(row),
      sender: m.sender,
      receivedAt: m.received_at,
      attempts: row.attempts,
      delayNotified: row.delay_notified === 1,
      policy: ctx.retry,
      now,
      notifyPolicy: ctx.notifyPolicy,
    };
    if ('error' in outcome) {
      const error = outcome.error;
      const remoteMta = 'remoteMta' in outcome ? outcome.remoteMta : undefined;
      return {
        row,
        verdict: outcome.nextHop
          ? nextHopVerdict({ ...input, error }, nextHopRetryAt)
          : verdictFor({ ...input, error, ...(remoteMta ? { remoteMta } : {}) }),
      };
    }
    const reply = outcome.results[i]!.reply;
    if (reply.code >= 200 && reply.code < 300)
      return { row, verdict: verdictFor({ ...input, remoteMta: outcome.remoteMta }) };
    const status = reply.status ?? (reply.code >= 500 ? '5.0.0' : '4.0.0');
    return {
      row,
      verdict: verdictFor({
        ...input,
        remoteMta: outcome.remoteMta,
        error: {
          code: reply.code,
          status,
          message: `${outcome.remoteMta} said: ${reply.text}`,
          permanent: reply.code >= 500,
          // A remote server's reply goes into the DSN as it was received (RFC 3464 §2.3.6).
          remoteReply: reply.text,
        },
      }),
    };
  });
}

function record(
  ctx: JobContext,
  m: MessageRow,
  envelope: Envelope,
  queue: string,
  verdicts: { row: RecipientRow; verdict: Verdict }[],
  outcome: DeliveryOutcome | { error: AttemptError },
  attempted = true,
): void {
  ctx.core.store.record(verdicts, attempted);
  const tracked = trackedMessage(m, envelope);
  const deferred = verdicts.filter((v) => v.verdict.kind === 'retry');
  if (deferred.length)
    ctx.track(
      trackingEvent.deferred(
        tracked,
        deferred.map((v) => v.row.address),
        'SMTP',
      ),
    );
  const failed = verdicts.flatMap(({ row, verdict }) =>
    verdict.kind === 'failed' ? [{ address: row.address, status: verdict.status }] : [],
  );
  ctx.recordFailures('SMTP', ctx.log, tracked, failed);
  if (!('error' in outcome)) {
    const sent = verdicts.filter((v) => v.verdict.kind === 'delivered').map((v) => v.row.address);
    if (sent.length)
      ctx.track(trackingEvent.sent(tracked, sent, outcome.remoteMta, queue, outcome.transactions));
  }
}
