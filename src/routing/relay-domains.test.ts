// Which virtual servers accept a connector's relay domains [003:2404, 2461, 2939, 4548].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isRelayDomain, relayDomainsOf } from './relay-domains.js';
import type { ConnectorView, Topology } from './view.js';
import { buildTopology } from './topology.js';
import { ConfigError, defaultOrganisation, validateOrganisation } from '../config/load.js';

function connector(over: Partial<ConnectorView>): ConnectorView {
  return {
    name: 'Fourth Coffee',
    type: 'smtp',
    group: 'North',
    cost: 1,
    to: undefined,
    addressSpaces: [],
    connectedRoutingGroups: [],
    scope: 'organisation',
    localBridgeheads: [],
    remoteBridgeheads: [],
    smartHosts: ['[192.0.2.1]'],
    restrictions: { enabled: false, acceptFrom: [], rejectFrom: [] },
    state: 'up',
    ...over,
  };
}

const topology = (...connectors: ConnectorView[]): Topology => ({
  groups: ['North', 'South'],
  servers: [
    { name: 'GW1', group: 'North', up: true },
    { name: 'GW2', group: 'North', up: true },
    { name: 'S1', group: 'South', up: true },
  ],
  connectors,
});

const partner = { type: 'SMTP', pattern: 'fourthcoffee.com', cost: 1, allowRelay: true };

test('a local bridgehead server accepts the flagged space on every virtual server; others do not', () => {
  const t = topology(connector({ addressSpaces: [partner], localBridgeheads: ['GW1'] }));
  assert.deepEqual(relayDomainsOf(t, 'GW1', 'Default SMTP Virtual Server'), ['fourthcoffee.com']);
  assert.deepEqual(relayDomainsOf(t, 'gw1', 'Inside'), ['fourthcoffee.com']);
  assert.deepEqual(relayDomainsOf(t, 'GW2', 'Default SMTP Virtual Server'), []);
  assert.deepEqual(relayDomainsOf(t, 'S1', 'Default SMTP Virtual Server'), []);
});

test('"SERVER/Virtual Server" names one virtual server only', () => {
  const t = topology(connector({ addressSpaces: [partner], localBridgeheads: ['GW1/Internet'] }));
  assert.deepEqual(relayDomainsOf(t, 'GW1', 'internet'), ['fourthcoffee.com']);
  assert.deepEqual(relayDomainsOf(t, 'GW1', 'Inside'), []);
});

test("no local bridgeheads: every server of the connector's routing group, none elsewhere", () => {
  const t = topology(connector({ addressSpaces: [partner] }));
  assert.deepEqual(relayDomainsOf(t, 'GW2', 'Default SMTP Virtual Server'), ['fourthcoffee.com']);
  assert.deepEqual(relayDomainsOf(t, 'S1', 'Default SMTP Virtual Server'), []);
});

test('only flagged SMTP spaces count, never "*", and never a routing group connector', () => {
  const t = topology(
    connector({
      addressSpaces: [
        { type: 'SMTP', pattern: 'contoso.com', cost: 1 },
        { type: 'SMTP', pattern: 'litware.com', cost: 1, allowRelay: false },
        { type: 'X400', pattern: 'c=us;a= ;p=fabrikam', cost: 1, allowRelay: true },
        { type: 'SMTP', pattern: '*', cost: 1, allowRelay: true },
        { type: 'smtp', pattern: '*.fourthcoffee.com', cost: 1, allowRelay: true },
      ],
    }),
    connector({ name: 'To South', type: 'routingGroup', to: 'South', addressSpaces: [partner] }),
  );
  assert.deepEqual(relayDomainsOf(t, 'GW1', 'Default SMTP Virtual Server'), ['*.fourthcoffee.com']);
});

test('isRelayDomain matches like an address space, case-insensitively', () => {
  assert.equal(isRelayDomain(['fourthcoffee.com'], 'FourthCoffee.com'), true);
  assert.equal(isRelayDomain(['fourthcoffee.com'], 'sales.fourthcoffee.com'), false);
  assert.equal(isRelayDomain(['*.fourthcoffee.com'], 'sales.fourthcoffee.com'), true);
  assert.equal(isRelayDomain(['fourthcoffee.com'], 'contoso.com'), false);
  assert.equal(isRelayDomain(['fourthcoffee.com'], ''), false);
  assert.equal(isRelayDomain([], 'fourthcoffee.com'), false);
});

test('from the file: the object form carries allowRelay, the string form never relays, "*" is refused', () => {
  const withSpaces = (addressSpaces: unknown[]) => {
    const org = defaultOrganisation();
    const server = org.routingGroups![0]!.servers![0]!;
    org.routingGroups![0]!.connectors = [
      { type: 'smtp', name: 'Fourth Coffee', localBridgeheads: [server.name], addressSpaces, smartHosts: [] },
    ] as never;
    return { org, server: server.name };
  };
  const ok = withSpaces([{ pattern: 'fourthcoffee.com', allowRelay: true }, 'SMTP:contoso.com:1']);
  const loaded = validateOrganisation(ok.org, '/tmp');
  assert.deepEqual(relayDomainsOf(buildTopology(loaded.org), ok.server, 'Default SMTP Virtual Server'), [
    'fourthcoffee.com',
  ]);
  const star = withSpaces([{ pattern: '*', allowRelay: true }]);
  assert.throws(
    () => validateOrganisation(star.org, '/tmp'),
    (err: Error) =>
      err instanceof ConfigError && /addressSpaces\[0\]\.allowRelay.*open relay/s.test(err.message),
  );
});
