// What an administrator reads when something is wrong, through the CLI only: an unknown
// queue is refused (never created by a freeze), an unknown tracking event lists the valid
// ones, organisation-wide tracking says which servers did not answer and fails when none
// did, "cannot reach" names the URL once, `queue retry` on mail a connector holds says it
// stays held (and until when), and every command's error case exits with the documented
// status (docs/operations.md "Output and exit status": 0 done, 1 partly done or failed,
// 2 refused, 3 not reached).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { adminAuth, baseOrganisation, cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { bh, bhJson, waitFor } from './ops.js';
import { submit } from '../remote/mail.js';

const NET = '127.0.76';
const HOST = `${NET}.41`;
const SMTP_PORT = 47641;
const ADMIN_PORT = 47642;
const API = `http://${HOST}:${ADMIN_PORT}`;
/** Nothing listens here: a server that is down. */
const DOWN_HOST = `${NET}.42`;
const DOWN_API = `http://${DOWN_HOST}:47643`;
const NOWHERE = `[${NET}.49]:47649`;
const ALICE = 'alice@example.com';
const EVENTS =
  'RECEIVE, SUBMIT, RESOLVE, EXPAND, DUPLICATEEXPAND, REDIRECT, SEND, DELIVER, DUPLICATEDELIVER, DEFER, FAIL, DSN, BADMAIL, GAP';

let server: RunningServer;
let work: string;
/** MAIL1 (running) and MAIL2 (down). */
let partOrg: string;
/** MAIL2 and MAIL3, both down. */
let deadOrg: string;
/** When the "Night" connector's window opens (epoch ms, minute precision). */
let opens: number;
let queueId: string;

