import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransportError } from '../../message/status.js';
import { loopReason, withoutLoops, type Self } from './loop.js';

const self: Self = {
  identity: {
    listeners: [
      { ip: '0.0.0.0', port: 25, virtualServer: 'Default SMTP Virtual Server' },
      { ip: '192.0.2.10', port: 2525, virtualServer: 'Inside' },
    ],
    names: ['mail.example.com'],
  },
  localAddresses: ['192.0.2.10', '198.51.100.7'],
};

test('a hop is this server by listener address and port, or by its own name on a listening port', () => {
  const table: [string, string, number, boolean][] = [
    ['relay.example.net', '127.0.0.1', 25, true], // loopback reaches the 0.0.0.0 listener
    ['relay.example.net', '198.51.100.7', 25, true], // a local address: the 0.0.0.0 listener
    ['relay.example.net', '192.0.2.10', 2525, true], // the specific listener
    ['relay.example.net', '203.0.113.5', 2525, false], // another machine
    ['relay.example.net', '127.0.0.1', 10025, false], // a content filter on this host
    ['relay.example.net', '::ffff:127.0.0.1', 25, true],
    ['MAIL.example.com.', '203.0.113.9', 25, true], // our own name, whatever its address
    ['mail.example.com', '203.0.113.9', 10025, false],
  ];
  for (const [host, address, port, loops] of table) {
    assert.equal(
      loopReason({ host, address, port }, self) !== undefined,
      loops,
      `${host} ${address}:${port}`,
    );
  }
});

test('a smart host that is this server is dropped; if none is left the mail fails with 5.3.5', () => {
  const other = { host: '203.0.113.5', address: '203.0.113.5', port: 25 };
  const me = { host: '127.0.0.1', address: '127.0.0.1', port: 25 };
  assert.deepEqual(withoutLoops([me, other], self), [other]);
  assert.throws(
    () => withoutLoops([me], self),
    (err: unknown) =>
      err instanceof TransportError &&
      err.code === 554 &&
      err.status === '5.3.5' &&
      /Default SMTP Virtual Server/.test(err.message),
  );
});

test('MX hosts of the same or worse preference than this server are dropped (RFC 5321 §5.1)', () => {
  const mx = (host: string, address: string, preference: number) => ({ host, address, port: 25, preference });
  const better = mx('mx1.example.org', '203.0.113.1', 10);
  const me = mx('backup.example.org', '198.51.100.7', 20);
  const same = mx('mx2.example.org', '203.0.113.2', 20);
  const worse = mx('mx3.example.org', '203.0.113.3', 30);
  assert.deepEqual(withoutLoops([better, me, same, worse], self), [better]);
  assert.throws(() => withoutLoops([me, same, worse], self), /5\.3\.5|loop/);
  assert.deepEqual(withoutLoops([better, worse], self), [better, worse]);
});
