// The organisations the issue 4 tests run: the guide's four routing groups [003:130-140]
// and a two-group organisation with SMTP connectors to smart hosts [003:150-178].
import { link, type GroupSpec, type OrgSpec } from './cluster.js';

/**
 * Seattle (SEATTLE1 master, SEATTLE2 member), London, Brussels, Tokyo; costs
 * Seattle-London 10, London-Brussels 10, Seattle-Tokyo 15, Tokyo-Brussels 20, both ways.
 * Seattle → Brussels: via London (20); with London's bridgehead down, via Tokyo (35).
 */
export function fourGroups(net = '127.0.61'): OrgSpec {
  const seattle: GroupSpec = {
    name: 'Seattle',
    servers: [
      { name: 'SEATTLE1', address: `${net}.11` },
      { name: 'SEATTLE2', address: `${net}.12` },
    ],
  };
  const london: GroupSpec = { name: 'London', servers: [{ name: 'LONDON1', address: `${net}.21` }] };
  const brussels: GroupSpec = { name: 'Brussels', servers: [{ name: 'BRUSSELS1', address: `${net}.31` }] };
  const tokyo: GroupSpec = { name: 'Tokyo', servers: [{ name: 'TOKYO1', address: `${net}.41` }] };
  link(seattle, london, 10);
  link(london, brussels, 10);
  link(seattle, tokyo, 15);
  link(tokyo, brussels, 20);
  return {
    groups: [seattle, london, brussels, tokyo],
    directory: {
      users: [
        { name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'SEATTLE1' } },
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'SEATTLE1' } },
        { name: 'Bob', addresses: ['bob@example.com'], mailbox: { server: 'BRUSSELS1' } },
        { name: 'Dan', addresses: ['dan@example.com'], mailbox: { server: 'SEATTLE2' } },
      ],
    },
  };
}

/**
 * Connector state rules: A, B, C in a triangle and D a leaf hanging off A; every connector
 * names its local bridgeheads except B → A ("any local server").
 */
export function triangleWithLeaf(net = '127.0.62', dampingWindow = '8s'): OrgSpec {
  const g = (name: string, n: number): GroupSpec => ({
    name,
    servers: [{ name: `${name}1`, address: `${net}.${n}` }],
  });
  const a = g('A', 11);
  const b = g('B', 21);
  const c = g('C', 31);
  const d = g('D', 41);
  link(a, b, 10);
  link(a, c, 10);
  link(b, c, 10);
  link(a, d, 10);
  b.connectors!.find((x) => x.name === 'BToA')!.localBridgeheads = [];
  return {
    linkState: { probeInterval: '500ms', pollInterval: '1s', dampingWindow },
    groups: [a, b, c, d],
    directory: {
      users: [{ name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'A1' } }],
    },
  };
}

export interface SmartHosts {
  net: string;
  star: string;
  scoped: string;
  held: string;
}

/**
 * External routing [003:150-178]: Seattle (S1) has "Internet .net" (SMTP:*.net:20, only the
 * Sales group may use it) and "Internet" (SMTP:*:10), a connector that never runs and one
 * that holds mail for ETRN; London (L1) has a routing-group-scoped "London .org". Each
 * connector sends to its own smart host.
 */
export function externalRouting(hosts: SmartHosts, net = '127.0.63'): OrgSpec {
  const seattle: GroupSpec = { name: 'Seattle', servers: [{ name: 'S1', address: `${net}.11` }] };
  const london: GroupSpec = { name: 'London', servers: [{ name: 'L1', address: `${net}.21` }] };
  link(seattle, london, 10);
  seattle.connectors!.push(
    {
      type: 'smtp',
      name: 'Internet .net',
      addressSpaces: ['SMTP:*.net:20'],
      smartHosts: [hosts.net],
      deliveryRestrictions: { enabled: true, acceptFrom: ['Sales'] },
    },
    { type: 'smtp', name: 'Internet', addressSpaces: ['SMTP:*:10'], smartHosts: [hosts.star] },
    {
      type: 'smtp',
      name: 'Never',
      addressSpaces: ['SMTP:never.example:1'],
      smartHosts: [hosts.held],
      schedule: { mode: 'never' },
    },
    {
      type: 'smtp',
      name: 'ETRN hold',
      addressSpaces: ['SMTP:etrn.example:1'],
      smartHosts: [hosts.held],
      queueForRemoteTriggeredDelivery: { enabled: true },
    },
  );
  london.connectors!.push({
    type: 'smtp',
    name: 'London .org',
    addressSpaces: ['SMTP:*.org:5'],
    scope: 'routingGroup',
    smartHosts: [hosts.scoped],
  });
  return {
    groups: [seattle, london],
    directory: {
      users: [
        { name: 'Postmaster', addresses: ['postmaster@example.com'], mailbox: { server: 'S1' } },
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'S1' } },
        { name: 'Carol', addresses: ['carol@example.com'], mailbox: { server: 'S1' } },
        { name: 'Larry', addresses: ['larry@example.com'], mailbox: { server: 'L1' } },
      ],
      groups: [{ name: 'Sales', addresses: ['sales@example.com'], members: ['alice@example.com'] }],
    },
    // Test clients on loopback submit mail for the Internet without authenticating.
    mutate: (org) => {
      for (const g of org.routingGroups)
        for (const s of g.servers)
          for (const vs of s.virtualServers) vs.relay = { mode: 'onlyList', list: ['127.0.0.0/8'] };
    },
  };
}
