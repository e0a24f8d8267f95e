// NAME      failures: the one place that records failed recipients
// DESCRIPTION
//   Each failed recipient is an NDR event in the stage's diagnostic category with the event
//   ids of [002] (3000-3033); the message gets one FAIL tracking event listing them all.
import type { Logger } from 'pino';
import { ndrEvent } from '../logs/event-ids.js';
import { trackingEvent, type TrackedMessage } from '../tracking/events.js';
import type { TrackingEvent } from '../tracking/tracking.js';

export interface FailureRecorder {
  (
    source: string,
    log: Logger | undefined,
    m: TrackedMessage,
    failures: { address: string; status: string }[],
  ): void;
}

export function failureRecorder(track: (e: TrackingEvent) => void): FailureRecorder {
  return (source, log, m, failures) => {
    if (!failures.length) return;
    for (const f of failures) logNdr(log, f.status, f.address, m.messageId ?? m.id);
    track(trackingEvent.failed(m, failures, source));
  };
}

/** An NDR for a recipient, logged as the event log message of [002]. */
function logNdr(log: Logger | undefined, status: string, recipient: string, messageId: string): void {
  const e = ndrEvent(status);
  const fn = e.severity === 'Error' ? log?.error : e.severity === 'Warning' ? log?.warn : log?.info;
  fn?.call(
    log,
    { eventId: e.id, status, recipient, messageId },
    `A non-delivery report with a status code of ${status} was generated for recipient ${recipient} (Message-ID ${messageId}).`,
  );
}
