import { test } from 'node:test';
import assert from 'node:assert/strict';
import { organisationSchema } from './schema.js';
import { parseSmartHostSpec, smartHostCheck, smartHostNames } from './smart-hosts.js';

function org(o: { vsSmartHost?: string; connector?: string[]; bridgeheads?: string[] }) {
  return organisationSchema.parse({
    organisation: { name: 'T' },
    routingGroups: [
      {
        name: 'RG',
        servers: [
          {
            name: 'MAIL1',
            fqdn: 'mail1.example.com',
            virtualServers: [
              { name: 'Default', ...(o.vsSmartHost ? { delivery: { smartHost: o.vsSmartHost } } : {}) },
              { name: 'Inside', ip: '10.0.0.5', port: 2525 },
            ],
          },
          { name: 'MAIL2', fqdn: 'mail2.example.com', virtualServers: [{ name: 'Default', ip: '10.0.0.6' }] },
        ],
        connectors: o.connector
          ? [
              {
                name: 'Internet',
                type: 'smtp',
                addressSpaces: ['SMTP:*:1'],
                smartHosts: o.connector,
                localBridgeheads: o.bridgeheads ?? [],
              },
            ]
          : [],
      },
    ],
  });
}

const messages = (list: { path: string; message: string }[]) => list.map((p) => `${p.path}: ${p.message}`);

test('smart host forms', () => {
  assert.deepEqual(parseSmartHostSpec('[192.0.2.1]:2525'), {
    host: '192.0.2.1',
    port: 2525,
    bracketed: true,
  });
  assert.deepEqual(parseSmartHostSpec('relay.example.net'), {
    host: 'relay.example.net',
    port: undefined,
    bracketed: false,
  });
  assert.deepEqual(parseSmartHostSpec('2001:db8::1'), {
    host: '2001:db8::1',
    port: undefined,
    bracketed: false,
  });
});

test('a good smart host has no problem', () => {
  const r = smartHostCheck(
    org({ vsSmartHost: '[192.0.2.1]', connector: ['relay.example.net', '[10.0.0.5]:25'] }),
  );
  assert.deepEqual(r, { errors: [], warnings: [] });
});

test('an unbracketed IP and a short name are warnings, a bracketed name an error', () => {
  const r = smartHostCheck(org({ connector: ['192.0.2.1', 'relay', '[relay.example.net]'] }));
  assert.deepEqual(messages(r.warnings), [
    'routingGroups[0].connectors[0].smartHosts[0]: connector "Internet": write an IP smart host in brackets, [192.0.2.1] (the guide\'s form)',
    'routingGroups[0].connectors[0].smartHosts[1]: connector "Internet": "relay" is not a fully qualified name (relay.example.com)',
  ]);
  assert.equal(r.errors.length, 2, 'the bracketed name, once per bridgehead');
  assert.match(
    r.errors[0]!.message,
    /"\[relay\.example\.net\]" is in brackets but relay\.example\.net is not an IP address/,
  );
});

test("this server's own address or name is refused, naming the connector or virtual server", () => {
  const vs = smartHostCheck(org({ vsSmartHost: '[127.0.0.1]' }));
  assert.deepEqual(messages(vs.errors), [
    'routingGroups[0].servers[0].virtualServers[0].delivery.smartHost: MAIL1 / virtual server "Default": ' +
      'smart host "[127.0.0.1]" is MAIL1 itself (virtual server "Default" listens on 0.0.0.0:25): ' +
      'mail would loop back to this server (5.3.5)',
  ]);
  // 10.0.0.5:2525 is MAIL1's "Inside"; MAIL2, the other bridgehead, may send there.
  const c = smartHostCheck(org({ connector: ['[10.0.0.5]:2525'] }));
  assert.equal(c.errors.length, 1);
  assert.match(c.errors[0]!.message, /^connector "Internet" \(bridgehead MAIL1\): .*virtual server "Inside"/);
  assert.deepEqual(
    smartHostCheck(org({ connector: ['[10.0.0.5]:2525'], bridgeheads: ['MAIL2'] })).errors,
    [],
  );
  const named = smartHostCheck(org({ connector: ['MAIL1.example.com.'] }));
  assert.match(named.errors[0]!.message, /MAIL1's own name on port 25/);
  // Another port on the same host (a content filter) is not this server.
  assert.deepEqual(smartHostCheck(org({ connector: ['mail1.example.com:10025'] })).errors, []);
});

test('the names a server looks up at start', () => {
  const o = org({
    vsSmartHost: 'a.example.net [192.0.2.1]',
    connector: ['b.example.net:587', 'a.example.net'],
  });
  assert.deepEqual(
    smartHostNames(o, 'MAIL1').map((n) => n.name),
    ['a.example.net', 'b.example.net'],
  );
  assert.deepEqual(
    smartHostNames(o, 'MAIL2').map((n) => n.name),
    ['b.example.net', 'a.example.net'],
  );
});