const hhmm = (d: Date) =>
  `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
const A = (...args: string[]) => [...args, '--api', API, '--data-dir', server.dataDir];

/** A server entry of an organisation file, at an address where nothing runs. */
const downServer = (name: string, n: number) => ({
  name,
  fqdn: `${name.toLowerCase()}.test.example`,
  address: DOWN_HOST,
  dataDir: `./${name.toLowerCase()}`,
  adminApi: { host: DOWN_HOST, port: 47643 + n },
  virtualServers: [{ name: 'SMTP', ip: DOWN_HOST, port: 47650 + n }],
});

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'bh-admin-errors-'));
  // A window that opens in two hours (server local time) and lasts one.
  const start = new Date(Date.now() + 2 * 3600_000);
  start.setSeconds(0, 0);
  opens = start.getTime();
  const window = {
    days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'],
    start: hhmm(start),
    end: hhmm(new Date(opens + 3600_000)),
  };
  const configure = (org: Record<string, any>) => {
    const s = org.routingGroups[0].servers[0];
    s.adminApi = { host: HOST, port: ADMIN_PORT };
    s.virtualServers[0].relay = { list: ['127.0.0.1', HOST] };
    org.routingGroups[0].connectors = [
      {
        type: 'smtp',
        name: 'Night',
        addressSpaces: ['SMTP:night.test:1'],
        smartHosts: [NOWHERE],
        schedule: { mode: 'windows', windows: [window] },
      },
      {
        type: 'smtp',
        name: 'Never',
        addressSpaces: ['SMTP:never.test:1'],
        smartHosts: [NOWHERE],
        schedule: { mode: 'never' },
      },
      {
        type: 'smtp',
        name: 'ETRN',
        addressSpaces: ['SMTP:etrn.test:1'],
        smartHosts: [NOWHERE],
        queueForRemoteTriggeredDelivery: { enabled: true },
      },
    ];
  };
  server = await startServer({ engine: true, host: HOST, port: SMTP_PORT, mutate: configure });
  assert.equal(server.api, API, server.output());

  // Files for the CLI only: the running server with one that is down, and two down.
  const part = baseOrganisation(SMTP_PORT, HOST);
  configure(part);
  part.routingGroups[0].servers[0].address = HOST;
  // The CLI finds the running server's token in its data directory, as an operator's would.
  part.routingGroups[0].servers[0].dataDir = server.dataDir;
  part.routingGroups[0].servers.push(downServer('MAIL2', 1));
  partOrg = path.join(work, 'part.yaml');
  writeFileSync(partOrg, YAML.stringify(part));
  const dead = baseOrganisation(SMTP_PORT, HOST);
  dead.routingGroups[0].servers = [downServer('MAIL2', 1), downServer('MAIL3', 2)];
  dead.directory.users = [{ name: 'Alice', addresses: [ALICE], mailbox: { server: 'MAIL2' } }];
  deadOrg = path.join(work, 'dead.yaml');
  writeFileSync(deadOrg, YAML.stringify(dead));

  queueId = (
    await submit(
      { port: SMTP_PORT, host: HOST },
      {
        from: ALICE,
        to: ['bob@night.test', 'carl@never.test', 'dan@etrn.test'],
        subject: 'held by connectors',
      },
    )
  ).id;
  await waitFor('the connector queues to hold the mail', async () => {
    const q = await bhJson<{ name: string; state: string; messageCount: number }[]>(A('queue', 'list'));
    const state = (n: string) => q.find((x) => x.name === n)?.state;
    return state('Night') === 'Scheduled' && state('Never') === 'Scheduled' && state('ETRN') === 'Remote';
  });
});

after(async () => {
  await server?.stop();
  if (server) cleanup(server.dir);
  if (work) cleanup(work);
});

// ------------------------------------------------------------------ unknown queue

test('retry, freeze, unfreeze, find and delete of an unknown queue say so and exit 2; nothing is created', async () => {
  for (const args of [
    ['queue', 'retry', 'No Such Queue'],
    ['queue', 'freeze', 'No Such Queue'],
    ['queue', 'unfreeze', 'No Such Queue'],
    ['queue', 'find', '--queue', 'No Such Queue'],
    ['queue', 'delete', '--queue', 'No Such Queue', '--no-ndr'],
  ]) {
    const r = await bh(A(...args));
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr, `bridgehead: ${API}: no queue "No Such Queue" (HTTP 404)\n`, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
  }
  const list = await bhJson<{ name: string }[]>(A('queue', 'list'));
  assert.ok(!list.some((q) => q.name === 'No Such Queue'), 'a refused freeze leaves no phantom queue');
  // A queue that exists still works, listed or named by a remote next hop.
  const ok = await bh(A('queue', 'freeze', 'Local delivery'));
  assert.equal(ok.code, 0, ok.stderr);
  // Retry on a frozen queue does not pretend to send.
  const frozen = await bh(A('queue', 'retry', 'Local delivery'));
  assert.equal(frozen.code, 0, frozen.stderr);
  assert.equal(
    frozen.stdout,
    'Local delivery: the queue is frozen: nothing is sent until `queue unfreeze`\n',
  );
  assert.equal((await bh(A('queue', 'unfreeze', 'Local delivery'))).code, 0);
});

// ------------------------------------------------------------------ retry on held mail

test('queue retry on mail outside its connector schedule: stays held until the schedule opens, and when', async () => {
  const r = await bh(A('queue', 'retry', 'Night'));
  assert.equal(r.code, 0, r.stderr);
  const m =
    /^Night: 1 recipient\(s\) stay held until the connector schedule opens at (\S+Z): Connector schedule: outside its windows; retry does not send them$/m.exec(
      r.stdout,
    );
  assert.ok(m, r.stdout);
  assert.equal(Date.parse(m[1]!), opens, 'the opening of the window');
  assert.doesNotMatch(r.stdout, /retried now/);
  const json = await bhJson<{
    recipients: number;
    held: { reason: string; recipients: number; opens?: string }[];
  }>(A('queue', 'retry', 'Night'));
  assert.equal(json.recipients, 0);
  assert.deepEqual(
    json.held.map((h) => [h.reason, h.recipients, Date.parse(h.opens ?? '')]),
    [['schedule', 1, opens]],
  );
  const q = await bhJson<{ name: string; state: string; messageCount: number }[]>(A('queue', 'list'));
  assert.deepEqual(
    q.filter((x) => x.name === 'Night').map((x) => [x.state, x.messageCount]),
    [['Scheduled', 1]],
    'still held',
  );
});

test('queue retry on a connector that never runs, and on one held for ETRN: says what releases them', async () => {
  const never = await bh(A('queue', 'retry', 'Never'));
  assert.equal(never.code, 0, never.stderr);
  assert.equal(
    never.stdout,
    'Never: 1 recipient(s) stay held until its schedule is changed and the configuration reloaded (it never opens by itself): ' +
      'Connector schedule: never run; retry does not send them\n',
  );
  const etrn = await bh(A('queue', 'retry', 'ETRN'));
  assert.equal(etrn.code, 0, etrn.stderr);
  assert.match(
    etrn.stdout,
    /^ETRN: 1 recipient\(s\) stay held until the remote side sends ETRN or TURN: Remote triggered delivery: .*; retry does not send them\n$/,
  );
  const show = await bhJson<{ recipients: { address: string; queue: string; state: string }[] }>(
    A('message', 'show', queueId),
  );
  assert.deepEqual(show.recipients.map((x) => [x.address, x.queue, x.state]).sort(), [
    ['bob@night.test', 'Night', 'retry'],
    ['carl@never.test', 'Never', 'retry'],
    ['dan@etrn.test', 'ETRN', 'retry'],
  ]);
});

// ------------------------------------------------------------------ tracking

test('track --event with a name no stage records is refused with the list of events, exit 2', async () => {
  const r = await bh(A('track', '--event', 'BOGUS'));
  assert.equal(r.code, 2);
  assert.equal(r.stderr, `bridgehead: unknown event "BOGUS": the events are ${EVENTS}\n`);
  // Refused before any server is asked: the same with every server down.
  const dead = await bh(['track', '--event', 'BOGUS', '-c', deadOrg]);
  assert.equal(dead.code, 2, dead.stderr);
  // The API refuses it too (another client than this CLI).
  const res = await fetch(`${API}/api/v1/tracking?event=BOGUS`, { headers: adminAuth(server.dataDir) });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { error: `event must be one of ${EVENTS}` });
  // Case is ignored.
  const ok = await bhJson<{ event: string }[]>(A('track', '--event', 'receive'));
  assert.ok(ok.length >= 1 && ok.every((e) => e.event === 'RECEIVE'), JSON.stringify(ok));
});

test('track -c: a server that does not answer is named and the result is partial (exit 1)', async () => {
  const r = await bh(['track', '-c', partOrg, '--id', queueId, '--json']);
  assert.equal(r.code, 1, r.stderr);
  const rows = JSON.parse(r.stdout) as { internalMessageId: string }[];
  assert.ok(rows.length >= 2 && rows.every((x) => x.internalMessageId === queueId), r.stdout);
  assert.equal(
    r.stderr,
    `warning: cannot reach the admin API of MAIL2 at http://${DOWN_HOST}:47644 (ECONNREFUSED); is the server running?\n` +
      'bridgehead: 1 of 2 server(s) did not answer (MAIL2): their events are missing from the result\n',
  );
});

