// NAME      queue names: the guide's named queues, stage names, hold reasons
// DESCRIPTION
//   No I/O here. The names the queue viewer shows [003:6691-6793]; remote queues are named
//   after their next hop (a domain, a smart host, a connector, a server's FQDN).

export const QUEUE = {
  preSubmission: 'Pre-submission',
  categorizer: 'Messages awaiting directory lookup',
  routing: 'Messages waiting to be routed',
  local: 'Local delivery',
  unreachable: 'Final destination currently unreachable',
  deferred: 'Messages queued for deferred delivery',
  dsn: 'DSN messages pending submission',
  failedRetry: 'Failed message retry queue',
} as const;

/** The stage workers the scheduler wakes; each registers under one of these names. */
export const STAGE = {
  categorizer: 'categorizer',
  routing: 'routing',
  local: 'local delivery',
  remote: 'remote delivery',
  dsn: 'dsn',
} as const;

export type StageName = (typeof STAGE)[keyof typeof STAGE];

export type QueueState = 'Ready' | 'Active' | 'Retry' | 'Scheduled' | 'Remote' | 'Frozen';

/**
 * Why a recipient waits in a holding queue instead of a remote queue. `schedule` and
 * `remote-triggered` show as Scheduled and Remote in the queue viewer; the others as Retry.
 */
export const HOLD_REASONS = ['schedule', 'remote-triggered', 'no-route', 'link-down'] as const;
export type HoldReason = (typeof HOLD_REASONS)[number];

/** Held mail that link state changes release: a route may have come back. */
export const RELEASED_BY_LINK_STATE: readonly HoldReason[] = ['no-route', 'link-down'];

/**
 * The hold text routing writes for mail whose connector schedule never opens by itself
 * (mode never, or no window): such mail has no opening time to report.
 */
export const SCHEDULE_NEVER_RUNS = 'Connector schedule: never run';
