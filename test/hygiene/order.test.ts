// The order of checks of SPEC §3 [003:5666-5801], one test per row, on a real server with
// connection, sender and recipient filtering switched on and a real DNS block list
// (dnsmasq on loopback). Every rejection is a tracking event with source FILTER and is
// counted in bridgehead_filter_rejections_total{filter} on /metrics.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { adminAuth, type RunningServer } from '../helpers/server.js';
import { spooledMessages } from '../helpers/spool.js';
import type { RawSmtp } from '../helpers/smtp.js';
import { probeFrom } from '../smtp/util.js';
import {
  DNSMASQ,
  filterEvents,
  filterRejections,
  listedRecords,
  sessionFrom,
  sleep,
  startDns,
  startServers,
  stopServers,
  waitForFilterEvent,
  type DnsServer,
} from './support.js';

const QUEUED = /^250 2\.6\.0 <([0-9A-Z]+)@mail1\.test\.example> Queued mail for delivery$/;

/** DATA with the given header section; returns the reply to the end of data. */
async function sendData(c: RawSmtp, headers: string, body = 'hello'): Promise<string> {
  const go = await c.cmd('DATA');
  assert.equal(go, '354 Start mail input; end with <CRLF>.<CRLF>');
  return c.cmd(`${headers}\r\n\r\n${body}\r\n.`);
}

