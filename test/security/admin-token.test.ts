// The admin API is private by default (issue 12, Security): with no adminApi.token the
// server makes one at first start in <dataDir>/admin.token (mode 0600), requires it on every
// call, and the `bridgehead` CLI run by the server's user reads it from there. Another local
// user cannot read the file and is refused (401, exit status 2). adminApi.open opts out.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { startServer, cleanup, launch, CLI, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { transaction } from '../pipeline/mail.js';
import { bh } from '../ops/ops.js';

const HOST = '127.0.71.1';
const SMTP_PORT = 47101;
const API_PORT = 47102;
const API = `http://${HOST}:${API_PORT}`;

let server: RunningServer;
let queued: string;

async function send(port: number, to: string): Promise<string> {
  const c = await RawSmtp.connect(port, HOST);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const id = await transaction(c, { from: 'kim@fourthcoffee.test', to: [to] });
    await c.cmd('QUIT');
    return id;
  } finally {
    c.close();
  }
}

before(async () => {
  server = await startServer({
    host: HOST,
    port: SMTP_PORT,
    // Queues held: the message stays queued for export and delete.
    mutate: (org) => {
      org.routingGroups[0].servers[0].adminApi = { host: HOST, port: API_PORT };
    },
  });
  queued = await send(SMTP_PORT, 'alice@example.com');
});

after(async () => {
  await server?.stop();
  if (server) cleanup(server.dir);
});

const tokenFile = () => path.join(server.dataDir, 'admin.token');

test('no token configured: export and delete without a token get 401', async () => {
  const exported = await fetch(`${API}/api/v1/messages/${queued}/export`);
  assert.equal(exported.status, 401);
  assert.doesNotMatch(await exported.text(), /Subject:/, 'no message bytes without a token');
  const deleted = await fetch(`${API}/api/v1/messages/${queued}?ndr=false`, { method: 'DELETE' });
  assert.equal(deleted.status, 401);
  const list = await fetch(`${API}/api/v1/queues`, { headers: { authorization: 'Bearer wrong' } });
  assert.equal(list.status, 401, 'a wrong token is refused too');
  // The OpenAPI description stays public.
  assert.equal((await fetch(`${API}/api/v1/openapi.json`)).status, 200);
});

test('the generated token is in <dataDir>/admin.token, mode 0600, and opens the API', async () => {
  assert.equal(statSync(tokenFile()).mode & 0o777, 0o600);
  const token = readFileSync(tokenFile(), 'utf8').trim();
  assert.ok(token.length >= 32, 'a long random token');
  const res = await fetch(`${API}/api/v1/messages/${queued}/export`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  assert.match(await res.text(), /^From: <kim@fourthcoffee\.test>/m);
  assert.match(server.output(), new RegExp(`admin API on ${API} \\(token in .*admin\\.token\\)`));
});

test("the server's user runs the CLI without a token: --config or --data-dir finds it", async () => {
  const byConfig = await bh(['message', 'export', queued, '--config', server.configFile]);
  assert.equal(byConfig.code, 0, byConfig.stderr);
  assert.match(byConfig.stdout, /^From: <kim@fourthcoffee\.test>/m);
  const byDir = await bh(['queue', 'list', '--api', API, '--data-dir', server.dataDir]);
  assert.equal(byDir.code, 0, byDir.stderr);
  assert.match(byDir.stdout, /^Local delivery\s/m);
  const none = await bh(['queue', 'list', '--api', API]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /a valid bearer token is required \(HTTP 401\); no token given/);
});

/** Why another user cannot run the CLI here, or undefined when it can. */
function otherUserUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'tests do not run as root: cannot switch to another user';
  const probe = spawnSync(
    'setpriv',
    ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, '--help'],
    // The node binary, dist/ and node_modules must be readable by nobody (CI: /check/work/main).
    { encoding: 'utf8', cwd: '/', timeout: 30_000 },
  );
  if (probe.error || probe.status !== 0)
    return `user nobody cannot run ${process.execPath} ${CLI}: ${probe.error?.message ?? probe.stderr}`;
  return undefined;
}

test('another local user cannot read the token: refused with 401 and exit status 2', async (t) => {
  const why = otherUserUnavailable();
  if (why) return t.skip(why);
  const asNobody = (args: string[]) =>
    spawnSync(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, ...args],
      { encoding: 'utf8', cwd: '/', timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
    );
  const del = asNobody(['message', 'delete', queued, '--no-ndr', '--api', API, '--data-dir', server.dataDir]);
  assert.equal(del.status, 2, del.stderr);
  assert.match(del.stderr, /a valid bearer token is required \(HTTP 401\)/);
  assert.match(del.stderr, /cannot read .*admin\.token \(EACCES\): run the command as the server's user/);
  const exp = asNobody(['message', 'export', queued, '--api', API]);
  assert.equal(exp.status, 2, exp.stderr);
  assert.equal(exp.stdout, '', 'no message bytes');
  // Still queued: the refused delete changed nothing.
  const show = await bh(['message', 'show', queued, '--config', server.configFile]);
  assert.equal(show.code, 0, show.stderr);
});

test('the token is kept across restarts', async () => {
  const before = readFileSync(tokenFile(), 'utf8');
  await server.stop();
  server = await launch({
    dir: server.dir,
    configFile: server.configFile,
    port: SMTP_PORT,
    host: HOST,
    hold: true,
  });
  assert.equal(readFileSync(tokenFile(), 'utf8'), before);
  const show = await bh(['message', 'show', queued, '--config', server.configFile]);
  assert.equal(show.code, 0, show.stderr);
});

test('adminApi.open: true opens a loopback API; refused beyond loopback or with a token', async () => {
  const open = await startServer({
    host: HOST,
    port: 47103,
    mutate: (org) => {
      org.routingGroups[0].servers[0].adminApi = { host: HOST, port: 47104, open: true };
    },
  });
  try {
    const id = await send(47103, 'alice@example.com');
    const res = await fetch(`http://${HOST}:47104/api/v1/messages/${id}/export`);
    assert.equal(res.status, 200);
    assert.throws(() => statSync(path.join(open.dataDir, 'admin.token')), /ENOENT/, 'no token file');
    for (const [api, message] of [
      [
        { host: '0.0.0.0', open: true },
        /adminApi\.open: the admin API listens on 0\.0\.0\.0, beyond loopback: it cannot be open/,
      ],
      [{ open: true, token: 'x'.repeat(20) }, /adminApi\.open: an open admin API takes no token/],
    ] as const) {
      const org = readFileSync(open.configFile, 'utf8').replace(
        /adminApi:\n(\s+)host: .*\n\s+port: .*\n\s+open: true/,
        (_m, indent: string) =>
          `adminApi:\n${Object.entries(api)
            .map(([k, v]) => `${indent}${k}: ${JSON.stringify(v)}`)
            .join('\n')}`,
      );
      const file = path.join(open.dir, 'bad.yaml');
      execFileSync('sh', ['-c', `cat > ${JSON.stringify(file)}`], { input: org });
      const r = await bh(['config', 'check', file]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, message);
    }
  } finally {
    await open.stop();
    cleanup(open.dir);
  }
});
