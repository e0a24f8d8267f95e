// Organisation-wide message tracking [003:7247-7282, 002 "Message tracking"]: three
// server processes of one organisation, a message that crosses all three, and one
// `bridgehead track --config FILE` that asks every server and merges the path.
//
// ALPHA takes the message for the group team@example.com, whose expansion server is BRAVO:
// ALPHA sends it to BRAVO; BRAVO expands the group to Carol, whose mailbox is on CHARLIE,
// and sends it on; CHARLIE delivers it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { freePort, cleanup } from '../helpers/server.js';
import { bh, bhJson, compose, maildirFiles, parseCsv, send, serve, waitFor, type OrgServer } from './ops.js';

interface TrackRow {
  dateTime: string;
  serverHostname: string;
  event: string;
  source: string;
  internalMessageId: string;
  messageId?: string;
  sender?: string;
  recipients: string[];
  connectorId?: string;
  messageInfo?: string;
}

const NAMES = ['ALPHA', 'BRAVO', 'CHARLIE'] as const;
const FQDN = (n: string) => `${n.toLowerCase()}.test.example`;

let dir: string;
let configFile: string;
const smtpPort: Record<string, number> = {};
const servers: Record<string, OrgServer> = {};
const messageId = `<ops.org.${process.pid}.${Date.now()}@client.test>`;
let queueId: string;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-ops-org-'));
  const adminPort: Record<string, number> = {};
  const linkStatePort: Record<string, number> = {};
  for (const n of NAMES) {
    smtpPort[n] = await freePort();
    adminPort[n] = await freePort();
    linkStatePort[n] = await freePort();
  }
  const org = {
    organisation: { name: 'Ops Org' },
    routingGroups: [
      {
        name: 'First Routing Group',
        servers: NAMES.map((n) => ({
          name: n,
          fqdn: FQDN(n),
          dataDir: `./${n.toLowerCase()}`,
          address: '127.0.0.1',
          // Not the shared default 691: the routing group master listens here.
          linkStatePort: linkStatePort[n],
          // Fixed ports: `track --config` finds every server's admin API in this file.
          adminApi: { host: '127.0.0.1', port: adminPort[n] },
          virtualServers: [
            { name: 'SMTP', ip: '127.0.0.1', port: smtpPort[n], protocolLog: { enabled: true } },
          ],
        })),
      },
    ],
    recipientPolicies: [{ name: 'Default', addresses: [{ address: '@example.com', authoritative: true }] }],
    directory: {
      users: [
        { name: 'Alice', addresses: ['alice@example.com'], mailbox: { server: 'ALPHA' } },
        { name: 'Carol', addresses: ['carol@example.com'], mailbox: { server: 'CHARLIE' } },
      ],
      groups: [
        { name: 'Team', addresses: ['team@example.com'], members: ['Carol'], expansionServer: 'BRAVO' },
      ],
    },
  };
  configFile = path.join(dir, 'org.yaml');
  writeFileSync(configFile, YAML.stringify(org));
  const started = await Promise.allSettled(NAMES.map((n) => serve(configFile, n, dir)));
  started.forEach((s, i) => {
    if (s.status === 'fulfilled') servers[NAMES[i]!] = s.value;
  });
  const failed = started.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
  if (failed) throw failed.reason;
});

after(async () => {
  await Promise.all(Object.values(servers).map((s) => s.stop()));
  if (dir) cleanup(dir);
});

const track = (...args: string[]) => bhJson<TrackRow[]>(['track', '--config', configFile, ...args]);
const at = (rows: TrackRow[], server: string, event: string) =>
  rows.find((r) => r.serverHostname === FQDN(server) && r.event === event);

test('one message crosses three servers; track --config --message-id shows its whole path', async () => {
  const body = compose({
    from: 'alice@example.com',
    to: ['team@example.com'],
    subject: 'ops: across the organisation',
    messageId,
    body: 'Three hops.\n',
  });
  queueId = await send(smtpPort.ALPHA!, 'alice@example.com', ['team@example.com'], body);

  const rows = await waitFor(
    'DELIVER on CHARLIE in the organisation-wide search',
    async () => {
      const r = await track('--message-id', messageId);
      return at(r, 'CHARLIE', 'DELIVER') ? r : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 300 },
  );
  const route = [
    ['ALPHA', 'RECEIVE'],
    ['ALPHA', 'SEND'],
    ['BRAVO', 'RECEIVE'],
    ['BRAVO', 'EXPAND'],
    ['BRAVO', 'SEND'],
    ['CHARLIE', 'RECEIVE'],
    ['CHARLIE', 'DELIVER'],
  ] as const;
  const hop = Object.fromEntries(
    route.map(([s, e]) => {
      const row = at(rows, s, e);
      assert.ok(row, `${e} on ${s} in\n${JSON.stringify(rows, null, 1)}`);
      return [`${s} ${e}`, row!];
    }),
  );
  for (const r of rows)
    assert.equal(r.messageId, messageId, 'every event of the path carries the Message-ID');
  assert.equal(hop['ALPHA RECEIVE']!.internalMessageId, queueId);
  // Each server has its own queue id for the message [002 internal-message-id].
  assert.equal(new Set(route.map(([s]) => hop[`${s} RECEIVE`]!.internalMessageId)).size, 3);
  // The next hop each server sent to, by name.
  assert.equal(hop['ALPHA SEND']!.connectorId, FQDN('BRAVO'));
  assert.deepEqual(hop['ALPHA SEND']!.recipients, ['team@example.com']);
  assert.equal(hop['BRAVO SEND']!.connectorId, FQDN('CHARLIE'));
  assert.deepEqual(hop['BRAVO SEND']!.recipients, ['carol@example.com']);
  assert.deepEqual(hop['CHARLIE DELIVER']!.recipients, ['carol@example.com']);
  assert.equal(hop['BRAVO EXPAND']!.messageInfo, 'Team: 1 member(s)');

  // Merged in time order; and each hop's RECEIVE is logged before the sender logs its SEND.
  const times = rows.map((r) => Date.parse(r.dateTime));
  assert.deepEqual(
    [...times].sort((a, b) => a - b),
    times,
    'merged rows are in time order',
  );
  const t = (k: string) => Date.parse(hop[k]!.dateTime);
  assert.ok(t('ALPHA RECEIVE') <= t('BRAVO RECEIVE'));
  assert.ok(t('BRAVO RECEIVE') <= t('ALPHA SEND'));
  assert.ok(t('BRAVO RECEIVE') <= t('BRAVO EXPAND'));
  assert.ok(t('CHARLIE RECEIVE') <= t('BRAVO SEND'));
  assert.ok(t('CHARLIE RECEIVE') <= t('CHARLIE DELIVER'));

  // The mailbox on CHARLIE has it, with a Received header from each server.
  const [file] = maildirFiles(path.join(dir, 'charlie'), 'carol@example.com');
  assert.ok(file, 'delivered to Carol on CHARLIE');
  const text = readFileSync(file!, 'utf8');
  assert.equal((text.match(/^Received: /gm) ?? []).length, 3);
  assert.ok(text.includes(messageId));
});

