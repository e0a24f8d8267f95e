// NAME      outcomes: what a delivery result means for one recipient row
// DESCRIPTION
//   No I/O here. verdictFor() turns one attempt's result into a verdict the store records
//   and never chooses itself: delivered, failed (with the DSN owed), retry at a time (the
//   recipient's own schedule, glitch retries first), or expired (4.4.7). A failure of the
//   next hop itself is the queue's, not the recipient's: see queue/next-hop-retry.ts.
//   Which DSN a recipient is owed follows its NOTIFY; that policy is passed in (dsn/notify.ts)
//   so the queue core holds no DSN rules.
import { afterTransientFailure, type RetryPolicy } from './retry.js';

export type DsnKind = 'failure' | 'delay' | 'success';

/** RFC 3461 NOTIFY policy: the DSN kind owed for an outcome, or null for none. */
export type NotifyPolicy = (kind: DsnKind, notify: string[] | undefined, sender: string) => string | null;

/** The error of one attempt, as the stage saw it. */
export interface AttemptError {
  code: number;
  status: string;
  message: string;
  permanent: boolean;
  /** A remote server's reply as received, for the DSN's Diagnostic-Code (RFC 3464 §2.3.6). */
  remoteReply?: string;
}

export type Verdict =
  | { kind: 'delivered'; outcome: 'delivered' | 'relayed'; dsn: string | null; remoteMta: string | null }
  | {
      kind: 'failed';
      status: string;
      diagnostic: string;
      dsn: string | null;
      lastError: string;
      remoteMta: string | null;
    }
  | {
      kind: 'retry';
      nextAttempt: number;
      lastError: string;
      /**
       * What the delay DSN reports (RFC 3464 §2.3.4-6): the 4.x.x status, the reply as
       * received, and the server that gave it (null: no server answered).
       */
      status: string;
      diagnostic: string;
      remoteMta: string | null;
      failedAt: number;
      delayNotified: boolean;
      dsn: string | null;
      /**
       * Waiting for its queue (next hop down): when its delay notice or expiry falls due,
       * for the remote stage to look at it without an attempt. Null on its own schedule:
       * its next attempt decides.
       */
      deadline: number | null;
    };

export interface VerdictInput {
  error?: AttemptError;
  /** Set when a remote server took the message: delivered means relayed. */
  remoteMta?: string;
  notify: string[] | undefined;
  sender: string;
  receivedAt: number;
  /** Attempts before this one. */
  attempts: number;
  delayNotified: boolean;
  policy: RetryPolicy;
  now: number;
  notifyPolicy: NotifyPolicy;
}

export function errorText(error: AttemptError): string {
  return `${error.code} ${error.status} ${error.message}`;
}

export function verdictFor(input: VerdictInput): Verdict {
  const { error, notify, sender, notifyPolicy } = input;
  const remoteMta = input.remoteMta ?? null;
  if (!error) {
    return {
      kind: 'delivered',
      outcome: remoteMta ? 'relayed' : 'delivered',
      dsn: notifyPolicy('success', notify, sender),
      remoteMta,
    };
  }
  const text = errorText(error);
  const diagnostic = `smtp; ${error.remoteReply ?? text}`;
  if (error.permanent) {
    return {
      kind: 'failed',
      status: error.status,
      diagnostic,
      dsn: notifyPolicy('failure', notify, sender),
      lastError: text,
      remoteMta,
    };
  }
  const transient = afterTransientFailure(
    input.policy,
    input.receivedAt,
    input.attempts + 1,
    input.delayNotified,
    input.now,
  );
  if (transient.action === 'expire') return expired(input, text, diagnostic);
  return {
    kind: 'retry',
    nextAttempt: transient.nextAttempt,
    lastError: text,
    // A delay is 4.x.x whatever the reply claimed (a 5.x.x status with a 4xx code).
    status: /^4\.\d{1,3}\.\d{1,3}$/.test(error.status) ? error.status : '4.0.0',
    diagnostic,
    remoteMta,
    failedAt: input.now,
    delayNotified: input.delayNotified || transient.notifyDelay,
    dsn: transient.notifyDelay ? notifyPolicy('delay', notify, sender) : null,
    deadline: null,
  };
}

/** The time limit passed: 4.4.7 with the last error [SPEC §7]. */
export function expired(
  input: Pick<VerdictInput, 'notify' | 'sender' | 'notifyPolicy'>,
  lastError: string,
  diagnostic = `smtp; ${lastError}`,
): Verdict {
  return {
    kind: 'failed',
    status: '4.4.7',
    diagnostic,
    dsn: input.notifyPolicy('failure', input.notify, input.sender),
    lastError: `Could not deliver the message in the time limit specified. Last error: ${lastError}`,
    remoteMta: null,
  };
}

/**
 * When a remote recipient next needs looking at whatever its queue does: its delay
 * notice, then its expiry. A queue whose next hop is down may not try it for hours.
 */
export function deadlineFor(policy: RetryPolicy, receivedAt: number, delayNotified: boolean): number {
  const expiry = receivedAt + policy.expiration * 1000;
  return delayNotified ? expiry : Math.min(receivedAt + policy.delayNotification * 1000, expiry);
}

/**
 * A transient failure of the next hop itself (or its queue already in Retry): the
 * recipient waits for its queue's retry time, not a schedule of its own; its delay notice
 * and expiry still apply.
 */
export function nextHopVerdict(input: VerdictInput, queueRetryAt: number): Verdict {
  const verdict = verdictFor(input);
  if (verdict.kind !== 'retry') return verdict;
  const deadline = deadlineFor(input.policy, input.receivedAt, verdict.delayNotified);
  return { ...verdict, nextAttempt: queueRetryAt, deadline };
}

/**
 * A remote recipient's deadline has come without its queue trying it (the next hop down,
 * or a backlog): past the expiration it fails with 4.4.7 and the last error (its own, else
 * its queue's); otherwise it owes its delay notice once and next waits for its expiry.
 */
export function deadlineVerdict(input: {
  receivedAt: number;
  now: number;
  policy: RetryPolicy;
  notify: string[] | undefined;
  sender: string;
  notifyPolicy: NotifyPolicy;
  lastError: string | null;
  queueError: string | null;
}):
  | { kind: 'expired'; verdict: Verdict }
  | { kind: 'delay-notice'; dsn: string | null; nextDeadline: number; lastError: string | null } {
  const expiry = input.receivedAt + input.policy.expiration * 1000;
  if (input.now >= expiry) {
    const lastError = input.lastError ?? input.queueError ?? 'the next hop was not reached in time';
    return { kind: 'expired', verdict: expired(input, lastError) };
  }
  return {
    kind: 'delay-notice',
    dsn: input.notifyPolicy('delay', input.notify, input.sender),
    nextDeadline: expiry,
    // The notice says what held it up: the queue's error when it never tried this one.
    lastError: input.queueError,
  };
}
