import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeldEvents } from './held-events.js';
import type { EventRowValues } from './schema.js';

/** A row with only what HeldEvents reads: the time (column 0) and a name to follow it by. */
const row = (time: number, name: string): EventRowValues => [time, 'mail1', 'RECEIVE', 'SMTP', name];
const names = (rows: EventRowValues[]) => rows.map((r) => (r[2] === 'GAP' ? `GAP ${r[18]}` : r[4]));

test('held rows come back in order; past the limit a GAP row closes the batch', () => {
  const held = new HeldEvents();
  assert.equal(held.waiting, false);
  held.add([row(1000, 'a'), row(2000, 'b')], 3, '2 event(s) not recorded: database or disk is full');
  held.add([row(3000, 'c'), row(4000, 'd'), row(5000, 'e')], 3, undefined);
  assert.equal(held.count, 3);
  assert.ok(held.waiting);
  const taken = held.take('mail1')!;
  assert.deepEqual(names(taken.rows), [
    'a',
    'b',
    'c',
    'GAP 2 event(s) not recorded between 1970-01-01T00:00:04.000Z and 1970-01-01T00:00:05.000Z: database or disk is full',
  ]);
  assert.equal(taken.rows[3]![0], 4000, 'dated at the first lost event');
  assert.equal(held.take('mail1'), undefined, 'one retry at a time');
  held.done();
  assert.equal(held.waiting, false);
});

test('a failed retry puts its rows back in front of newer ones and merges the gaps', () => {
  const held = new HeldEvents();
  held.add([row(1, 'a'), row(2, 'b')], 1, 'full');
  const taken = held.take('mail1')!;
  // Meanwhile the retry's row counts against the limit: both newer ones are lost.
  held.add([row(3, 'c'), row(4, 'd')], 1, undefined);
  held.putBack(taken, 'still full');
  assert.equal(held.count, 1);
  const again = held.take('mail1')!;
  assert.deepEqual(names(again.rows).slice(0, 1), ['a']);
  assert.match(String(again.rows[1]![18]), /^3 event\(s\) not recorded between \S+ and \S+: still full$/);
});
