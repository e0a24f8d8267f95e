// Block lists (connection filtering rules) against a real DNS server: a private dnsmasq on
// 127.0.0.1 serves the zones, and the SMTP clients connect from 127.0.0.2 … .7, which are
// listed with answers 127.0.0.2 … .7; 127.0.0.1 is not listed (NXDOMAIN).
// [003:5521-5530, 5666-5801, 5952-5994], SPEC §3, [001 last section].
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { RunningServer } from '../helpers/server.js';
import {
  DNSMASQ,
  listedRecords,
  mailRcpt,
  sessionFrom,
  sleep,
  startDns,
  startServers,
  stopServers,
  type DnsServer,
} from './support.js';

const FROM = 'kim@fourthcoffee.test';
const TO = 'alice@example.com';

/** An organisation edit: these block-list rules, connection filtering on, DNS from `dns`. */
function serverWith(dns: DnsServer, connection: Record<string, unknown>) {
  return (org: Record<string, any>) => {
    org.filters = { connection: { exceptions: ['postmaster@example.com'], ...connection } };
    const vs = org.routingGroups[0].servers[0].virtualServers[0];
    vs.filters = { connection: true };
    vs.delivery = { externalDnsServers: [dns.address] };
  };
}

const skip = !existsSync(DNSMASQ) && 'dnsmasq is not installed (apt-get install dnsmasq-base)';

