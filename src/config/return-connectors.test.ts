// A routing group connector without a connector back gets a warning naming the return
// connector the guide would create [003:1656-1668]; a pair of connectors gets none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { organisationSchema, type OrganisationInput } from './schema.js';
import { returnConnectorWarnings } from './return-connectors.js';

const server = (name: string) => ({
  name,
  fqdn: `${name.toLowerCase()}.example.com`,
  virtualServers: [{ name: 'SMTP' }],
});

function org(connectors: { from: string; to: string; local?: string[]; remote: string[] }[]) {
  const input: OrganisationInput = {
    routingGroups: ['Seattle', 'London'].map((name) => ({
      name,
      servers: [server(`${name.toUpperCase()}1`)],
      connectors: connectors
        .filter((c) => c.from === name)
        .map((c) => ({
          type: 'routingGroup' as const,
          name: `${c.from}To${c.to}`,
          to: c.to,
          localBridgeheads: c.local ?? [],
          remoteBridgeheads: c.remote,
        })),
    })),
  };
  return organisationSchema.parse(input);
}

test('a one-way routing group connector is warned about, with the return connector to make', () => {
  const warnings = returnConnectorWarnings(
    org([{ from: 'Seattle', to: 'London', local: ['SEATTLE1'], remote: ['LONDON1'] }]),
  );
  assert.deepEqual(warnings, [
    {
      path: 'routingGroups[0].connectors[0]',
      message:
        'routing group connector "SeattleToLondon" goes from Seattle to London, but London has no ' +
        'routing group connector back to Seattle: mail from London to Seattle cannot take this link. ' +
        'The return connector [003:1656]: in London, to Seattle, local bridgeheads LONDON1, ' +
        'remote bridgeheads SEATTLE1',
    },
  ]);
});

test('a connector with any local server names any server of its group as the return remote bridgeheads', () => {
  const [warning] = returnConnectorWarnings(org([{ from: 'Seattle', to: 'London', remote: ['LONDON1'] }]));
  assert.match(warning!.message, /remote bridgeheads any server of Seattle$/);
});

test('a connector and its return connector: no warning', () => {
  assert.deepEqual(
    returnConnectorWarnings(
      org([
        { from: 'Seattle', to: 'London', remote: ['LONDON1'] },
        { from: 'London', to: 'Seattle', remote: ['SEATTLE1'] },
      ]),
    ),
    [],
  );
});
