// The outbound source address binds a connection only to a peer of its own family (an IPv4
// source cannot reach an IPv6 MX).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sourceBinding } from './client.js';

test('the source address binds only connections to a peer of its family', () => {
  assert.deepEqual(sourceBinding('203.0.113.5', '192.0.2.10'), { localAddress: '192.0.2.10' });
  assert.deepEqual(sourceBinding('2001:db8::1', '192.0.2.10'), {});
  assert.deepEqual(sourceBinding('2001:db8::1', '2001:db8::7'), { localAddress: '2001:db8::7' });
  assert.deepEqual(sourceBinding('203.0.113.5', undefined), {});
});
