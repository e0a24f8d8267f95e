// The guide's routing examples as pure decisions [003:130-178, 1814-1844].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressSpaceMatch,
  connectorDown,
  routeToDomain,
  routeToServer,
  unusableNextHops,
  type ConnectorView,
  type Topology,
} from '../../src/routing/routing.js';
import { dampedState, leafKeepsUp } from '../../src/linkstate/state-rules.js';

function connector(c: Partial<ConnectorView> & { name: string; group: string }): ConnectorView {
  return {
    type: 'routingGroup',
    cost: 1,
    addressSpaces: [],
    connectedRoutingGroups: [],
    scope: 'organisation',
    localBridgeheads: [],
    remoteBridgeheads: [],
    smartHosts: [],
    restrictions: { enabled: false, acceptFrom: [], rejectFrom: [] },
    state: 'up',
    ...c,
  };
}

/** Seattle, London, Brussels, Tokyo: Seattle→Brussels via London costs 20, via Tokyo 35. */
function fourGroups(londonUp = true): Topology {
  const rgc = (from: string, to: string, cost: number) =>
    connector({
      name: `${from}-${to}`,
      group: from,
      to,
      cost,
      localBridgeheads: [`${from.toUpperCase()}1`],
      remoteBridgeheads: [`${to.toUpperCase()}1`],
    });
  const t: Topology = {
    groups: ['Seattle', 'London', 'Brussels', 'Tokyo'],
    servers: ['Seattle', 'London', 'Brussels', 'Tokyo'].map((g) => ({
      name: `${g.toUpperCase()}1`,
      group: g,
      up: g !== 'London' || londonUp,
    })),
    connectors: [
      rgc('Seattle', 'London', 10),
      rgc('London', 'Brussels', 10),
      rgc('Seattle', 'Tokyo', 15),
      rgc('Tokyo', 'Brussels', 20),
      rgc('London', 'Seattle', 10),
      rgc('Brussels', 'London', 10),
      rgc('Tokyo', 'Seattle', 15),
      rgc('Brussels', 'Tokyo', 20),
    ],
  };
  for (const c of t.connectors)
    c.state = connectorDown(c, (n) => t.servers.find((s) => s.name === n)!.up) ? 'down' : 'up';
  return t;
}

test('Seattle to Brussels goes via London at cost 20', () => {
  const r = routeToServer(fourGroups(), 'SEATTLE1', 'BRUSSELS1');
  assert.equal(r.kind, 'connector');
  if (r.kind !== 'connector') return;
  assert.deepEqual(r.path, ['Seattle', 'London', 'Brussels']);
  assert.equal(r.totalCost, 20);
  assert.equal(r.nextHop, 'LONDON1');
});

test("with London's bridgehead down, Seattle to Brussels goes via Tokyo at cost 35", () => {
  const r = routeToServer(fourGroups(false), 'SEATTLE1', 'BRUSSELS1');
  assert.equal(r.kind, 'connector');
  if (r.kind !== 'connector') return;
  assert.deepEqual(r.path, ['Seattle', 'Tokyo', 'Brussels']);
  assert.equal(r.totalCost, 35);
  assert.equal(r.nextHop, 'TOKYO1');
});

test('address space specificity: exact over *.sub over *.com over *', () => {
  assert.ok(
    addressSpaceMatch('example.com', 'example.com') > addressSpaceMatch('*.example.com', 'a.example.com'),
  );
  assert.ok(
    addressSpaceMatch('*.sub.example.com', 'a.sub.example.com') >
      addressSpaceMatch('*.com', 'a.sub.example.com'),
  );
  assert.ok(addressSpaceMatch('*.com', 'a.com') > addressSpaceMatch('*', 'a.com'));
  assert.equal(addressSpaceMatch('*.com', 'a.net'), -1);
  assert.equal(addressSpaceMatch('*.example.com', 'example.com'), -1);
});

function external(netState: 'up' | 'down', restricted = false): Topology {
  return {
    groups: ['RG'],
    servers: [{ name: 'S1', group: 'RG', up: true }],
    connectors: [
      connector({
        name: 'Net',
        group: 'RG',
        type: 'smtp',
        addressSpaces: [{ type: 'SMTP', pattern: '*.net', cost: 20 }],
        smartHosts: ['[192.0.2.1]'],
        localBridgeheads: ['S1'],
        state: netState,
        restrictions: { enabled: restricted, acceptFrom: ['Sales'], rejectFrom: [] },
      }),
      connector({
        name: 'Internet',
        group: 'RG',
        type: 'smtp',
        addressSpaces: [{ type: 'SMTP', pattern: '*', cost: 10 }],
      }),
    ],
  };
}

