// The guide's four routing groups as six real server processes on loopback (issue 4):
// Seattle (SEATTLE1 master, SEATTLE2 member), London, Brussels, Tokyo [003:130-140].
// Mail Seattle → Brussels goes via London (cost 20); with London's bridgehead down, via
// Tokyo (35); with London back, via London again. Link state changes reach every server;
// the member shares its master's table and keeps it when the master goes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { Organisation, SmtpSession, sleep, waitFor, type LinkStateView, type TrackEvent } from './cluster.js';
import { fourGroups } from './topologies.js';

const DAMPING_MS = 3000;
let org: Organisation;
/** When every digest was last seen equal after a connector came up (damping counts from there). */
let settledAt = 0;

before(async () => {
  org = await Organisation.create(fourGroups());
  await org.startAll();
  await org.converged(undefined, 30_000);
  // Every connector up everywhere (the first probes may have run before a peer listened).
  await waitFor(
    'every connector up on every server',
    async () => {
      const views = await Promise.all([...org.servers.keys()].map((n) => org.linkState(n)));
      return (
        views.every((v) => downConnectors(v).length === 0) && new Set(views.map((v) => v.digest)).size === 1
      );
    },
    20_000,
    100,
  );
  settledAt = Date.now();
});

after(async () => {
  await org?.destroy();
});

function downConnectors(v: LinkStateView): string[] {
  return Object.values(v.table.groups).flatMap((g) =>
    Object.entries(g.connectors)
      .filter(([, s]) => s === 'down')
      .map(([c]) => c),
  );
}

const host = (server: string) => `${server.toLowerCase()}.org.test`;

/** Organisation-wide tracking (`track --config --json`) until `done` holds. */
async function tracked(messageId: string, done: (e: TrackEvent[]) => boolean): Promise<TrackEvent[]> {
  let last: TrackEvent[] = [];
  try {
    return await waitFor(
      `tracking events of ${messageId}`,
      async () => {
        last = await org.track(`<${messageId}>`);
        return done(last) ? last : undefined;
      },
      25_000,
      250,
    );
  } catch (err) {
    const summary = last.map((e) => `${e.serverHostname} ${e.event} ${e.messageInfo ?? ''}`).join('\n');
    throw new Error(`${(err as Error).message}\n${summary}`);
  }
}

const has = (events: TrackEvent[], server: string, event: string) =>
  events.some((e) => e.serverHostname === host(server) && e.event === event);

/** Sends alice → bob (mailbox on BRUSSELS1) from `from`; waits for delivery; returns the path. */
async function mailToBob(from: string, sender = 'alice@example.com'): Promise<TrackEvent[]> {
  const { messageId } = await org.send(from, { from: sender, to: ['bob@example.com'] });
  const events = await tracked(
    messageId,
    (e) =>
      has(e, 'BRUSSELS1', 'DELIVER') &&
      // every server that received it has also sent it on (or delivered it)
      e
        .filter((x) => x.event === 'RECEIVE')
        .every(
          (r) =>
            r.serverHostname === host('BRUSSELS1') ||
            e.some((s) => s.serverHostname === r.serverHostname && s.event === 'SEND'),
        ),
  );
  const box = org.mailbox('BRUSSELS1', 'bob@example.com');
  assert.ok(
    box.some((m) => m.content.includes(`Message-ID: <${messageId}>`)),
    `message ${messageId} in bob's Maildir on BRUSSELS1`,
  );
  return events;
}

/**
 * The servers a message passed through: from the server it was submitted to, following each
 * SEND event to the server at its address, to the one that delivered it.
 */
function hops(events: TrackEvent[], submittedTo: string): string[] {
  const path: string[] = [];
  let at: string | undefined = submittedTo;
  while (at && !path.includes(at)) {
    path.push(at);
    at = sendTo(events, at);
  }
  if (!events.some((e) => e.event === 'DELIVER' && serverOf(e.serverHostname) === path.at(-1)))
    path.push('(not delivered)');
  return path;
}

