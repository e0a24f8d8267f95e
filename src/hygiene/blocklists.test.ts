// The block-list check's order and deadline, against a scripted resolver (no DNS here; the
// wire tests are in test/hygiene/blocklist-deadline.test.ts and blocklists.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { BlockListChecker, type BlockListResolver } from './blocklists.js';
import type { BlockListRule } from './filters.js';

const rule = (name: string, suffix: string): BlockListRule => ({
  name,
  suffix,
  matchMode: 'any',
  codes: [],
  rejectionText: `${name}: %0`,
  enabled: true,
});

/** Per suffix: after how many ms it answers, and with what (undefined: never answers). */
type Script = Record<string, { afterMs: number; listed: boolean } | undefined>;

function scripted(script: Script) {
  const made: { cancelled: number; asked: string[] }[] = [];
  const factory = (): BlockListResolver => {
    const state = { cancelled: 0, asked: [] as string[] };
    made.push(state);
    const waiting = new Set<(err: Error) => void>();
    return {
      cancel() {
        state.cancelled++;
        for (const fail of waiting) fail(Object.assign(new Error('cancelled'), { code: 'ECANCELLED' }));
        waiting.clear();
      },
      resolve4: ((name: string) => {
        state.asked.push(name);
        const step = script[name.split('.').slice(4).join('.')];
        return new Promise((resolve, reject) => {
          waiting.add(reject);
          if (!step) return;
          setTimeout(() => {
            waiting.delete(reject);
            if (step.listed) resolve([{ address: '127.0.0.2', ttl: 60 }]);
            else reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }));
          }, step.afterMs);
        });
      }) as BlockListResolver['resolve4'],
    };
  };
  return { factory, made };
}

const log = pino({ level: 'silent' });

test('a higher-priority provider that answers later wins over a lower one that answered first', async () => {
  const { factory, made } = scripted({
    'high.test': { afterMs: 60, listed: true },
    'low.test': { afterMs: 1, listed: true },
  });
  const checker = new BlockListChecker(
    [rule('High', 'high.test'), rule('Low', 'low.test')],
    factory,
    log,
    1000,
  );
  const hit = await checker.check('192.0.2.1');
  assert.equal(hit?.text, 'High: 192.0.2.1');
  assert.deepEqual(made[0]!.asked, ['1.2.0.192.high.test', '1.2.0.192.low.test']);
});

test('a higher-priority provider that is not listed hands over to the next one', async () => {
  const { factory } = scripted({
    'high.test': { afterMs: 20, listed: false },
    'low.test': { afterMs: 1, listed: true },
  });
  const checker = new BlockListChecker(
    [rule('High', 'high.test'), rule('Low', 'low.test')],
    factory,
    log,
    1000,
  );
  assert.equal((await checker.check('192.0.2.1'))?.text, 'Low: 192.0.2.1');
});

test('a provider that never answers counts as not listed at the deadline; the others still count', async () => {
  const { factory, made } = scripted({ 'high.test': undefined, 'low.test': { afterMs: 1, listed: true } });
  const checker = new BlockListChecker(
    [rule('High', 'high.test'), rule('Low', 'low.test')],
    factory,
    log,
    80,
  );
  assert.equal((await checker.check('192.0.2.1'))?.text, 'Low: 192.0.2.1');
  assert.ok(made[0]!.cancelled >= 1, 'the straggler was not cancelled');
});

test('nobody answers: not listed (fail open)', async () => {
  const { factory } = scripted({});
  const checker = new BlockListChecker([rule('A', 'a.test'), rule('B', 'b.test')], factory, log, 50);
  assert.equal(await checker.check('192.0.2.1'), undefined);
});

test('a match cancels the lower-priority lookups still in flight; cached answers ask nobody', async () => {
  const { factory, made } = scripted({ 'high.test': { afterMs: 1, listed: true }, 'low.test': undefined });
  const checker = new BlockListChecker(
    [rule('High', 'high.test'), rule('Low', 'low.test')],
    factory,
    log,
    5000,
  );
  assert.equal((await checker.check('192.0.2.1'))?.text, 'High: 192.0.2.1');
  assert.equal(made[0]!.cancelled, 1);
  // Cached for its TTL: the second check asks only the provider that gave no answer.
  assert.equal((await checker.check('192.0.2.1'))?.text, 'High: 192.0.2.1');
  assert.deepEqual(made[1]?.asked ?? [], ['1.2.0.192.low.test']);
});