describe('block lists against a real DNS server', { skip }, () => {
  let dns: DnsServer;
  let failDns: DnsServer;
  const servers: Record<string, RunningServer> = {};

  before(async () => {
    dns = await startDns(['rbl.test', 'rbl2.test', 'rbl3.test', 'disabled.test'], {
      ...listedRecords('rbl.test'),
      // The second provider of the order test lists only .2 and .4.
      ...listedRecords('rbl2.test', ['127.0.0.2', '127.0.0.4']),
      ...listedRecords('rbl3.test'),
      ...listedRecords('disabled.test'),
    });
    failDns = await startDns(['rbl.test'], listedRecords('rbl.test'));
    const made = await startServers([
      serverWith(dns, {
        blockLists: [
          {
            name: 'Any RBL',
            suffix: 'rbl.test',
            rejectionText: 'The IP address %0 was rejected by block list provider %2 (rule %1), 100%% sure',
          },
        ],
      }),
      serverWith(dns, {
        blockLists: [
          {
            name: 'Codes RBL',
            suffix: 'rbl.test',
            matchMode: 'codes',
            codes: ['127.0.0.3'],
            rejectionText: "Your IP address {0} has been found on '{1}' (looked up on {2})",
          },
        ],
      }),
      // No rejection text: the default "%0 has been blocked by %1".
      serverWith(dns, {
        blockLists: [{ name: 'Mask RBL', suffix: 'rbl.test', matchMode: 'mask', mask: '0.0.0.2' }],
      }),
      serverWith(dns, {
        blockLists: [{ name: 'Mask6 RBL', suffix: 'rbl.test', matchMode: 'mask', mask: '0.0.0.6' }],
      }),
      serverWith(dns, {
        blockLists: [
          { name: 'Disabled', suffix: 'disabled.test', enabled: false, rejectionText: 'disabled: %0' },
          {
            name: 'First',
            suffix: 'rbl.test',
            matchMode: 'codes',
            codes: ['127.0.0.4'],
            rejectionText: 'first: %0',
          },
          { name: 'Second', suffix: 'rbl2.test', rejectionText: 'second: %0' },
          { name: 'Third', suffix: 'rbl.test', rejectionText: 'third: %0 by %1' },
        ],
      }),
      serverWith(dns, {
        accept: ['127.0.0.3'],
        deny: ['127.0.0.4'],
        // Blank: "default error message will be used if left blank" [003:5956].
        blockLists: [{ name: 'Lists RBL', suffix: 'rbl3.test', rejectionText: '' }],
      }),
      serverWith(failDns, { blockLists: [{ name: 'Flaky RBL', suffix: 'rbl.test' }] }),
    ]);
    [
      servers.any,
      servers.codes,
      servers.mask,
      servers.mask6,
      servers.order,
      servers.lists,
      servers.failOpen,
    ] = made;
  });

  after(async () => {
    await stopServers(Object.values(servers));
    await dns?.stop();
    await failDns?.stop();
  });

  const rcptFrom = async (name: string, ip: string, to = TO) => {
    const r = await mailRcpt(servers[name]!.port, ip, FROM, to);
    assert.equal(r.mail, `250 2.1.0 ${FROM}....Sender OK`);
    return r.rcpt;
  };

  test('match any return code: every listed client is refused with the custom text (%0 %1 %2 %%)', async () => {
    for (const ip of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.6', '127.0.0.7']) {
      assert.equal(
        await rcptFrom('any', ip),
        `550 5.7.1 The IP address ${ip} was rejected by block list provider rbl.test (rule Any RBL), 100% sure`,
      );
    }
    // Not listed (NXDOMAIN): accepted.
    assert.equal(await rcptFrom('any', '127.0.0.1'), `250 2.1.5 ${TO}`);
    await dns.sync();
    const asked = dns.queries();
    for (const q of ['1.0.0.127.rbl.test', '2.0.0.127.rbl.test', '7.0.0.127.rbl.test']) {
      assert.ok(asked.includes(q), `${q} was not asked: ${asked.join(' ')}`);
    }
  });

  test('match the listed codes [127.0.0.3]: only .3 is refused; {0} {1} {2} text', async () => {
    assert.equal(
      await rcptFrom('codes', '127.0.0.3'),
      "550 5.7.1 Your IP address 127.0.0.3 has been found on 'Codes RBL' (looked up on rbl.test)",
    );
    for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.4', '127.0.0.6', '127.0.0.7']) {
      assert.equal(await rcptFrom('codes', ip), `250 2.1.5 ${TO}`, ip);
    }
  });

  // SPEC §3 Decision: a mask matches when (answer & mask) == mask. With mask 0.0.0.2 that is
  // every answer with bit 1 set: .2 (010), .3 (011), .6 (110), .7 (111), but not .4 (100).
  test('match the mask 0.0.0.2: .2 .3 .6 .7 are refused, .4 is not; default text', async () => {
    for (const ip of ['127.0.0.2', '127.0.0.3', '127.0.0.6', '127.0.0.7']) {
      assert.equal(await rcptFrom('mask', ip), `550 5.7.1 ${ip} has been blocked by Mask RBL`);
    }
    for (const ip of ['127.0.0.1', '127.0.0.4']) {
      assert.equal(await rcptFrom('mask', ip), `250 2.1.5 ${TO}`, ip);
    }
  });

  // "A bit mask checks only against a single value … [it] will match only IP addresses that
  // appear on both lists" [003:5584, 5991]: mask 0.0.0.6 needs bits 1 and 2.
  test('match the mask 0.0.0.6: only .6 and .7 (both bits) are refused', async () => {
    for (const ip of ['127.0.0.6', '127.0.0.7']) {
      assert.equal(await rcptFrom('mask6', ip), `550 5.7.1 ${ip} has been blocked by Mask6 RBL`);
    }
    for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      assert.equal(await rcptFrom('mask6', ip), `250 2.1.5 ${TO}`, ip);
    }
  });

  test('the first match in priority order wins; a disabled provider is never asked', async () => {
    // .4: "First" (codes 127.0.0.4) matches, although "Second" lists .4 too.
    assert.equal(await rcptFrom('order', '127.0.0.4'), '550 5.7.1 first: 127.0.0.4');
    // .2: "First" does not match the code; "Second" lists .2 and wins over "Third".
    assert.equal(await rcptFrom('order', '127.0.0.2'), '550 5.7.1 second: 127.0.0.2');
    // .3: "First" no, "Second" NXDOMAIN, "Third" any.
    assert.equal(await rcptFrom('order', '127.0.0.3'), '550 5.7.1 third: 127.0.0.3 by Third');
    assert.equal(await rcptFrom('order', '127.0.0.1'), `250 2.1.5 ${TO}`);
    await dns.sync();
    const asked = dns.queries();
    assert.ok(asked.includes('2.0.0.127.rbl2.test'));
    assert.ok(asked.includes('3.0.0.127.rbl2.test'));
    // Every enabled provider is asked at once (one deadline for the whole check); the
    // answers are read in priority order.
    assert.ok(asked.includes('4.0.0.127.rbl2.test'), 'the providers were not asked in parallel');
    assert.deepEqual(
      asked.filter((q) => q.endsWith('.disabled.test')),
      [],
    );
  });

  test('a blank rejection text sends the default "<IP> has been blocked by <rule>"', async () => {
    assert.equal(await rcptFrom('lists', '127.0.0.2'), '550 5.7.1 127.0.0.2 has been blocked by Lists RBL');
  });

  test('the exception recipient (postmaster) is accepted from a listed client; others are not', async () => {
    const c = await sessionFrom(servers.lists!.port, '127.0.0.6');
    try {
      assert.equal(await c.cmd(`MAIL FROM:<${FROM}>`), `250 2.1.0 ${FROM}....Sender OK`);
      assert.equal(await c.cmd('RCPT TO:<postmaster@example.com>'), '250 2.1.5 postmaster@example.com');
      assert.equal(await c.cmd('RCPT TO:<Postmaster@Example.COM>'), '250 2.1.5 Postmaster@Example.COM');
      assert.equal(await c.cmd(`RCPT TO:<${TO}>`), '550 5.7.1 127.0.0.6 has been blocked by Lists RBL');
      // The message goes to the exception recipients only.
      assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
      const done = await c.cmd('Subject: to postmaster\r\n\r\nhello\r\n.');
      assert.match(done, /^250 2\.6\.0 <[0-9A-Z]+@mail1\.test\.example> Queued mail for delivery$/);
    } finally {
      c.close();
    }
  });

  test('the global accept list overrides a listing: the block list is not even asked', async () => {
    assert.equal(await rcptFrom('lists', '127.0.0.3'), `250 2.1.5 ${TO}`);
    await dns.sync();
    assert.ok(!dns.queries().includes('3.0.0.127.rbl3.test'), 'an accepted client was looked up');
  });

  test('the global deny list drops the connection at MAIL', async () => {
    const c = await sessionFrom(servers.lists!.port, '127.0.0.4');
    try {
      assert.equal(await c.cmd(`MAIL FROM:<${FROM}>`), '550 5.7.1 127.0.0.4 is on the deny list');
      await c.waitClosed(5000);
    } finally {
      c.close();
    }
    await dns.sync();
    assert.ok(!dns.queries().includes('4.0.0.127.rbl3.test'), 'a denied client was looked up');
  });

  test('DNS server stopped: the listed client is accepted (fail open) and the failure is logged', async () => {
    const srv = servers.failOpen!;
    assert.equal(
      await rcptFrom('failOpen', '127.0.0.2'),
      '550 5.7.1 127.0.0.2 has been blocked by Flaky RBL',
    );
    await failDns.stop();
    // The listing was cached for its TTL (0 s → at least 1 s).
    await sleep(1200);
    const started = Date.now();
    assert.equal(await rcptFrom('failOpen', '127.0.0.2'), `250 2.1.5 ${TO}`);
    assert.ok(Date.now() - started < 8000, 'the failed lookup held the session too long');
    // The diagnostic event log (JSON lines on standard error) says so at the default level.
    const deadline = Date.now() + 3000;
    let warning: Record<string, unknown> | undefined;
    while (!warning && Date.now() < deadline) {
      warning = srv
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.name === '2.0.0.127.rbl.test' && /fail/i.test(String(l.msg)));
      if (!warning) await sleep(50);
    }
    assert.ok(warning, `no warning about the failed lookup in:\n${srv.output()}`);
    assert.ok(Number(warning.level) >= 40, 'logged below warning level');
    assert.equal(warning.category, 'Connection Manager');
    assert.match(String(warning.msg), /failing open/);
  });
});
