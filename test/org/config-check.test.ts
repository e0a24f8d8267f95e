// `bridgehead config check` on a routing group connector with no connector back: the
// file is valid (exit 0) and the warning names the return connector the guide's
// Exchange System Manager would offer to create [003:1656-1668]. Offline: no server runs.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cleanup } from '../helpers/server.js';
import { bh } from '../ops/ops.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-config-check-'));
after(() => cleanup(dir));

const group = (name: string, connectors: object[]) => ({
  name,
  servers: [
    {
      name: `${name.toUpperCase()}1`,
      fqdn: `${name.toLowerCase()}1.example.com`,
      address: name === 'Seattle' ? '127.0.87.1' : '127.0.87.2',
      virtualServers: [{ name: 'SMTP', ip: name === 'Seattle' ? '127.0.87.1' : '127.0.87.2', port: 48400 }],
      adminApi: { port: 0 },
    },
  ],
  connectors,
});

function write(name: string, london: object[]): string {
  const org = {
    organisation: { secret: 'test-secret' },
    routingGroups: [
      group('Seattle', [
        {
          type: 'routingGroup',
          name: 'SeattleToLondon',
          to: 'London',
          localBridgeheads: ['SEATTLE1'],
          remoteBridgeheads: ['LONDON1'],
        },
      ]),
      group('London', london),
    ],
    recipientPolicies: [{ name: 'Default', addresses: [{ address: '@example.com', authoritative: true }] }],
  };
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, YAML.stringify(org));
  return file;
}

test('config check warns about a routing group connector with no connector back, and names the one to make', async () => {
  const r = await bh(['config', 'check', write('one-way', [])]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(
    (r.stdout + r.stderr).includes(
      'routingGroups[0].connectors[0]: routing group connector "SeattleToLondon" goes from Seattle to ' +
        'London, but London has no routing group connector back to Seattle',
    ),
    r.stdout + r.stderr,
  );
  assert.match(
    r.stdout + r.stderr,
    /in London, to Seattle, local bridgeheads LONDON1, remote bridgeheads SEATTLE1/,
  );
  assert.match(r.stdout, /: OK \(2 routing group\(s\), 2 server\(s\), 1 warning\(s\)\)/);
  const both = await bh([
    'config',
    'check',
    write('both-ways', [
      { type: 'routingGroup', name: 'LondonToSeattle', to: 'Seattle', remoteBridgeheads: ['SEATTLE1'] },
    ]),
  ]);
  assert.equal(both.code, 0, both.stdout + both.stderr);
  assert.match(both.stdout, /0 warning\(s\)/);
});