test('track -c: when no server answers there is no result: exit 3, naming each server', async () => {
  const r = await bh(['track', '-c', deadOrg]);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^warning: cannot reach the admin API of MAIL2 at http:\/\/127\.0\.76\.42:47644 /m);
  assert.match(r.stderr, /^warning: cannot reach the admin API of MAIL3 at http:\/\/127\.0\.76\.42:47645 /m);
  assert.match(r.stderr, /^bridgehead: no server answered \(MAIL2, MAIL3\): no tracking events to show\n$/m);
});

// ------------------------------------------------------------------ cannot reach

test('"cannot reach" names the URL once', async () => {
  const r = await bh(['queue', 'list', '--api', DOWN_API]);
  assert.equal(r.code, 3);
  assert.equal(
    r.stderr,
    `bridgehead: cannot reach the admin API at ${DOWN_API} (ECONNREFUSED); is the server running?\n`,
  );
  const named = await bh(['queue', 'list', '-c', deadOrg, '-s', 'mail3']);
  assert.equal(named.code, 3);
  assert.equal(
    named.stderr,
    `bridgehead: cannot reach the admin API of MAIL3 at http://${DOWN_HOST}:47645 (ECONNREFUSED); is the server running?\n`,
  );
});

// ------------------------------------------------------------------ exit codes

