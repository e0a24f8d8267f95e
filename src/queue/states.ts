// NAME      queue states: Ready/Active/Retry/Scheduled/Remote/Frozen as the viewer shows them
// DESCRIPTION
//   No I/O here. One derivation for queues and for messages alike, from counts of open
//   recipients: a queue or message whose every open recipient waits for a connector
//   schedule is Scheduled, for ETRN/TURN is Remote, for a retry (its own, or its queue's
//   next hop being down) is Retry [003:6691-6793].
import type { QueueState } from './names.js';

export interface StateFacts {
  /** The message, or its queue, or (for a message) any queue it waits in, is frozen. */
  frozen: boolean;
  /** A stage works on it right now. */
  active: boolean;
  /** Open (not final) recipients. */
  open: number;
  /** Open recipients waiting for their own retry time. */
  retrying: number;
  /** Open recipients held by a connector schedule. */
  scheduled: number;
  /** Open recipients held for remote triggered delivery (ETRN/ATRN/TURN). */
  remoteHeld: number;
  /** Open recipients in a remote queue whose next hop is in Retry (unreachable). */
  nextHopRetry: number;
}

/** Frozen wins; then Active; then the hold every open recipient shares; else Ready. */
export function deriveState(facts: StateFacts): QueueState {
  if (facts.frozen) return 'Frozen';
  if (facts.active) return 'Active';
  const all = (n: number) => facts.open > 0 && n >= facts.open;
  if (all(facts.remoteHeld)) return 'Remote';
  if (all(facts.scheduled)) return 'Scheduled';
  // Every recipient waits, for different reasons: Retry.
  if (all(facts.retrying + facts.nextHopRetry + facts.scheduled + facts.remoteHeld)) return 'Retry';
  return 'Ready';
}