const serverOf = (hostname: string) => hostname.split('.')[0]!.toUpperCase();

function sendTo(events: TrackEvent[], from: string): string | undefined {
  const ip = events.find((e) => e.serverHostname === host(from) && e.event === 'SEND')?.serverIp;
  return ip ? [...org.servers.values()].find((s) => s.address === ip)?.name : undefined;
}

async function connectorState(server: string, group: string, connector: string): Promise<string | undefined> {
  return (await org.linkState(server)).table.groups[group]?.connectors[connector];
}

/** Waits until every running server reports the same digest and `check` holds on each table. */
async function everyServerSees(what: string, check: (v: LinkStateView) => boolean, timeoutMs: number) {
  const started = Date.now();
  let last: Record<string, string> = {};
  try {
    await waitFor(
      what,
      async () => {
        const names = [...org.servers.keys()].filter((n) => org.isRunning(n));
        const views = await Promise.all(names.map((n) => org.linkState(n)));
        last = Object.fromEntries(
          names.map((n, i) => [n, `${views[i]!.digest} down=${downConnectors(views[i]!)}`]),
        );
        return new Set(views.map((v) => v.digest)).size === 1 && views.every(check);
      },
      timeoutMs,
      100,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(last)}`);
  }
  return Date.now() - started;
}

test('Seattle → Brussels goes via London (cost 20): SEND on SEATTLE1 and LONDON1, DELIVER on BRUSSELS1', async () => {
  const events = await mailToBob('SEATTLE1');
  assert.deepEqual(hops(events, 'SEATTLE1'), ['SEATTLE1', 'LONDON1', 'BRUSSELS1']);
  assert.equal(sendTo(events, 'SEATTLE1'), 'LONDON1');
  assert.equal(sendTo(events, 'LONDON1'), 'BRUSSELS1');
  assert.ok(has(events, 'LONDON1', 'RECEIVE'));
  assert.ok(has(events, 'BRUSSELS1', 'RECEIVE'));
  assert.ok(!events.some((e) => e.serverHostname === host('TOKYO1')), 'nothing passes through Tokyo');
});

test('London stopped: every server learns its connectors are down (equal digests, bounded time)', async () => {
  // Damping counts state changes within the window; start from a quiet connector.
  const quiet = settledAt + DAMPING_MS + 500 - Date.now();
  if (quiet > 0) await sleep(quiet);
  await org.stop('LONDON1');
  const ms = await everyServerSees(
    'SeattleToLondon and BrusselsToLondon down on every running server',
    (v) =>
      v.table.groups.Seattle?.connectors.SeattleToLondon === 'down' &&
      v.table.groups.Brussels?.connectors.BrusselsToLondon === 'down',
    10_000,
  );
  assert.ok(ms < 10_000, `converged in ${ms} ms`);
});

test('with London down, new mail from Seattle goes via Tokyo (cost 35)', async () => {
  const events = await mailToBob('SEATTLE1');
  assert.deepEqual(hops(events, 'SEATTLE1'), ['SEATTLE1', 'TOKYO1', 'BRUSSELS1']);
  assert.equal(sendTo(events, 'SEATTLE1'), 'TOKYO1');
  assert.equal(sendTo(events, 'TOKYO1'), 'BRUSSELS1');
  assert.ok(!events.some((e) => e.serverHostname === host('LONDON1')));
});

test('London restarted: every server, London included, converges on one table again', async () => {
  await org.start('LONDON1');
  const ms = await everyServerSees(
    'every connector up and one digest on all six servers',
    (v) => downConnectors(v).length === 0 && Object.keys(v.table.groups).length === 4,
    15_000,
  );
  assert.ok(ms < 15_000, `converged in ${ms} ms`);
  // London's part carries a later version than the one it had before it stopped.
  const london = (await org.linkState('SEATTLE1')).table.groups.London!;
  assert.equal(london.master, 'LONDON1');
  assert.equal(london.servers.LONDON1, 'up');
});

test('with London back, new mail from Seattle goes via London again', async () => {
  assert.equal(await connectorState('SEATTLE1', 'Seattle', 'SeattleToLondon'), 'up');
  const events = await mailToBob('SEATTLE1');
  assert.deepEqual(hops(events, 'SEATTLE1'), ['SEATTLE1', 'LONDON1', 'BRUSSELS1']);
});

test('a topology change (reload: SeattleToLondon cost 30) reaches every server; Seattle → Brussels then goes via Tokyo', async () => {
  const majorBefore = (await org.linkState('TOKYO1')).table.groups.Seattle!.version.major;
  const setCost = async (cost: number) => {
    const seattle = org.org.routingGroups.find((g: any) => g.name === 'Seattle');
    seattle.connectors.find((c: any) => c.name === 'SeattleToLondon').cost = cost;
    org.write();
    await org.reload();
  };
  await setCost(30);
  const ms = await everyServerSees(
    'a major update of the Seattle part on all six servers',
    (v) => v.table.groups.Seattle!.version.major > majorBefore && downConnectors(v).length === 0,
    15_000,
  );
  assert.ok(ms < 15_000, `converged in ${ms} ms`);
  // Via London now costs 40, via Tokyo 35.
  assert.deepEqual(hops(await mailToBob('SEATTLE1'), 'SEATTLE1'), ['SEATTLE1', 'TOKYO1', 'BRUSSELS1']);
  // And back.
  const majorChanged = (await org.linkState('TOKYO1')).table.groups.Seattle!.version.major;
  await setCost(10);
  await everyServerSees(
    'the Seattle part updated again on all six servers',
    (v) => v.table.groups.Seattle!.version.major > majorChanged && downConnectors(v).length === 0,
    15_000,
  );
  assert.deepEqual(hops(await mailToBob('SEATTLE1'), 'SEATTLE1'), ['SEATTLE1', 'LONDON1', 'BRUSSELS1']);
});

test('the member of Seattle is attached to its master and shares its table', async () => {
  const master = await org.linkState('SEATTLE1');
  const member = await org.linkState('SEATTLE2');
  assert.equal(master.isMaster, true);
  assert.equal(master.master, 'SEATTLE1');
  assert.equal(master.port, org.info('SEATTLE1').linkStatePort);
  assert.equal(member.isMaster, false);
  assert.equal(member.master, 'SEATTLE1');
  assert.equal(member.digest, master.digest);
  assert.deepEqual(member.table, master.table);
  assert.deepEqual(master.table.groups.Seattle!.servers, { SEATTLE1: 'up', SEATTLE2: 'up' });
  // The member's mail uses the same routes.
  const events = await mailToBob('SEATTLE2', 'dan@example.com');
  assert.deepEqual(hops(events, 'SEATTLE2'), ['SEATTLE2', 'LONDON1', 'BRUSSELS1']);
});

test('the link state port refuses a member that cannot prove the organisation secret', async () => {
  const s = org.info('SEATTLE1');
  const attempt = (proof: (nonce: string) => string) =>
    new Promise<string[]>((resolve, reject) => {
      const lines: string[] = [];
      let buf = '';
      const socket = net.connect({ host: s.address, port: s.linkStatePort });
      const timer = setTimeout(() => {
        socket.destroy();
        resolve([...lines, '(still open)']);
      }, 3000);
      socket.setEncoding('utf8');
      socket.on('error', reject);
      socket.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          lines.push(line);
          const msg = JSON.parse(line) as { t: string; nonce?: string };
          if (msg.t === 'challenge')
            socket.write(`${JSON.stringify({ t: 'hello', server: 'SEATTLE2', proof: proof(msg.nonce!) })}\n`);
        }
      });
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(lines);
      });
    });
  const hmac = (secret: string, nonce: string) =>
    createHmac('sha256', secret).update(`${nonce}|SEATTLE2`).digest('hex');
  for (const proof of [() => 'not-a-proof', (n: string) => hmac('a-wrong-secret', n)]) {
    const lines = await attempt(proof);
    assert.equal(lines.length, 1, `only the challenge, then the connection is closed: ${lines.join(' / ')}`);
    assert.match(lines[0]!, /"t":"challenge"/);
  }
  // The real member is still attached.
  assert.equal((await org.linkState('SEATTLE1')).table.groups.Seattle!.servers.SEATTLE2, 'up');
});

test('X-LINK2STATE on the wire: only for organisation servers; DIGEST, SEND in chunks, bad chunks refused', async () => {
  const l1 = org.info('LONDON1');
  const view = await org.linkState('LONDON1');
  const c = await SmtpSession.connect(l1.address, l1.smtpPort);
  try {
    assert.match(await c.reply(), /^220 /);
    const ehlo = await c.cmd('EHLO probe.test');
    assert.match(ehlo, /^250-X-LINK2STATE$/m);
    // Anonymous: refused.
    assert.match(await c.cmd(`X-LINK2STATE DIGEST ${view.digest}`), /^504 5\.7\.4 /);
    await c.startTls('probe.test');
    // A wrong secret is not an organisation server.
    assert.match(
      await c.cmd(`AUTH PLAIN ${Buffer.from('\0SEATTLE1\0wrong-secret').toString('base64')}`),
      /^535 /,
    );
    const ok = await c.cmd(
      `AUTH PLAIN ${Buffer.from('\0SEATTLE1\0test-organisation-secret').toString('base64')}`,
    );
    assert.match(ok, /^235 /);
    // Same digest: nothing to exchange.
    const current = (await org.linkState('LONDON1')).digest;
    assert.equal(await c.cmd(`X-LINK2STATE DIGEST ${current}`), `250 2.0.0 DONE ${current}`);
    // Another digest: MORE, and SEND returns the table in chunks.
    assert.equal(await c.cmd(`X-LINK2STATE DIGEST ${'0'.repeat(32)}`), `354 MORE ${current}`);
    const sent = await c.cmd('X-LINK2STATE SEND');
    const lines = sent.split('\r\n');
    assert.match(lines[0]!, /^250[ -](FIRST|LAST) CHUNK /);
    assert.match(lines.at(-1)!, /^250 LAST CHUNK /);
    const b64 = lines.map((l) => l.replace(/^250[ -](FIRST|NEXT|LAST) CHUNK ?/, '')).join('');
    const table = JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as LinkStateView['table'];
    assert.deepEqual(table, (await org.linkState('LONDON1')).table);
    // A table that cannot be read is refused and changes nothing.
    assert.match(await c.cmd('X-LINK2STATE FIRST CHUNK bm90LWpzb24'), /^354 /);
    assert.match(await c.cmd('X-LINK2STATE LAST CHUNK ='), /^501 5\.5\.4 /);
    assert.match(await c.cmd('X-LINK2STATE NONSENSE'), /^501 5\.5\.4 /);
    // Not inside a mail transaction.
    assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250 /);
    assert.match(await c.cmd(`X-LINK2STATE DIGEST ${current}`), /^503 5\.5\.1 /);
    await c.cmd('QUIT');
  } finally {
    c.close();
  }
  assert.equal((await org.linkState('LONDON1')).digest, (await org.linkState('TOKYO1')).digest);
});

test('the master stopped: the member keeps its last table (digest unchanged) and still routes', async () => {
  const before = await org.linkState('SEATTLE2');
  await org.stop('SEATTLE1');
  // More than two poll intervals (2 s) and a reattach attempt: nothing changes on the member.
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    const now = await org.linkState('SEATTLE2');
    assert.equal(now.digest, before.digest, 'the member keeps its last table');
    await sleep(250);
  }
  const kept = await org.linkState('SEATTLE2');
  assert.equal(kept.master, 'SEATTLE1');
  assert.deepEqual(kept.table, before.table);
  const events = await mailToBob('SEATTLE2', 'dan@example.com');
  assert.deepEqual(hops(events, 'SEATTLE2'), ['SEATTLE2', 'LONDON1', 'BRUSSELS1']);
});
