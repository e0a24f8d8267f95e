// Block lists under a DNS server that never answers: every provider is asked at once and
// the whole check ends at one deadline (3 s), failing open; the first match in priority
// order still wins, even when a lower-priority provider answered first. Loopback net
// 127.0.73.x: the servers listen on 127.0.73.1, clients connect from .2 and .3, and the
// silent DNS server is a UDP socket on 127.0.73.53 that reads queries and never replies.
// [003:5521-5530, 5952-5994], SPEC §3, issue 12 (Faults).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { DNSMASQ, listedRecords, sessionFrom, startDns, stopServers, type DnsServer } from './support.js';

const HOST = '127.0.73.1';
const SILENT_DNS = { host: '127.0.73.53', port: 47353 };
const FROM = 'kim@fourthcoffee.test';
const TO = 'alice@example.com';
/** The documented deadline of one block-list check. */
const DEADLINE_MS = 3000;

/** A DNS server that never answers; it records the names it was asked. */
async function silentDns(): Promise<{ asked: string[]; close: () => Promise<void> }> {
  const socket = dgram.createSocket('udp4');
  const asked: string[] = [];
  socket.on('message', (msg) => {
    // The question's name: length-prefixed labels after the 12-byte header.
    const labels: string[] = [];
    for (let at = 12, n = 0; at < msg.length && msg[at]! > 0 && n < 64; n++) {
      labels.push(msg.subarray(at + 1, at + 1 + msg[at]!).toString('latin1'));
      at += msg[at]! + 1;
    }
    asked.push(labels.join('.'));
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(SILENT_DNS.port, SILENT_DNS.host, () => resolve());
  });
  return { asked, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}

function blockListServer(port: number, dns: string, blockLists: Record<string, unknown>[]) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-dnsbl-deadline-'));
  return startServer({
    dir,
    host: HOST,
    port,
    mutate: (org) => {
      org.filters = { connection: { blockLists } };
      const vs = org.routingGroups[0].servers[0].virtualServers[0];
      vs.filters = { connection: true };
      vs.delivery = { externalDnsServers: [dns] };
    },
  }).catch((err) => {
    cleanup(dir);
    throw err;
  });
}

/** MAIL and RCPT from `client`; the RCPT reply and how long it took. */
async function rcptTimed(port: number, client: string): Promise<{ rcpt: string; ms: number }> {
  const c = await sessionFrom(port, client, 'client.test', HOST);
  try {
    assert.equal(await c.cmd(`MAIL FROM:<${FROM}>`), `250 2.1.0 ${FROM}....Sender OK`);
    const started = Date.now();
    c.write(`RCPT TO:<${TO}>\r\n`);
    // Generous: the old behaviour (each provider 9 s, one after another) must show as a
    // slow answer, not as a missing one.
    const rcpt = await c.reply(40_000);
    return { rcpt, ms: Date.now() - started };
  } finally {
    c.close();
  }
}

describe('block lists: one deadline for all providers', () => {
  let silent: Awaited<ReturnType<typeof silentDns>>;
  let server: RunningServer | undefined;

  before(async () => {
    silent = await silentDns();
    server = await blockListServer(47301, `${SILENT_DNS.host}:${SILENT_DNS.port}`, [
      { name: 'First', suffix: 'first.test' },
      { name: 'Second', suffix: 'second.test' },
      { name: 'Third', suffix: 'third.test' },
    ]);
  });

  after(async () => {
    await stopServers([server]);
    await silent?.close();
  });

  test('a DNS server that never answers: the client is let in (fail open) after about one deadline', async (t) => {
    const { rcpt, ms } = await rcptTimed(server!.port, '127.0.73.2');
    t.diagnostic(`RCPT answered after ${ms} ms (deadline ${DEADLINE_MS} ms)`);
    assert.equal(rcpt, `250 2.1.5 ${TO}`);
    // Not a benchmark: three providers asked one after another took 27 s before.
    assert.ok(ms < 2 * DEADLINE_MS, `RCPT took ${ms} ms, more than twice the ${DEADLINE_MS} ms deadline`);
    // Every provider was asked, once each (one try, no retry).
    for (const suffix of ['first.test', 'second.test', 'third.test']) {
      const name = `2.73.0.127.${suffix}`;
      assert.equal(silent.asked.filter((q) => q === name).length, 1, `${name}: ${silent.asked.join(' ')}`);
    }
  });
});

const skip = !existsSync(DNSMASQ) && 'dnsmasq is not installed (apt-get install dnsmasq-base)';

describe('block lists asked in parallel: the first match in priority order wins', { skip }, () => {
  let dns: DnsServer;
  let silent: Awaited<ReturnType<typeof silentDns>>;
  const servers: RunningServer[] = [];

  before(async () => {
    silent = await silentDns();
    // slow.test is forwarded to the silent server: its provider times out.
    dns = await startDns(
      ['high.test', 'low.test'],
      { ...listedRecords('high.test', ['127.0.73.3']), ...listedRecords('low.test', ['127.0.73.3']) },
      [`--server=/slow.test/${SILENT_DNS.host}#${SILENT_DNS.port}`],
    );
    servers.push(
      await blockListServer(47302, dns.address, [
        { name: 'High', suffix: 'high.test', rejectionText: 'high: %0 listed by %1' },
        { name: 'Low', suffix: 'low.test', rejectionText: 'low: %0 listed by %1' },
      ]),
    );
    servers.push(
      await blockListServer(47303, dns.address, [
        { name: 'Slow', suffix: 'slow.test', rejectionText: 'slow: %0' },
        { name: 'Low', suffix: 'low.test', rejectionText: 'low: %0 listed by %1' },
      ]),
    );
  });

  after(async () => {
    await stopServers(servers);
    await dns?.stop();
    await silent?.close();
  });

  test('listed by a high- and a low-priority provider: the high-priority text is sent', async () => {
    const { rcpt } = await rcptTimed(servers[0]!.port, '127.0.73.3');
    assert.equal(rcpt, '550 5.7.1 high: 127.0.73.3 listed by High');
    // Not listed anywhere: accepted.
    assert.equal((await rcptTimed(servers[0]!.port, '127.0.73.2')).rcpt, `250 2.1.5 ${TO}`);
    await dns.sync();
    const asked = dns.queries();
    // Both providers were asked (in parallel), the lower one although the higher matched.
    assert.ok(asked.includes('3.73.0.127.high.test'), asked.join(' '));
    assert.ok(asked.includes('3.73.0.127.low.test'), asked.join(' '));
  });

  test('a high-priority provider that times out counts as not listed: the lower listing is used', async (t) => {
    const { rcpt, ms } = await rcptTimed(servers[1]!.port, '127.0.73.3');
    t.diagnostic(`RCPT answered after ${ms} ms (deadline ${DEADLINE_MS} ms)`);
    assert.equal(rcpt, '550 5.7.1 low: 127.0.73.3 listed by Low');
    assert.ok(ms < 2 * DEADLINE_MS, `RCPT took ${ms} ms, more than twice the ${DEADLINE_MS} ms deadline`);
    assert.ok(silent.asked.includes('3.73.0.127.slow.test'), `never forwarded: ${silent.asked.join(' ')}`);
  });
});