test('*.net (cost 20) wins over * (cost 10) for treyresearch.net; * for contoso.com', () => {
  const r1 = routeToDomain(external('up'), 'S1', 'treyresearch.net');
  assert.equal(r1.kind === 'connector' && r1.connector.name, 'Net');
  const r2 = routeToDomain(external('up'), 'S1', 'contoso.com');
  assert.equal(r2.kind === 'connector' && r2.connector.name, 'Internet');
});

test('*.net down: mail waits, no fall back to *', () => {
  const r = routeToDomain(external('down'), 'S1', 'treyresearch.net');
  assert.equal(r.kind, 'unreachable');
});

test('restricted *.net connector: a non-sales sender is not a candidate for it and takes * [SPEC §5]', () => {
  const sales = routeToDomain(external('up', true), 'S1', 'treyresearch.net', {
    address: 'kim@example.com',
    identities: ['kim@example.com', 'Sales'],
  });
  assert.equal(sales.kind === 'connector' && sales.connector.name, 'Net');
  const other = routeToDomain(external('up', true), 'S1', 'treyresearch.net', {
    address: 'ted@example.com',
    identities: ['ted@example.com'],
  });
  assert.equal(other.kind === 'connector' && other.connector.name, 'Internet');
  assert.ok(
    other.why.some((w) => /exclude this sender from Net/.test(w)),
    other.why.join('; '),
  );
});

test('restricted *.net connector down: a sales sender waits (no fall back to *); others take *', () => {
  const sales = routeToDomain(external('down', true), 'S1', 'treyresearch.net', {
    address: 'kim@example.com',
    identities: ['kim@example.com', 'Sales'],
  });
  assert.equal(sales.kind, 'unreachable');
  const other = routeToDomain(external('down', true), 'S1', 'treyresearch.net', {
    address: 'ted@example.com',
    identities: ['ted@example.com'],
  });
  assert.equal(other.kind === 'connector' && other.connector.name, 'Internet');
});

test('every connector for the domain excludes the sender: restricted (5.7.1)', () => {
  const t = external('up', true);
  t.connectors = t.connectors.filter((c) => c.name === 'Net');
  const r = routeToDomain(t, 'S1', 'treyresearch.net', {
    address: 'ted@example.com',
    identities: ['ted@example.com'],
  });
  assert.equal(r.kind, 'restricted');
  // Not excluded: no connector for contoso.com at all, the virtual server's own route.
  assert.equal(
    routeToDomain(t, 'S1', 'contoso.com', { address: 'ted@example.com', identities: [] }).kind,
    'none',
  );
});

test('equal-cost connectors: stable choice per server; cheaper wins; fail over and back', () => {
  const t = external('up');
  t.connectors.push(
    connector({
      name: 'Internet2',
      group: 'RG',
      type: 'smtp',
      addressSpaces: [{ type: 'SMTP', pattern: '*', cost: 10 }],
    }),
  );
  const a = routeToDomain(t, 'S1', 'contoso.com');
  const b = routeToDomain(t, 'S1', 'contoso.com');
  assert.equal(a.kind === 'connector' && a.connector.name, b.kind === 'connector' && b.connector.name);
  t.connectors.push(
    connector({
      name: 'Backup',
      group: 'RG',
      type: 'smtp',
      addressSpaces: [{ type: 'SMTP', pattern: '*', cost: 50 }],
    }),
  );
  t.connectors[1]!.state = 'down';
  t.connectors[2]!.state = 'down';
  const failover = routeToDomain(t, 'S1', 'contoso.com');
  assert.equal(failover.kind === 'connector' && failover.connector.name, 'Backup');
  t.connectors[1]!.state = 'up';
  const back = routeToDomain(t, 'S1', 'contoso.com');
  assert.equal(back.kind === 'connector' && back.connector.name, 'Internet');
});

