// NAME      state rules: how link state treats a connector's observed state
// DESCRIPTION  No I/O here. Oscillation damping keeps a flapping connector up; a leaf
//   routing group keeps its only link up [003:6445-6471, 9040-9050].
import type { ConnectorView, Topology } from '../routing/view.js';

/**
 * Oscillation damping [003:9040-9050]: a connector that changed state more than once in
 * the window stays up. `history` holds the times (ms) of its state changes.
 */
export function dampedState(
  observed: 'up' | 'down',
  history: number[],
  now: number,
  windowMs = 600_000,
): 'up' | 'down' {
  const recent = history.filter((t) => now - t <= windowMs);
  return recent.length > 1 ? 'up' : observed;
}

/** A leaf routing group (one link, no alternative) keeps its link up [003:6445-6471]. */
export function leafKeepsUp(t: Topology, c: ConnectorView): boolean {
  if (c.type !== 'routingGroup' || !c.to) return false;
  const links = t.connectors.filter(
    (x) => x.type === 'routingGroup' && (x.group === c.group || x.to === c.group),
  );
  const targets = new Set(links.map((x) => (x.group === c.group ? x.to : x.group)));
  return targets.size <= 1;
}
