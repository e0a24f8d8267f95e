// Retry schedule (pure). Glitch retry first [004]: a transient failure is tried again after
// `glitchInterval`, `glitchCount` times; then the virtual server's schedule: first, second,
// third, then every `subsequent` [SPEC §7].

export interface RetryPolicy {
  glitchInterval: number;
  glitchCount: number;
  first: number;
  second: number;
  third: number;
  subsequent: number;
  delayNotification: number;
  expiration: number;
}

/** Seconds to wait after the `failures`-th consecutive transient failure (1-based). */
export function retryDelay(policy: RetryPolicy, failures: number): number {
  if (failures <= policy.glitchCount) return policy.glitchInterval;
  const n = failures - policy.glitchCount;
  if (n === 1) return policy.first;
  if (n === 2) return policy.second;
  if (n === 3) return policy.third;
  return policy.subsequent;
}

export type TransientVerdict =
  { action: 'retry'; nextAttempt: number; notifyDelay: boolean } | { action: 'expire' };

/**
 * What to do after a transient failure at `now` (ms) of a message received at `receivedAt`
 * that has now failed `failures` times and may or may not have had its delay DSN already.
 */
export function afterTransientFailure(
  policy: RetryPolicy,
  receivedAt: number,
  failures: number,
  delayNotified: boolean,
  now: number,
): TransientVerdict {
  if (now - receivedAt >= policy.expiration * 1000) return { action: 'expire' };
  const nextAttempt = now + retryDelay(policy, failures) * 1000;
  const notifyDelay = !delayNotified && now - receivedAt >= policy.delayNotification * 1000;
  return { action: 'retry', nextAttempt, notifyDelay };
}
