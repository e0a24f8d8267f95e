// `bridgehead route show --config` (the WinRoute view) and `route test ADDRESS --from SERVER`
// for the issue 4 organisations, readable and --json (no server needs to run).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Organisation } from './cluster.js';
import { externalRouting, fourGroups } from './topologies.js';

let four: Organisation;
let ext: Organisation;
const hosts = {
  net: '[127.0.63.5]:2601',
  star: '[127.0.63.6]:2602',
  scoped: '[127.0.63.7]:2603',
  held: '[127.0.63.8]:2604',
};

before(async () => {
  four = await Organisation.create(fourGroups());
  ext = await Organisation.create(externalRouting(hosts));
});

after(async () => {
  await four?.destroy();
  await ext?.destroy();
});

async function cli(o: Organisation, args: string[]): Promise<string> {
  const r = await o.cli([...args, '--config', o.configFile]);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /test-organisation-secret/, 'the organisation secret is never printed');
  return r.stdout;
}

interface Report {
  address: string;
  route: { kind: string; server?: string; domain?: string };
  hop: {
    queue?: string;
    reason?: string;
    destination?: { type: string; name?: string; hosts?: string[]; connector?: string; port?: number };
    fail?: { code: number; status: string; text: string };
  };
  why: string[];
}

async function routeJson(o: Organisation, address: string, from: string, sender?: string): Promise<Report> {
  const out = await cli(o, [
    'route',
    'test',
    address,
    '--from',
    from,
    '--json',
    ...(sender ? ['--sender', sender] : []),
  ]);
  const list = JSON.parse(out) as Report[];
  assert.equal(list.length, 1);
  return list[0]!;
}

const routeText = (o: Organisation, address: string, from: string, sender?: string) =>
  cli(o, ['route', 'test', address, '--from', from, ...(sender ? ['--sender', sender] : [])]);

test('route show: routing groups, masters, servers and connectors with costs and states', async () => {
  const text = await cli(four, ['route', 'show']);
  assert.match(text, /^Organisation: Contoso$/m);
  assert.match(text, /^Digest \(MD5\): [0-9a-f]{32}$/m);
  for (const g of ['Seattle', 'London', 'Brussels', 'Tokyo'])
    assert.match(text, new RegExp(`^Routing group: ${g}\\s+master: ${g.toUpperCase()}1$`, 'm'));
  const s2 = four.info('SEATTLE2');
  assert.match(
    text,
    new RegExp(
      `^  server SEATTLE2 \\(seattle2\\.org\\.test\\)  Default SMTP Virtual Server ${s2.address}:${s2.smtpPort}$`,
      'm',
    ),
  );
  assert.match(
    text,
    /^ {2}connector SeattleToLondon \[routing group\] cost 10 UP\n {6}→ London {2}remote bridgeheads: LONDON1\n {6}local bridgeheads: SEATTLE1, SEATTLE2$/m,
  );
  assert.match(text, /^ {2}connector TokyoToBrussels \[routing group\] cost 20 UP$/m);

  const json = JSON.parse(await cli(four, ['route', 'show', '--json'])) as {
    digest: string;
    groups: string[];
    servers: { name: string; group: string; up: boolean }[];
    connectors: { name: string; group: string; type: string; to?: string; cost: number; state: string }[];
  };
  assert.equal(json.digest, /Digest \(MD5\): ([0-9a-f]{32})/.exec(text)![1]);
  assert.deepEqual(json.groups, ['Seattle', 'London', 'Brussels', 'Tokyo']);
  assert.equal(json.servers.length, 5);
  assert.equal(json.connectors.length, 8);
  const costs = Object.fromEntries(json.connectors.map((c) => [c.name, c.cost]));
  assert.deepEqual(costs, {
    SeattleToLondon: 10,
    SeattleToTokyo: 15,
    LondonToSeattle: 10,
    LondonToBrussels: 10,
    BrusselsToLondon: 10,
    BrusselsToTokyo: 20,
    TokyoToSeattle: 15,
    TokyoToBrussels: 20,
  });
  assert.ok(json.connectors.every((c) => c.type === 'routingGroup' && c.state === 'up'));
});

test('route show: SMTP connectors with address spaces, smart hosts, scope and local bridgeheads', async () => {
  const text = await cli(ext, ['route', 'show']);
  assert.match(
    text,
    /^ {2}connector Internet \.net \[SMTP\] cost 1 UP\n {6}address spaces: SMTP:\*\.net:20 {2}smart hosts \[127\.0\.63\.5\]:2601 {2}scope organisation\n {6}local bridgeheads: any local server$/m,
  );
  assert.match(
    text,
    /address spaces: SMTP:\*:10 {2}smart hosts \[127\.0\.63\.6\]:2602 {2}scope organisation/,
  );
  assert.match(
    text,
    /address spaces: SMTP:\*\.org:5 {2}smart hosts \[127\.0\.63\.7\]:2603 {2}scope routingGroup/,
  );
  const json = JSON.parse(await cli(ext, ['route', 'show', '--json'])) as {
    connectors: {
      name: string;
      addressSpaces: { type: string; pattern: string; cost: number }[];
      scope: string;
      restrictions: { enabled: boolean; acceptFrom: string[] };
      smartHosts: string[];
    }[];
  };
  const net = json.connectors.find((c) => c.name === 'Internet .net')!;
  assert.deepEqual(net.addressSpaces, [{ type: 'SMTP', pattern: '*.net', cost: 20 }]);
  assert.deepEqual(net.restrictions, { enabled: true, acceptFrom: ['Sales'], rejectFrom: [] });
  assert.deepEqual(net.smartHosts, [hosts.net]);
  assert.equal(json.connectors.find((c) => c.name === 'London .org')!.scope, 'routingGroup');
});

