import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectionsFor, type ConnectionFacts } from './connections.js';

test('one session per four messages, within the per-next-hop and server limits', () => {
  const base: ConnectionFacts = { jobs: 200, perNextHop: 100, total: 1000, inUse: 0, idleElsewhere: 0 };
  const table: [Partial<ConnectionFacts>, number][] = [
    [{ jobs: 1 }, 1],
    [{ jobs: 4 }, 1],
    [{ jobs: 5 }, 2],
    [{}, 50],
    [{ perNextHop: 10 }, 10],
    [{ total: 20, inUse: 15 }, 5],
    [{ total: 20, inUse: 15, idleElsewhere: 5 }, 1],
    [{ total: 20, inUse: 30 }, 1],
  ];
  for (const [over, expected] of table)
    assert.equal(connectionsFor({ ...base, ...over }), expected, JSON.stringify(over));
});
