import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rfc5322Date } from './date.js';

test('rfc5322Date: UTC, day of month unpadded, time padded', () => {
  assert.equal(rfc5322Date(new Date(Date.UTC(2024, 2, 5, 9, 4, 7))), 'Tue, 5 Mar 2024 09:04:07 +0000');
});

test('rfc5322Date: two-digit day, end of the year, midnight', () => {
  assert.equal(rfc5322Date(new Date(Date.UTC(1999, 11, 31, 0, 0, 0))), 'Fri, 31 Dec 1999 00:00:00 +0000');
  assert.equal(rfc5322Date(new Date(Date.UTC(2000, 0, 1, 23, 59, 59))), 'Sat, 1 Jan 2000 23:59:59 +0000');
});

test('rfc5322Date: the instant, not the host time zone, decides', () => {
  // 23:30 on the 1st at -05:00 is already the 2nd in UTC.
  assert.equal(rfc5322Date(new Date('2021-07-01T23:30:00-05:00')), 'Fri, 2 Jul 2021 04:30:00 +0000');
});