test('route test: Seattle → Brussels via London at cost 20; a mailbox on this server is local', async () => {
  const output = await routeText(four, 'bob@example.com', 'SEATTLE1');
  const l1 = four.info('LONDON1');
  // No server runs here: the file decides, and the output says so.
  const note =
    /^ {2}link state: from the file, every server and connector assumed up \(cannot reach the admin API of SEATTLE1 at .*\)\n/m;
  assert.match(output, note);
  const text = output.replace(note, '');
  assert.equal(
    text,
    [
      'route test bob@example.com from SEATTLE1',
      '  bob@example.com: server (mailbox on BRUSSELS1)',
      '      path Seattle → London → Brussels at cost 20',
      '      first connector SeattleToLondon; next hop LONDON1',
      `      result: queue "london1.org.test" → server LONDON1 at ${l1.address}:${l1.smtpPort}`,
      '',
    ].join('\n'),
  );
  const r = await routeJson(four, 'bob@example.com', 'SEATTLE1');
  assert.deepEqual(r.route, { kind: 'server', server: 'BRUSSELS1' });
  assert.equal(r.hop.queue, 'london1.org.test');
  assert.equal(r.hop.destination?.type, 'server');
  assert.equal(r.hop.destination?.name, 'LONDON1');
  assert.equal(r.hop.destination?.port, l1.smtpPort);
  // From Tokyo the direct connector (20) beats Tokyo → Seattle → London → Brussels (35).
  const fromTokyo = await routeJson(four, 'bob@example.com', 'TOKYO1');
  assert.equal(fromTokyo.hop.destination?.name, 'BRUSSELS1');
  assert.match(fromTokyo.why[0]!, /^path Tokyo → Brussels at cost 20$/);
  const local = await routeText(four, 'bob@example.com', 'BRUSSELS1');
  assert.match(local, /mailbox on this server: Local delivery/);
});

test('route test: *.net beats * regardless of cost; * for the rest', async () => {
  const net = await routeJson(ext, 'ted@treyresearch.net', 'S1', 'alice@example.com');
  assert.equal(net.hop.destination?.connector, 'Internet .net');
  assert.deepEqual(net.hop.destination?.hosts, [hosts.net]);
  assert.match(net.why[0]!, /most specific address space for treyresearch\.net: Internet \.net \(\*\.net\)/);
  const text = await routeText(ext, 'ted@treyresearch.net', 'S1', 'alice@example.com');
  assert.match(
    text,
    /result: queue "Internet \.net" → smart host \[127\.0\.63\.5\]:2601 over connector Internet \.net/,
  );
  const com = await routeJson(ext, 'adam@contoso.com', 'S1');
  assert.equal(com.hop.destination?.connector, 'Internet');
  assert.match(await routeText(ext, 'adam@contoso.com', 'S1'), /least cost 10 via Internet\n/);
});

test('route test: a routing-group-scoped connector only from its own group', async () => {
  assert.equal((await routeJson(ext, 'x@fabrikam.org', 'L1')).hop.destination?.connector, 'London .org');
  assert.equal((await routeJson(ext, 'x@fabrikam.org', 'S1')).hop.destination?.connector, 'Internet');
});

test('route test: a sender the restriction excludes is not a candidate for *.net: * takes its mail', async () => {
  const r = await routeJson(ext, 'zoe@treyresearch.net', 'S1', 'carol@example.com');
  assert.equal(r.hop.queue, 'Internet');
  assert.equal(r.hop.destination?.connector, 'Internet');
  assert.ok(r.why.some((w) => /delivery restrictions exclude this sender from Internet \.net/.test(w)));
  const text = await routeText(ext, 'zoe@treyresearch.net', 'S1', 'carol@example.com');
  assert.match(text, /result: queue "Internet" → smart host \[127\.0\.63\.6\]:2602 over connector Internet/);
  // A Sales member takes *.net.
  assert.equal(
    (await routeJson(ext, 'zoe@treyresearch.net', 'S1', 'alice@example.com')).hop.queue,
    'Internet .net',
  );
});

test('route test: schedule "never" and remote triggered delivery hold the mail in the connector queue', async () => {
  const never = await routeJson(ext, 'nina@never.example', 'S1');
  assert.equal(never.hop.queue, 'Never');
  assert.equal(never.hop.destination, undefined);
  assert.match(never.hop.reason!, /^Connector schedule: never run$/);
  assert.match(
    await routeText(ext, 'nina@never.example', 'S1'),
    /result: held in "Never" \(Connector schedule: never run\)/,
  );
  const etrn = await routeJson(ext, 'eve@etrn.example', 'S1');
  assert.equal(etrn.hop.queue, 'ETRN hold');
  assert.match(etrn.hop.reason!, /remote triggered delivery/i);
});

test('route test --json never prints the organisation secret', async () => {
  const out = await cli(four, ['route', 'test', 'bob@example.com', '--from', 'SEATTLE1', '--json']);
  const [r] = JSON.parse(out) as {
    hop: { destination: { auth?: { username: string; password: string } } };
  }[];
  assert.equal(r!.hop.destination.auth?.username, 'SEATTLE1');
  assert.notEqual(r!.hop.destination.auth?.password, 'test-organisation-secret');
});
