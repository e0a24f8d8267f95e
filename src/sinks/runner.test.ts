import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routeAfterSinks, runProtocolEvent, notifyQueueSinks } from './runner.js';
import type { ProtocolSink, SessionEventFacts } from './sink.js';

const session: SessionEventFacts = {
  virtualServer: 'Default',
  clientIp: '127.0.0.1',
  clientPort: 1,
  tls: false,
};

test('the first verdict that is not continue wins; later sinks are not asked', async () => {
  const asked: string[] = [];
  const sinks: ProtocolSink[] = [
    { name: 'a', rcptTo: () => (asked.push('a'), { action: 'continue' }) },
    {
      name: 'b',
      rcptTo: async () => (asked.push('b'), { action: 'reject', code: 550, status: '5.7.1', text: 'no' }),
    },
    { name: 'c', rcptTo: () => (asked.push('c'), { action: 'continue' }) },
  ];
  assert.deepEqual(await runProtocolEvent(sinks, 'rcptTo', session, 'x@y', 'a@b'), {
    action: 'reject',
    code: 550,
    status: '5.7.1',
    text: 'no',
  });
  assert.deepEqual(asked, ['a', 'b']);
  assert.deepEqual(await runProtocolEvent(sinks, 'connect', session), { action: 'continue' });
});

test('a sink that throws is a temporary failure, never an acceptance', async () => {
  const sinks: ProtocolSink[] = [
    {
      name: 'broken',
      mailFrom: () => {
        throw new Error('boom');
      },
    },
  ];
  const verdict = await runProtocolEvent(sinks, 'mailFrom', session, 'a@b');
  assert.equal(verdict.action === 'reject' && verdict.code, 451);
});

test('queue sinks observe without holding mail; beforeRouting may redirect', () => {
  const seen: string[] = [];
  notifyQueueSinks(
    [
      {
        name: 'broken',
        submitted: () => {
          throw new Error('x');
        },
      },
      { name: 'ok', submitted: () => void seen.push('ok') },
    ],
    undefined,
    (s) => s.submitted?.({ envelope: {} as never, size: 0, file: '' }),
  );
  assert.deepEqual(seen, ['ok']);
  const route = routeAfterSinks(
    [{ name: 'redirect', beforeRouting: () => ({ kind: 'forwardHost', host: 'quarantine.test' }) }],
    'a@b',
    { kind: 'remote', domain: 'b' },
    's@x',
  );
  assert.deepEqual(route, { kind: 'forwardHost', host: 'quarantine.test' });
});
