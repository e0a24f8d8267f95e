// The guide's smart host checks [003:4346-4369] as an administrator meets them:
// `bridgehead config check` (offline) refuses a smart host that is this server itself and
// warns about an IP without brackets; `serve` refuses the same file; at start a smart host
// name that does not resolve is a warning (dnsmasq, authoritative for .test, says NXDOMAIN).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { baseOrganisation, cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { bh } from '../ops/ops.js';
import { cannotRun, Dnsmasq, waitFor } from './peers.js';

const HOST = '127.0.86.1';
const PORT = 48320;
let dir: string;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-smarthost-check-'));
});
after(() => cleanup(dir));

function orgFile(name: string, smartHosts: string[]): string {
  const org = baseOrganisation(PORT, HOST);
  org.routingGroups[0].connectors = [
    { name: 'Internet', type: 'smtp', addressSpaces: ['SMTP:*:1'], smartHosts },
  ];
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, YAML.stringify(org));
  return file;
}

test('config check refuses a smart host that is this server, naming the connector (exit 1); serve refuses it too', async () => {
  const file = orgFile('self', [`[${HOST}]:${PORT}`]);
  const expected =
    `routingGroups[0].connectors[0].smartHosts[0]: connector "Internet" (bridgehead MAIL1): ` +
    `smart host "[${HOST}]:${PORT}" is MAIL1 itself (virtual server "Default SMTP Virtual Server" ` +
    `listens on ${HOST}:${PORT}): mail would loop back to this server (5.3.5)`;
  const r = await bh(['config', 'check', file]);
  assert.equal(r.code, 1);
  assert.ok((r.stdout + r.stderr).includes(expected), r.stdout + r.stderr);
  const serve = await bh(['serve', '--config', file], { timeoutMs: 20_000 });
  assert.equal(serve.code, 1);
  assert.ok(serve.stderr.includes(expected), serve.stderr);
  assert.doesNotMatch(serve.stderr, /listening on/);
});

test('config check warns about an IP smart host without brackets and a name that is not qualified (exit 0)', async () => {
  const r = await bh(['config', 'check', orgFile('forms', ['192.0.2.1', 'relay'])]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /warning routingGroups\[0\]\.connectors\[0\]\.smartHosts\[0\]: connector "Internet": write an IP smart host in brackets, \[192\.0\.2\.1\]/,
  );
  assert.match(r.stdout, /smartHosts\[1\]: connector "Internet": "relay" is not a fully qualified name/);
  assert.match(r.stdout, /: OK \(.*2 warning\(s\)\)/);
});

test(
  'at start a smart host name that does not resolve is a warning',
  { skip: cannotRun('dnsmasq') },
  async () => {
    const dns = await Dnsmasq.start(['--host-record=relay.known.test,192.0.2.1']);
    let srv: RunningServer | undefined;
    try {
      srv = await startServer({
        host: HOST,
        port: PORT + 1,
        dir: mkdtempSync(path.join(dir, 'serve-')),
        mutate: (org) => {
          org.routingGroups[0].servers[0].virtualServers[0].delivery = { externalDnsServers: [dns.server] };
          org.routingGroups[0].connectors = [
            {
              name: 'Internet',
              type: 'smtp',
              addressSpaces: ['SMTP:*:1'],
              smartHosts: ['relay.known.test', 'relay.nowhere.test'],
            },
          ];
        },
      });
      const line = await waitFor(
        'the warning on standard error',
        () =>
          /bridgehead: warning: connector "Internet" \(bridgehead MAIL1\): smart host (\S+) does not resolve.*\n/.exec(
            srv!.output(),
          )?.[0],
        10_000,
      );
      assert.match(line, /relay\.nowhere\.test/);
      assert.doesNotMatch(srv.output(), /relay\.known\.test/);
    } finally {
      await srv?.stop();
      await dns.stop();
    }
  },
);
