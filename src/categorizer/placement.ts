// NAME      placement: where the categorizer puts a resolved recipient
// DESCRIPTION
//   No I/O here. A pure function of the recipient row, its resolution (the route the
//   categorizer found) and, for mail leaving this server, the next hop routing would
//   choose now. A failed resolution is final (with the DSN NOTIFY asks for); a local
//   mailbox goes to Local delivery; mail whose next hop is open goes straight to that
//   remote queue (one stage less on the relay path); anything else (a hold, a failure to
//   route, a frozen routing queue: no next hop given) waits for the routing stage.
//   Hop counting happens before (the categorizer refuses a looping message with 5.4.6).
import type { Route } from './categorizer.js';
import { QUEUE } from '../queue/names.js';
import type { NotifyPolicy } from '../queue/outcomes.js';
import type { Placement } from '../queue/store/queue-store.js';

export interface PlacementInput {
  route: Route;
  /** The queue the row is in now (a DSN's rows stay in the DSN queue when they fail). */
  currentQueue: string;
  notify: string[] | undefined;
  sender: string;
  /** The open next hop for a routed recipient, when routing has one now. */
  nextHop?: { queue: string; destination: string };
  /** When a remote recipient's delay notice or expiry falls due. */
  remoteDeadline: number;
}

export function placeRecipient(input: PlacementInput, notifyPolicy: NotifyPolicy): Placement {
  const { route } = input;
  const open = {
    state: 'ready' as const,
    outcome: null,
    status: null,
    diagnostic: null,
    dsn: null,
    route: JSON.stringify(route),
  };
  if (route.kind === 'failed') {
    return {
      queue: input.currentQueue,
      nextHop: null,
      state: 'done',
      outcome: 'failed',
      status: route.status,
      diagnostic: `smtp; ${route.code} ${route.status} ${route.text}`,
      dsn: notifyPolicy('failure', input.notify, input.sender),
      route: null,
      remote: false,
      deadline: null,
    };
  }
  if (route.kind === 'local')
    return { ...open, queue: QUEUE.local, nextHop: null, remote: false, deadline: null };
  if (input.nextHop) {
    return {
      ...open,
      queue: input.nextHop.queue,
      nextHop: input.nextHop.destination,
      remote: true,
      deadline: input.remoteDeadline,
    };
  }
  return { ...open, queue: QUEUE.routing, nextHop: routedName(route), remote: false, deadline: null };
}

/** What a routed recipient waits for, shown as its next hop until routing places it. */
function routedName(route: Exclude<Route, { kind: 'local' | 'failed' }>): string {
  if (route.kind === 'server') return route.server;
  if (route.kind === 'remote') return route.domain;
  return route.host;
}

/** A recipient that expanded (a group, deliver-and-forward): final, reported as expanded. */
export function expandedPlacement(
  queue: string,
  notify: string[] | undefined,
  sender: string,
  notifyPolicy: NotifyPolicy,
): Placement {
  return {
    queue,
    nextHop: null,
    state: 'done',
    outcome: 'expanded',
    status: '2.0.0',
    diagnostic: null,
    dsn: notifyPolicy('success', notify, sender) ? 'expanded' : null,
    route: null,
    remote: false,
    deadline: null,
  };
}
