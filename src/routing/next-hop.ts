// NAME      next hop: what routing decides for one recipient
// DESCRIPTION  No I/O here. A remote queue with its destination; a holding queue with a
//   typed reason, re-examined at `retryAt`; or a failure with its status.
import type { HoldReason } from '../queue/names.js';
import type { Destination } from '../delivery/remote/destination.js';

export type NextHop =
  | { queue: string; destination: Destination }
  | { queue: string; destination?: undefined; retryAt: number; hold: HoldReason; reason: string }
  | { fail: { code: number; status: string; text: string } };