test('routing group scope hides a connector from other routing groups', () => {
  const t: Topology = {
    groups: ['A', 'B'],
    servers: [
      { name: 'A1', group: 'A', up: true },
      { name: 'B1', group: 'B', up: true },
    ],
    connectors: [
      connector({ name: 'A-B', group: 'A', to: 'B', remoteBridgeheads: ['B1'] }),
      connector({ name: 'B-A', group: 'B', to: 'A', remoteBridgeheads: ['A1'] }),
      connector({
        name: 'B-only',
        group: 'B',
        type: 'smtp',
        scope: 'routingGroup',
        addressSpaces: [{ type: 'SMTP', pattern: '*', cost: 1 }],
      }),
    ],
  };
  assert.equal(routeToDomain(t, 'A1', 'x.com').kind, 'none');
  const fromB = routeToDomain(t, 'B1', 'x.com');
  assert.equal(fromB.kind === 'connector' && fromB.nextHop, 'B1');
  t.connectors[2]!.scope = 'organisation';
  const fromA = routeToDomain(t, 'A1', 'x.com');
  assert.equal(fromA.kind === 'connector' && fromA.nextHop, 'B1');
});

test('connector state: down only when all bridgeheads are down; any-local-server and DNS never down', () => {
  const up = new Set(['B2']);
  const rgc = connector({
    name: 'x',
    group: 'A',
    to: 'B',
    localBridgeheads: ['A1'],
    remoteBridgeheads: ['B1', 'B2'],
  });
  assert.equal(
    connectorDown(rgc, (n) => up.has(n)),
    false,
  );
  up.clear();
  assert.equal(
    connectorDown(rgc, (n) => up.has(n)),
    true,
  );
  // "Any local server" on a routing group connector: always in service [003:140].
  const anyLocalRgc = connector({ name: 'y', group: 'A', to: 'B', remoteBridgeheads: ['B1', 'B2'] });
  assert.equal(
    connectorDown(anyLocalRgc, () => false),
    false,
  );
  const dns = connector({ name: 'dns', group: 'A', type: 'smtp', localBridgeheads: ['A1'] });
  assert.equal(
    connectorDown(dns, () => false),
    false,
  );
  const anyLocal = connector({ name: 'sh', group: 'A', type: 'smtp', smartHosts: ['[192.0.2.1]'] });
  assert.equal(
    connectorDown(anyLocal, () => false),
    false,
  );
});

test('oscillation damping and leaf links', () => {
  const now = 1_000_000_000;
  assert.equal(dampedState('down', [now - 1000], now), 'down');
  assert.equal(dampedState('down', [now - 5000, now - 1000], now), 'up');
  assert.equal(dampedState('down', [now - 700_000, now - 1000], now), 'down');
  const t = fourGroups();
  assert.equal(leafKeepsUp(t, t.connectors[0]!), false);
  const leaf: Topology = {
    groups: ['Hub', 'Leaf'],
    servers: [],
    connectors: [
      connector({ name: 'leaf-hub', group: 'Leaf', to: 'Hub', remoteBridgeheads: ['H1'] }),
      connector({ name: 'hub-leaf', group: 'Hub', to: 'Leaf', remoteBridgeheads: ['L1'] }),
    ],
  };
  assert.equal(leafKeepsUp(leaf, leaf.connectors[0]!), true);
});

test("London's connector down: LONDON1 is an unusable next hop for Seattle, not for Tokyo's bridgehead", () => {
  const down = fourGroups(false);
  assert.deepEqual(unusableNextHops(down, 'SEATTLE1'), { servers: ['LONDON1'], connectors: [] });
  // London up: nothing to route again.
  assert.deepEqual(unusableNextHops(fourGroups(), 'SEATTLE1'), { servers: [], connectors: [] });
  // Link state still says LONDON1 is up (its own master is gone), but the only connector
  // from Seattle to it is down.
  const t = fourGroups();
  t.connectors.find((c) => c.name === 'Seattle-London')!.state = 'down';
  assert.deepEqual(unusableNextHops(t, 'SEATTLE1').servers, ['LONDON1']);
  assert.deepEqual(unusableNextHops(t, 'TOKYO1').servers, []);
});

test('an SMTP connector marked down is an unusable next hop', () => {
  assert.deepEqual(unusableNextHops(external('down'), 'S1'), { servers: [], connectors: ['Net'] });
});
