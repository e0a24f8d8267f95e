import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveState, type StateFacts } from './states.js';

const facts = (over: Partial<StateFacts>): StateFacts => ({
  frozen: false,
  active: false,
  open: 2,
  retrying: 0,
  scheduled: 0,
  remoteHeld: 0,
  nextHopRetry: 0,
  ...over,
});

test('queue and message states derive from the holds every open recipient shares', () => {
  const table: [Partial<StateFacts>, string][] = [
    [{}, 'Ready'],
    [{ open: 0 }, 'Ready'],
    [{ frozen: true, active: true, retrying: 2 }, 'Frozen'],
    [{ active: true, retrying: 2 }, 'Active'],
    [{ scheduled: 2 }, 'Scheduled'],
    [{ scheduled: 1, retrying: 1 }, 'Retry'],
    [{ scheduled: 1 }, 'Ready'],
    [{ remoteHeld: 2 }, 'Remote'],
    [{ retrying: 2 }, 'Retry'],
    [{ nextHopRetry: 2 }, 'Retry'],
    [{ nextHopRetry: 1, retrying: 1 }, 'Retry'],
    [{ retrying: 1 }, 'Ready'],
    [{ open: 0, scheduled: 0, frozen: true }, 'Frozen'],
  ];
  for (const [over, state] of table) assert.equal(deriveState(facts(over)), state, JSON.stringify(over));
});
