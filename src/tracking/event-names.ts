// NAME      event names: the tracking events a stage records
// DESCRIPTION
//   No I/O here. The names the constructors in events.ts write, which are what
//   `bridgehead track --event` and the admin API's `event` filter accept: the guide's
//   list [002 "Event IDs"] without those no stage of Bridgehead records, and GAP
//   (tracking's own record of events it could not write).
export const TRACKING_EVENTS = [
  'RECEIVE',
  'SUBMIT',
  'RESOLVE',
  'EXPAND',
  'DUPLICATEEXPAND',
  'REDIRECT',
  'SEND',
  'DELIVER',
  'DUPLICATEDELIVER',
  'DEFER',
  'FAIL',
  'DSN',
  'BADMAIL',
  /** Bridgehead's own: events that could not be recorded (messageInfo says how many, when). */
  'GAP',
] as const;

export type TrackingEventName = (typeof TRACKING_EVENTS)[number];

/** The event `name` stands for (case ignored), or undefined when no stage records it. */
export function trackingEventName(name: string): TrackingEventName | undefined {
  const upper = name.trim().toUpperCase();
  return TRACKING_EVENTS.find((e) => e === upper);
}
