import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransferClock } from './transfer-clock.js';

const LIMITS = { gapMs: 10_000, minRate: 500, totalMs: 3_600_000 };

test('TransferClock: a client that sends nothing runs out after dataTimeout ("idle")', () => {
  const clock = new TransferClock(LIMITS, 0, 0);
  assert.equal(clock.deadline(), 10_000);
  assert.equal(clock.verdict(9_999), undefined);
  assert.equal(clock.verdict(10_000), 'idle');
});

test('TransferClock: one byte a second runs out after about dataTimeout ("rate")', () => {
  const clock = new TransferClock(LIMITS, 0, 0);
  let now = 0;
  let verdict;
  // Bounded: at 1 byte/s the budget of 10 s earns 2 ms a byte back, so it ends near 10 s.
  for (let second = 1; second <= 60 && !verdict; second++) {
    now = second * 1000;
    verdict = clock.verdict(now);
    if (!verdict) clock.received(1, now);
  }
  assert.equal(verdict, 'rate');
  assert.ok(now > 10_000 && now <= 11_000, `cut at ${now}`);
});

test('TransferClock: a client at the minimum rate or faster never runs out before the total', () => {
  const clock = new TransferClock(LIMITS, 0, 0);
  for (let second = 1; second <= 3599; second++) {
    assert.equal(clock.verdict(second * 1000), undefined, `at ${second} s`);
    clock.received(500, second * 1000);
  }
  // The budget is 10 s in hand (never more); the total ends first.
  assert.equal(clock.deadline(), 3_600_000);
  assert.equal(clock.verdict(3_600_000), 'total');
});

test('TransferClock: the total counts from the message start, not from this chunk', () => {
  const clock = new TransferClock({ ...LIMITS, totalMs: 6_000 }, 0, 5_000);
  clock.received(100_000, 5_500);
  assert.equal(clock.deadline(), 6_000);
  assert.equal(clock.verdict(6_000), 'total');
});

test('TransferClock: minDataRate 0 makes dataTimeout the gap between reads; dataTimeLimit 0 is no limit', () => {
  const clock = new TransferClock({ gapMs: 10_000, minRate: 0, totalMs: 0 }, 0, 0);
  for (let second = 9; second <= 90_000; second += 9) clock.received(1, second * 1000);
  assert.equal(clock.verdict(90_000_000 + 9_999), undefined);
  assert.equal(clock.verdict(90_000_000 + 10_000), 'idle');
});

test('TransferClock: time the server held the client up is not held against it', () => {
  const clock = new TransferClock(LIMITS, 0, 0);
  clock.received(1, 1_000);
  clock.waited(9_000);
  assert.equal(clock.verdict(12_000), undefined);
  assert.equal(clock.deadline(), 19_000);
});
