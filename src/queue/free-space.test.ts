import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FreeSpace } from './free-space.js';

test('free space is bavail × bsize, read at most once per maxAgeMs, shared while a read runs', async () => {
  let clock = 0;
  let calls = 0;
  let bavail = 10;
  const space = new FreeSpace('/data', {
    now: () => clock,
    statfs: async () => {
      calls++;
      return { bavail, bsize: 4096 };
    },
  });
  const [a, b] = await Promise.all([space.available(), space.available()]);
  assert.deepEqual([a, b, calls], [40960, 40960, 1]);
  bavail = 5;
  clock = 999;
  assert.equal(await space.available(), 40960, 'kept for a second');
  clock = 1000;
  assert.equal(await space.available(), 20480);
  assert.equal(calls, 2);
});

test('a failing statfs answers undefined and is reported once until it works again', async () => {
  let clock = 0;
  let fail = true;
  const errors: string[] = [];
  const space = new FreeSpace('/data', {
    now: () => clock,
    onError: (err) => errors.push(err.message),
    statfs: async () => {
      if (fail) throw new Error('ENOSYS');
      return { bavail: 1, bsize: 1024 };
    },
  });
  assert.equal(await space.available(), undefined);
  clock += 2000;
  assert.equal(await space.available(), undefined);
  assert.deepEqual(errors, ['ENOSYS']);
  fail = false;
  clock += 2000;
  assert.equal(await space.available(), 1024);
});