test('every command exits with the documented status for its error case', async () => {
  const missing = path.join(work, 'missing.yaml');
  const cases: { args: string[]; code: number; stderr: RegExp }[] = [
    // 0: done
    { args: A('queue', 'list'), code: 0, stderr: /^$/ },
    // 2: a wrong command line
    { args: ['queue', 'bogus'], code: 2, stderr: /unknown command 'bogus'/ },
    { args: A('queue', 'list', '--bogus'), code: 2, stderr: /unknown option '--bogus'/ },
    { args: ['message', 'show'], code: 2, stderr: /missing required argument 'id'/ },
    { args: ['queue'], code: 2, stderr: /Usage: bridgehead queue/ },
    { args: A('message', 'delete', 'X'), code: 2, stderr: /say --ndr or --no-ndr/ },
    { args: A('queue', 'delete', '--ndr'), code: 2, stderr: /give --queue, --sender/ },
    { args: A('track', '--event', 'nope'), code: 2, stderr: /unknown event "nope"/ },
    { args: A('queue', 'find', '--state', 'Bogus'), code: 2, stderr: /state must be one of/ },
    { args: A('track', '--start', 'yesterday-ish'), code: 2, stderr: /start is not a date/ },
    // 2: nothing by that name
    { args: A('queue', 'show', 'No Such Queue'), code: 2, stderr: /no queue "No Such Queue" \(HTTP 404\)/ },
    { args: A('queue', 'retry', 'No Such Queue'), code: 2, stderr: /no queue "No Such Queue" \(HTTP 404\)/ },
    {
      args: A('message', 'show', 'NOSUCHID'),
      code: 2,
      stderr: /no message NOSUCHID in the queues \(HTTP 404\)/,
    },
    { args: A('message', 'freeze', 'NOSUCHID'), code: 2, stderr: /no message NOSUCHID/ },
    { args: A('message', 'export', 'NOSUCHID'), code: 2, stderr: /no message NOSUCHID/ },
    { args: A('message', 'delete', 'NOSUCHID', '--no-ndr'), code: 2, stderr: /no message NOSUCHID/ },
    { args: A('log', 'level', 'Bogus', 'maximum'), code: 2, stderr: /no logging category "Bogus"/ },
    { args: A('log', 'level', 'Categorizer', 'loud'), code: 2, stderr: /level must be one of/ },
    { args: ['queue', 'list', '-c', partOrg, '-s', 'NOSUCH'], code: 2, stderr: /no server "NOSUCH"/ },
    {
      args: ['route', 'test', 'bob@night.test', '-c', partOrg, '--from', 'NOSUCH'],
      code: 2,
      stderr: /no server "NOSUCH"/,
    },
    { args: ['dnsdiag', 'night.test', '-c', partOrg, '-s', 'NOSUCH'], code: 2, stderr: /no server "NOSUCH"/ },
    {
      args: ['route', 'show', '--api', API, '--data-dir', server.dataDir],
      code: 2,
      stderr: /there is no link state to exchange \(HTTP 404\)/,
    },
    { args: A('message', 'unfreeze', 'NOSUCHID'), code: 2, stderr: /no message NOSUCHID/ },
    {
      args: ['dnsdiag', 'night.test', '-c', partOrg, '-s', 'MAIL1', '--virtual-server', 'NOSUCH'],
      code: 2,
      stderr: /no virtual server "NOSUCH"/,
    },
    { args: ['serve', '-c', partOrg, '-s', 'NOSUCH'], code: 2, stderr: /no server "NOSUCH"/ },
    {
      args: ['user', 'passwd', 'nobody', '-c', partOrg, '--password-file', partOrg],
      code: 2,
      stderr: /no user "nobody"/,
    },
    { args: ['user', 'hash-password'], code: 2, stderr: /the password is empty/ },
    // 1: an invalid organisation file
    { args: ['config', 'check', missing], code: 1, stderr: /cannot read/ },
    { args: ['route', 'show', '-c', missing], code: 1, stderr: /cannot read/ },
    { args: ['queue', 'list', '-c', missing], code: 1, stderr: /cannot read/ },
    // 3: the server is not reached
    { args: ['queue', 'list', '--api', DOWN_API], code: 3, stderr: /cannot reach the admin API at / },
    { args: ['queue', 'retry', 'Night', '--api', DOWN_API], code: 3, stderr: /cannot reach/ },
    { args: ['message', 'export', 'X', '--api', DOWN_API], code: 3, stderr: /cannot reach/ },
    { args: ['track', '--api', DOWN_API], code: 3, stderr: /cannot reach/ },
    { args: ['log', 'show', '--api', DOWN_API], code: 3, stderr: /cannot reach/ },
    { args: ['route', 'show', '--api', DOWN_API], code: 3, stderr: /cannot reach the admin API at / },
  ];
  const help = await bh(['--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(
    help.stdout,
    /^Exit status:\n {2}0 {2}done\n {2}1 .*\n.*\n {2}2 .*\n.*\n {2}3 /m,
    'the table is in the help',
  );
  const wrong: string[] = [];
  for (const c of cases) {
    const r = await bh(c.args);
    if (r.code !== c.code || !c.stderr.test(r.stderr))
      wrong.push(
        `bridgehead ${c.args.join(' ')}: exit ${r.code} (want ${c.code}), stderr ${JSON.stringify(r.stderr)}`,
      );
  }
  assert.deepEqual(wrong, []);
});

// ------------------------------------------------------------------ reload releases holds

test('a reload routes held mail again: a schedule opened in the file reaches mail already held', async () => {
  const org = YAML.parse(readFileSync(server.configFile, 'utf8')) as Record<string, any>;
  const never = (org.routingGroups[0].connectors as { name: string; schedule?: unknown }[]).find(
    (c) => c.name === 'Never',
  )!;
  never.schedule = { mode: 'always' };
  writeFileSync(server.configFile, YAML.stringify(org));
  server.proc.kill('SIGHUP');
  await waitFor('the reload', () => /reloaded /.test(server.output()));
  // Routed again at once: now it is tried (its smart host is down), no longer held.
  const q = await waitFor('the Never queue to leave Scheduled', async () => {
    const list = await bhJson<{ name: string; state: string; lastError?: string }[]>(A('queue', 'list'));
    const never = list.find((x) => x.name === 'Never');
    return never && never.state === 'Retry' ? never : undefined;
  });
  assert.match(q.lastError ?? '', /Cannot connect/);
  const r = await bh(A('queue', 'retry', 'Never'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Never: 1 recipient(s) retried now\n');
});