/** bridgehead_badmail_total from /metrics. */
async function badmailTotal(srv: { api?: string; dataDir: string }): Promise<number> {
  const res = await fetch(`${srv.api}/metrics`, {
    headers: adminAuth(srv.dataDir),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return Number(/^bridgehead_badmail_total (\S+)$/m.exec(text)?.[1] ?? NaN);
}

/** Waits (bounded) for <dataDir>/badmail/<id>.bad and returns its content. */
async function badmailFile(dataDir: string, id: string): Promise<string> {
  const file = path.join(dataDir, 'badmail', `${id}.bad`);
  for (let i = 0; i < 100 && !existsSync(file); i++) await sleep(50);
  assert.ok(existsSync(file), `no ${id}.bad in badmail: ${readdirSafe(path.dirname(file)).join(' ')}`);
  return readFileSync(file, 'utf8');
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const skip = !existsSync(DNSMASQ) && 'dnsmasq is not installed (apt-get install dnsmasq-base)';

describe('order of checks (SPEC §3), one row at a time', { skip }, () => {
  let dns: DnsServer;
  let srv: RunningServer;
  let archive: RunningServer;

  before(async () => {
    dns = await startDns(['rbl.test'], listedRecords('rbl.test'));
    [srv, archive] = await startServers([
      (org) => {
        const vs = org.routingGroups[0].servers[0].virtualServers[0];
        vs.connectionControl = { mode: 'allExcept', list: ['127.0.0.8'] };
        vs.filters = { connection: true, sender: true, recipient: true };
        vs.delivery = { externalDnsServers: [dns.address] };
        org.recipientPolicies.push({
          name: 'Partner',
          addresses: [{ address: '@partner.test', authoritative: false }],
        });
        org.directory.users.push({
          name: 'Kim Akers',
          addresses: ['kim@example.com'],
          mailbox: { server: 'MAIL1' },
        });
        org.filters = {
          connection: {
            // .3 is on both lists and listed by the block list: the accept list wins.
            accept: ['127.0.0.3'],
            deny: ['127.0.0.3', '127.0.0.4'],
            blockLists: [{ name: 'Order RBL', suffix: 'rbl.test', rejectionText: '%0 is listed by %1' }],
            exceptions: ['postmaster@example.com', 'abuse@example.com'],
          },
          sender: { addresses: ['spammer@spam.test', '@junk.test'], dropConnection: true },
          recipient: { blocked: ['"Kim Akers" <kim@example.com>'], filterNotInDirectory: true },
        };
      },
      (org) => {
        org.routingGroups[0].servers[0].virtualServers[0].filters = { sender: true };
        org.filters = { sender: { addresses: ['*@junk.test'], archive: true } };
      },
    ]);
  });

  after(async () => {
    await stopServers([srv, archive]);
    await dns?.stop();
  });

  /** Runs `fn` and returns how much each filter counter grew meanwhile. */
  async function counted(fn: () => Promise<void>): Promise<Record<string, number>> {
    const before = await filterRejections(srv);
    await fn();
    const after = await filterRejections(srv);
    const delta: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) delta[k] = v - (before[k] ?? 0);
    return delta;
  }

  test('1 connect: connection control drops a refused client before the banner', async () => {
    const refused = await probeFrom(srv.port, '127.0.0.8');
    assert.deepEqual(refused, { received: '', closedByServer: true });
    const allowed = await probeFrom(srv.port, '127.0.0.1');
    assert.match(allowed.received, /^220 mail1\.test\.example Bridgehead ESMTP Service ready/);
  });

  test('2 MAIL: the global accept list skips the deny list and the block lists (not the sender filter)', async () => {
    const delta = await counted(async () => {
      const c = await sessionFrom(srv.port, '127.0.0.3');
      try {
        assert.equal(
          await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
        assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
      } finally {
        c.close();
      }
    });
    assert.deepEqual(delta, {});
    await dns.sync();
    assert.ok(
      !dns.queries().includes('3.0.0.127.rbl.test'),
      'the block list was asked about an accepted client',
    );
    // Step 5 goes on to step 7 [003:5723-5729]: the sender filter still applies.
    const c = await sessionFrom(srv.port, '127.0.0.3');
    try {
      assert.equal(
        await c.cmd('MAIL FROM:<spammer@spam.test>'),
        '550 5.1.0 spammer@spam.test... Sender Denied',
      );
      await c.waitClosed(5000);
    } finally {
      c.close();
    }
  });

  test('3 MAIL: the global deny list drops the connection', async () => {
    const delta = await counted(async () => {
      const c = await sessionFrom(srv.port, '127.0.0.4');
      try {
        assert.equal(
          await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '550 5.7.1 127.0.0.4 is on the deny list',
        );
        await c.waitClosed(5000);
      } finally {
        c.close();
      }
    });
    assert.deepEqual(delta, { connection: 1 });
    const e = await waitForFilterEvent(srv.dataDir, (x) => x.client_ip === '127.0.0.4');
    assert.equal(e.event, 'FAIL');
    assert.equal(e.message_info, 'connection: 550 5.7.1 127.0.0.4 is on the deny list');
    assert.equal(e.sender, 'kim@fourthcoffee.test');
    assert.equal(e.connector_id, 'MAIL1\\Default SMTP Virtual Server');
  });

  test('4 MAIL: the sender filter (address and @domain) drops the connection', async () => {
    const delta = await counted(async () => {
      for (const [from, expected] of [
        ['spammer@spam.test', '550 5.1.0 spammer@spam.test... Sender Denied'],
        ['Anyone@JUNK.test', '550 5.1.0 Anyone@JUNK.test... Sender Denied'],
      ]) {
        const c = await sessionFrom(srv.port, '127.0.0.1');
        try {
          assert.equal(await c.cmd(`MAIL FROM:<${from}>`), expected);
          await c.waitClosed(5000);
        } finally {
          c.close();
        }
      }
    });
    assert.deepEqual(delta, { sender: 2 });
    const e = await waitForFilterEvent(srv.dataDir, (x) => x.sender === 'anyone@junk.test');
    assert.equal(e.message_info, 'sender: 550 5.1.0 Anyone@JUNK.test... Sender Denied');
    assert.equal(e.client_ip, '127.0.0.1');
  });

  test('4 MAIL: sender filter "accept without notifying": 250 is sent and the message goes to badmail', async () => {
    const badmailBefore = await badmailTotal(archive);
    const c = await sessionFrom(archive.port, '127.0.0.1');
    let id: string;
    try {
      assert.equal(await c.cmd('MAIL FROM:<bulk@junk.test>'), '250 2.1.0 bulk@junk.test....Sender OK');
      assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
      const done = await sendData(c, 'From: bulk@junk.test\r\nSubject: archived at MAIL');
      assert.match(done, QUEUED);
      id = QUEUED.exec(done)![1]!;
      assert.equal(await c.cmd('QUIT'), '221 2.0.0 mail1.test.example Service closing transmission channel');
    } finally {
      c.close();
    }
    assert.match(await badmailFile(archive.dataDir, id), /^Subject: archived at MAIL\r$/m);
    assert.equal((await spooledMessages(archive.dataDir)).filter((m) => m.envelope.id === id).length, 0);
    const e = await waitForFilterEvent(archive.dataDir, (x) => x.event === 'BADMAIL');
    assert.equal(e.sender, 'bulk@junk.test');
    assert.equal(await badmailTotal(archive), badmailBefore + 1);
  });

  test('5 first RCPT: a listed client gets 550 5.7.1 with the custom text (before the recipient filter)', async () => {
    const delta = await counted(async () => {
      const c = await sessionFrom(srv.port, '127.0.0.2');
      try {
        assert.equal(
          await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(
          await c.cmd('RCPT TO:<alice@example.com>'),
          '550 5.7.1 127.0.0.2 is listed by Order RBL',
        );
        // Step 5 comes before step 7: a blocked recipient gets the block list's answer.
        assert.equal(await c.cmd('RCPT TO:<kim@example.com>'), '550 5.7.1 127.0.0.2 is listed by Order RBL');
      } finally {
        c.close();
      }
    });
    assert.deepEqual(delta, { blocklist: 2 });
    const e = await waitForFilterEvent(
      srv.dataDir,
      (x) => x.client_ip === '127.0.0.2' && x.recipients === '["alice@example.com"]',
    );
    assert.equal(e.event, 'FAIL');
    assert.equal(e.recipient_status, '["5.7.1"]');
    assert.equal(e.message_info, 'blocklist: 550 5.7.1 127.0.0.2 is listed by Order RBL');
  });

  test('6 each RCPT: exception recipients are accepted and skip the block list, recipient filter and directory', async () => {
    const delta = await counted(async () => {
      const listed = await sessionFrom(srv.port, '127.0.0.6');
      try {
        assert.equal(
          await listed.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(
          await listed.cmd('RCPT TO:<postmaster@example.com>'),
          '250 2.1.5 postmaster@example.com',
        );
      } finally {
        listed.close();
      }
      // abuse@ is not in the directory; as an exception it skips step 8 too.
      const c = await sessionFrom(srv.port, '127.0.0.1');
      try {
        assert.equal(
          await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(await c.cmd('RCPT TO:<abuse@example.com>'), '250 2.1.5 abuse@example.com');
      } finally {
        c.close();
      }
    });
    assert.deepEqual(delta, {});
  });

  test('7 each RCPT: the recipient filter (display-name entry) answers 550 5.1.1', async () => {
    const delta = await counted(async () => {
      const c = await sessionFrom(srv.port, '127.0.0.1');
      try {
        assert.equal(
          await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(
          await c.cmd('RCPT TO:<kim@example.com>'),
          '550 5.1.1 kim@example.com... Recipient blocked',
        );
        assert.equal(
          await c.cmd('RCPT TO:<KIM@Example.com>'),
          '550 5.1.1 KIM@Example.com... Recipient blocked',
        );
        assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
      } finally {
        c.close();
      }
    });
    assert.deepEqual(delta, { recipient: 2 });
    const e = await waitForFilterEvent(
      srv.dataDir,
      (x) => x.recipients === '["kim@example.com"]' && x.message_info?.startsWith('recipient:') === true,
    );
    assert.equal(e.recipient_status, '["5.1.1"]');
    assert.equal(e.message_info, 'recipient: 550 5.1.1 kim@example.com... Recipient blocked');
  });

  test('8 each RCPT: not in the directory → 550 5.1.1 for an authoritative domain only', async () => {
    const delta = await counted(async () => {
      const c = await sessionFrom(srv.port, '127.0.0.1');
      try {
        assert.equal(
          await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(
          await c.cmd('RCPT TO:<nobody@example.com>'),
          '550 5.1.1 nobody@example.com... User unknown',
        );
        // A non-authoritative (shared address space) policy domain is accepted and routed on.
        assert.equal(await c.cmd('RCPT TO:<nobody@partner.test>'), '250 2.1.5 nobody@partner.test');
        assert.equal(await c.cmd('RCPT TO:<Alice@EXAMPLE.com>'), '250 2.1.5 Alice@EXAMPLE.com');
      } finally {
        c.close();
      }
    });
    assert.deepEqual(delta, { recipient: 1 });
    const e = await waitForFilterEvent(srv.dataDir, (x) => x.recipients === '["nobody@example.com"]');
    assert.equal(e.message_info, 'recipient: 550 5.1.1 nobody@example.com... User unknown');
  });

  // The guide's own example writes the header as "ted@contoso.com<Ted Bremer>" [003:5788].
  const headerForms = [
    '"Spam Er" <spammer@spam.test>',
    'spammer@spam.test',
    'spammer@spam.test<Spam Er>',
    'spammer@spam.test (Spam Er)',
    'Junk Mailer <someone@junk.test>',
    '"x"@junk.test',
  ];
  test('9 after DATA: the header From: sender filter answers 550 5.1.0 Sender Denied and drops', async () => {
    const delta = await counted(async () => {
      for (const from of headerForms) {
        const c = await sessionFrom(srv.port, '127.0.0.1');
        try {
          assert.equal(await c.cmd('MAIL FROM:<ok@good.test>'), '250 2.1.0 ok@good.test....Sender OK');
          assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
          const done = await sendData(c, `From: ${from}\r\nSubject: header From ${from}`);
          assert.equal(done, '550 5.1.0 Sender Denied', `From: ${from}`);
          await c.waitClosed(5000);
        } finally {
          c.close();
        }
      }
    });
    assert.deepEqual(delta, { header: headerForms.length });
    const spooled = await spooledMessages(srv.dataDir);
    assert.deepEqual(
      spooled.filter((m) => m.envelope.subject?.startsWith('header From')),
      [],
      'a denied message was queued',
    );
    const e = await waitForFilterEvent(srv.dataDir, (x) => x.message_info?.startsWith('header:') ?? false);
    assert.equal(e.message_info, 'header: 550 5.1.0 Sender Denied');
    assert.equal(e.sender, 'spammer@spam.test');
    // An unfiltered header From is queued as usual.
    const c = await sessionFrom(srv.port, '127.0.0.1');
    try {
      await c.cmd('MAIL FROM:<ok@good.test>');
      await c.cmd('RCPT TO:<alice@example.com>');
      assert.match(await sendData(c, 'From: "Ok" <ok@good.test>\r\nSubject: fine'), QUEUED);
    } finally {
      c.close();
    }
  });

  test('9 after DATA: with "accept without notifying" a filtered header From goes to badmail', async () => {
    const c = await sessionFrom(archive.port, '127.0.0.1');
    let id: string;
    try {
      assert.equal(await c.cmd('MAIL FROM:<ok@good.test>'), '250 2.1.0 ok@good.test....Sender OK');
      assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
      const done = await sendData(c, 'From: "Bulk" <bulk@junk.test>\r\nSubject: archived after DATA');
      assert.match(done, QUEUED);
      id = QUEUED.exec(done)![1]!;
    } finally {
      c.close();
    }
    assert.match(await badmailFile(archive.dataDir, id), /^Subject: archived after DATA\r$/m);
    await waitForFilterEvent(archive.dataDir, (x) => x.event === 'BADMAIL' && x.sender === 'ok@good.test');
  });

  test('every rejection above is a FILTER tracking event from this virtual server', async () => {
    const events = filterEvents(srv.dataDir);
    const stages = events.map((e) => e.message_info?.split(':')[0]);
    for (const stage of ['connection', 'sender', 'blocklist', 'recipient', 'header']) {
      assert.ok(stages.includes(stage), `no ${stage} event in ${JSON.stringify(stages)}`);
    }
    assert.ok(events.every((e) => e.source === 'FILTER' && e.event === 'FAIL'));
    assert.ok(events.every((e) => e.connector_id === 'MAIL1\\Default SMTP Virtual Server'));
  });
});
