// Where outbound connections come from: the configured source address, else the virtual
// server's own IP when it is a specific one; a source address must be an IP address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sourceAddressOf } from './outbound.js';
import { virtualServerSchema } from './schema-virtual-server.js';

const vs = (o: Record<string, unknown>) => virtualServerSchema.parse({ name: 'Default', ...o });

test('outbound source: outbound.sourceAddress, else a specific ip, else the system', () => {
  assert.equal(sourceAddressOf(vs({ ip: '192.0.2.10' })), '192.0.2.10');
  assert.equal(sourceAddressOf(vs({ ip: '0.0.0.0' })), undefined);
  assert.equal(sourceAddressOf(vs({ ip: '::' })), undefined);
  assert.equal(sourceAddressOf(vs({})), undefined);
  assert.equal(
    sourceAddressOf(vs({ ip: '0.0.0.0', outbound: { sourceAddress: '198.51.100.7' } })),
    '198.51.100.7',
  );
  assert.equal(
    sourceAddressOf(vs({ ip: '192.0.2.10', outbound: { sourceAddress: '2001:db8::7' } })),
    '2001:db8::7',
  );
});

test('outbound.sourceAddress must be an IP address', () => {
  const r = virtualServerSchema.safeParse({
    name: 'Default',
    outbound: { sourceAddress: 'mail.example.com' },
  });
  assert.equal(r.success, false);
  assert.match(JSON.stringify(r.error?.issues), /must be an IPv4 or IPv6 address/);
});