test('track --sender across the organisation, as a table and as CSV with one line per event', async () => {
  const json = await track('--sender', 'alice@example.com');
  assert.deepEqual(
    json.map((r) => r.messageId),
    json.map(() => messageId),
  );
  assert.deepEqual(
    new Set(json.map((r) => r.serverHostname)),
    new Set(NAMES.map(FQDN)),
    'events from all three servers',
  );

  const table = await bh(['track', '--config', configFile, '--sender', 'alice@example.com']);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(
    lines[0]!,
    /^dateTime\s+serverHostname\s+event\s+source\s+internalMessageId\s+sender\s+recipients\s+recipientStatus$/,
  );
  assert.equal(lines.length, json.length + 2, 'header, rule, one line per event');
  assert.match(
    table.stdout,
    /^\S+Z\s+charlie\.test\.example\s+DELIVER\s+STOREDRIVER\s+\S+\s+alice@example\.com\s+carol@example\.com\s+250 2\.6\.0$/m,
  );

  const csv = await bh(['track', '--config', configFile, '--sender', 'alice@example.com', '--csv']);
  assert.equal(csv.code, 0, csv.stderr);
  assert.equal(csv.stderr, '', 'no progress or warnings when every server answers');
  const rows = parseCsv(csv.stdout);
  assert.deepEqual(rows[0], [
    'dateTime',
    'serverHostname',
    'event',
    'source',
    'internalMessageId',
    'sender',
    'recipients',
    'recipientStatus',
    'messageId',
    'messageInfo',
  ]);
  assert.equal(rows.length, json.length + 1, 'a header line and one line per event');
  assert.deepEqual(
    rows.slice(1).map((r) => [r[1], r[2], r[4]]),
    json.map((r) => [r.serverHostname, r.event, r.internalMessageId]),
  );
  for (const r of rows.slice(1)) assert.equal(r.length, 10, r.join(','));
  const deliver = rows.find((r) => r[2] === 'DELIVER')!;
  assert.deepEqual(
    [deliver[1], deliver[6], deliver[7], deliver[8]],
    ['charlie.test.example', 'carol@example.com', '250 2.6.0', messageId],
  );

  // One event kind across the organisation: the two SMTP hops.
  const sends = await track('--sender', 'alice@example.com', '--event', 'SEND');
  assert.deepEqual(
    sends.map((r) => [r.serverHostname, r.connectorId]),
    [
      [FQDN('ALPHA'), FQDN('BRAVO')],
      [FQDN('BRAVO'), FQDN('CHARLIE')],
    ],
  );
});

test('with one server down, track still answers from the others, names it, and exits 1 (partial)', async () => {
  const q = await bhJson<{ name: string; messageCount: number }[]>([
    'queue',
    'list',
    '--config',
    configFile,
    '--server',
    'charlie',
  ]);
  assert.ok(
    q.every((x) => x.messageCount === 0),
    'CHARLIE has nothing left in its queues',
  );

  await servers.BRAVO!.stop();
  const r = await bh(['track', '--config', configFile, '--message-id', messageId, '--json']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /^warning: cannot reach the admin API of BRAVO at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); is the server running\?\nbridgehead: 1 of 3 server\(s\) did not answer \(BRAVO\): their events are missing from the result\n$/,
  );
  const rows = JSON.parse(r.stdout) as TrackRow[];
  assert.deepEqual([...new Set(rows.map((x) => x.serverHostname))].sort(), [FQDN('ALPHA'), FQDN('CHARLIE')]);
  const one = await bh(['track', '--config', configFile, '--server', 'BRAVO', '--message-id', messageId]);
  assert.equal(one.code, 3, 'asked for one server only, its absence is an error: not reached');
  assert.match(one.stderr, /cannot reach the admin API of BRAVO/);
});
