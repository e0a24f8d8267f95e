import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isOwnName, ownIdentity, ownListenerAt } from './own-listeners.js';
import type { ServerConfig } from './schema.js';

const server = {
  fqdn: 'Mail.Example.com.',
  virtualServers: [
    { name: 'Default', ip: '0.0.0.0', port: 25, delivery: {} },
    { name: 'Inside', ip: '192.0.2.10', port: 2525, delivery: { fqdn: 'inside.example.com' } },
  ],
} as unknown as ServerConfig;

test("a server's identity: every virtual server's ip:port and the names it gives", () => {
  const id = ownIdentity(server);
  assert.deepEqual(id.names, ['mail.example.com', 'inside.example.com']);
  assert.equal(ownListenerAt(id, '192.0.2.10', 2525)?.virtualServer, 'Inside');
  assert.equal(ownListenerAt(id, '127.0.0.5', 25)?.virtualServer, 'Default');
  assert.equal(ownListenerAt(id, '192.0.2.11', 2525), undefined);
  assert.equal(ownListenerAt(id, '192.0.2.99', 25), undefined, 'not a local address without the list');
  assert.equal(ownListenerAt(id, '192.0.2.99', 25, ['192.0.2.99'])?.virtualServer, 'Default');
  assert.equal(isOwnName(id, 'inside.example.com', 25), true);
  assert.equal(isOwnName(id, 'inside.example.com', 587), false);
});
