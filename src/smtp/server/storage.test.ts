import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_MIN_FREE_BYTES, queueMinFree, spoolFailure, storageRefusal } from './storage.js';

const MB = 1024 * 1024;

test('the reserve: configured KB, else 1.5 × the message size limit, at least 100 MB', () => {
  assert.equal(queueMinFree(0, 4096), 0);
  assert.equal(queueMinFree(2048, 4096), 2 * MB);
  assert.equal(queueMinFree(null, 4096), DEFAULT_MIN_FREE_BYTES);
  assert.equal(queueMinFree(null, null), DEFAULT_MIN_FREE_BYTES);
  assert.equal(queueMinFree(null, 200 * 1024), 300 * MB);
});

test('MAIL is refused below the reserve, and when SIZE= does not fit above it', () => {
  const full = '452 4.3.1 Insufficient system storage';
  const text = (e: ReturnType<typeof storageRefusal>) =>
    e ? `${e.reply.code} ${e.reply.status} ${e.reply.text.toString()}` : undefined;
  assert.equal(text(storageRefusal({ available: 50 * MB, reserve: 100 * MB })), full);
  assert.equal(text(storageRefusal({ available: 100 * MB, reserve: 100 * MB })), undefined);
  assert.equal(text(storageRefusal({ available: 110 * MB, reserve: 100 * MB, declaredSize: 11 * MB })), full);
  assert.equal(
    text(storageRefusal({ available: 110 * MB, reserve: 100 * MB, declaredSize: 10 * MB })),
    undefined,
  );
  // Free space unknown (statfs failed): no refusal.
  assert.equal(text(storageRefusal({ available: undefined, reserve: 100 * MB, declaredSize: 1 })), undefined);
  // No reserve: a full disk still takes MAIL without SIZE (DATA will tell).
  assert.equal(text(storageRefusal({ available: 0, reserve: 0 })), undefined);
  assert.equal(text(storageRefusal({ available: 0, reserve: 0, declaredSize: 1 })), full);
});

test('a spool write failure: 452 4.3.1 for ENOSPC and EDQUOT, 451 4.3.0 otherwise', () => {
  const code = (c: string) => Object.assign(new Error(c), { code: c });
  assert.deepEqual([spoolFailure(code('ENOSPC')).code, spoolFailure(code('ENOSPC')).status], [452, '4.3.1']);
  assert.equal(spoolFailure(code('EDQUOT')).status, '4.3.1');
  assert.deepEqual([spoolFailure(code('EIO')).code, spoolFailure(code('EIO')).status], [451, '4.3.0']);
  assert.equal(spoolFailure(new Error('no code')).status, '4.3.0');
});
