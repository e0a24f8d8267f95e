// NAME      sink runner: runs the sinks of one event in order
// DESCRIPTION
//   Protocol sinks run in their configured order; the first verdict that is not continue
//   wins and the rest are not asked. A sink that throws counts as a temporary failure of
//   the transport (451 4.3.0), never as acceptance. Queue sinks observe; their errors are
//   logged and ignored, so a broken observer cannot hold mail.
import type { Logger } from 'pino';
import type { Route } from '../categorizer/categorizer.js';
import { CONTINUE, type ProtocolSink, type QueueSink, type SinkVerdict } from './sink.js';

type ProtocolEvent = Exclude<keyof ProtocolSink, 'name'>;

export async function runProtocolEvent<E extends ProtocolEvent>(
  sinks: readonly ProtocolSink[],
  event: E,
  ...args: Parameters<NonNullable<ProtocolSink[E]>>
): Promise<SinkVerdict> {
  for (const sink of sinks) {
    const handler = sink[event] as ((...a: typeof args) => SinkVerdict | Promise<SinkVerdict>) | undefined;
    if (!handler) continue;
    let verdict: SinkVerdict;
    try {
      verdict = await handler.apply(sink, args);
    } catch {
      return {
        action: 'reject',
        code: 451,
        status: '4.3.0',
        text: `Event sink ${sink.name} failed; try again later`,
      };
    }
    if (verdict.action !== 'continue') return verdict;
  }
  return CONTINUE;
}

/** Tells every queue sink; a failing one is logged, not fatal. */
export function notifyQueueSinks(
  sinks: readonly QueueSink[],
  log: Logger | undefined,
  call: (sink: QueueSink) => void,
): void {
  for (const sink of sinks) {
    try {
      call(sink);
    } catch (err) {
      log?.error({ err, sink: sink.name }, 'event sink failed');
    }
  }
}

/**
 * The route after every beforeRouting sink had its say (the last redirect wins). It runs
 * inside the stage's transaction: a sink that throws keeps the route it was given and
 * never rolls back the batch.
 */
export function routeAfterSinks(
  sinks: readonly QueueSink[],
  recipient: string,
  route: Route,
  sender: string,
  log?: Logger,
): Route {
  let current = route;
  for (const sink of sinks) {
    try {
      current = sink.beforeRouting?.(recipient, current, sender) ?? current;
    } catch (err) {
      log?.error({ err, sink: sink.name, recipient }, 'event sink failed; route unchanged');
    }
  }
  return current;
}
