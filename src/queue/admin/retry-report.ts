// NAME      retry report: what "retry now" did to a queue, as an administrator reads it
// DESCRIPTION
//   No I/O here. Force connection makes waiting recipients due now; mail a connector holds
//   (outside its schedule, or for remote triggered delivery) stays held, and a frozen queue
//   sends nothing. The report says so, with the time the schedule opens when there is one,
//   so that nobody reads "retried" as "sent now".
import { SCHEDULE_NEVER_RUNS, type HoldReason } from '../names.js';

/** Recipients a connector still holds after a retry, for one reason. */
export interface HeldReport {
  reason: 'schedule' | 'remote-triggered';
  recipients: number;
  /** The hold text routing wrote ("Connector schedule: outside its windows"). */
  detail: string;
  /** When the schedule next opens (ISO 8601); absent when it never opens by itself. */
  opens?: string;
}

export interface RetryReport {
  /** Recipients made due now. */
  recipients: number;
  held: HeldReport[];
  /** The queue is frozen: nothing in it is sent until it is unfrozen. */
  frozen: boolean;
}

/** The report from the store's counts: held rows grouped by reason and text. */
export function retryReport(
  retried: number,
  holds: { reason: HoldReason; text: string; recipients: number; until: number }[],
  frozen: boolean,
): RetryReport {
  const held: HeldReport[] = [];
  for (const h of holds) {
    if (h.reason !== 'schedule' && h.reason !== 'remote-triggered') continue;
    const known = h.reason === 'schedule' && h.text !== SCHEDULE_NEVER_RUNS;
    held.push({
      reason: h.reason,
      recipients: h.recipients,
      detail: h.text,
      ...(known ? { opens: new Date(h.until).toISOString() } : {}),
    });
  }
  return { recipients: retried, held, frozen };
}
