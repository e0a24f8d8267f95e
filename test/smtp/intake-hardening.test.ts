// Hardening of the receiving side against hostile clients (issue 12): slow DATA and BDAT
// transfers are cut off, bare LF is refused (or normalised where configured), BDAT counts
// over the limits are refused before their bytes, and the protocol log stays plain text.
// Real sockets on 127.0.72.x; the limits are configured short so a test takes seconds.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { spooledMessages } from '../helpers/spool.js';
import { queueId, sleep, spooledById, spoolFiles, waitFor } from './util.js';

const HOST = '127.0.72.1';
/** An ordinary client, and one in bareLineFeed.exceptions. */
const CLIENT = '127.0.72.2';
const EXEMPT = '127.0.72.10';
const SENDER = 'kim@fourthcoffee.test';
const QUEUED = /^250 2\.6\.0 <[0-9A-Z]+@mail1\.test\.example> Queued mail for delivery$/;
const BARE_LF_COMMAND = '521 5.5.2 mail1.test.example Error: bare <LF> received';
const BARE_LF_DATA = '550 5.5.2 mail1.test.example Error: bare <LF> received';
const TOO_BIG = '552 5.3.4 Message size exceeds fixed maximum message size';

async function session(port: number, from = CLIENT): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, HOST, from);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.cmd('EHLO client.test'), /^250-/);
  return c;
}

async function envelope(c: RawSmtp, end = '\r\n'): Promise<void> {
  c.write(`MAIL FROM:<${SENDER}>${end}`);
  assert.equal(await c.reply(), `250 2.1.0 ${SENDER}....Sender OK`);
  c.write(`RCPT TO:<alice@example.com>${end}`);
  assert.equal(await c.reply(), '250 2.1.5 alice@example.com');
}

/** The stored message without the Received header this server added. */
function withoutOwnReceived(message: Buffer): string {
  return message.toString('latin1').replace(/^Received: [^\r\n]*\r\n\t[^\r\n]*\r\n/, '');
}

/**
 * A slow client: writes `piece` every `intervalMs` until the server closes the connection
 * or `count` pieces are out. Resolves with the number of pieces written.
 */
async function trickle(c: RawSmtp, piece: string, intervalMs: number, count: number): Promise<number> {
  let sent = 0;
  for (; sent < count && !c.closed; sent++) {
    c.write(piece);
    await sleep(intervalMs);
  }
  return sent;
}

/** Today's receive protocol log of the default virtual server. */
function receiveLog(dataDir: string): Buffer {
  const dir = path.join(dataDir, 'logs', 'protocol', 'receive', 'Default_SMTP_Virtual_Server');
  return Buffer.concat(readdirSync(dir).map((name) => readFileSync(path.join(dir, name))));
}

async function subjects(dataDir: string): Promise<(string | undefined)[]> {
  return (await spooledMessages(dataDir)).map((m) => m.envelope.subject);
}

describe('virtual server with short transfer limits, bare LF refused', () => {
  let srv: RunningServer;
  before(async () => {
    srv = await startServer({
      host: HOST,
      port: 47201,
      mutate: (org) => {
        const vs = org.routingGroups[0].servers[0].virtualServers[0];
        vs.messages = { maxMessageSizeKb: 64 };
        vs.connections = { dataTimeout: '3s', minDataRate: 500, dataTimeLimit: '6s' };
        vs.bareLineFeed = { action: 'reject', exceptions: [EXEMPT] };
        // Cut-offs are warnings: shown from "medium" up.
        org.routingGroups[0].servers[0].diagnosticLogging = { 'SMTP Protocol': 'medium' };
      },
    });
  });
  after(async () => {
    await srv.stop();
    cleanup(srv.dir);
  });

  // ------------------------------------------------------------------ slow transfers

  test('a message sent at an ordinary pace is accepted (DATA and BDAT)', async () => {
    const c = await session(srv.port);
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: ordinary\r\n\r\nbody\r\n.\r\n');
    assert.match(await c.reply(), QUEUED);
    await envelope(c);
    const body = 'Subject: ordinary chunks\r\n\r\nbody\r\n';
    c.write(`BDAT ${body.length} LAST\r\n${body}`);
    assert.match(await c.reply(), QUEUED);
    c.close();
  });

  test('DATA trickled below minDataRate is cut off with 421 4.4.2 and nothing is queued', async () => {
    const c = await session(srv.port);
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: trickled\r\n\r\n');
    // 10 bytes a second, well under 500; it would take the client 20 s to give up.
    const trickling = trickle(c, 'x', 100, 200);
    assert.equal(
      await c.reply(25_000),
      '421 4.4.2 mail1.test.example Data transfer too slow, closing transmission channel',
    );
    await c.waitClosed();
    assert.ok((await trickling) < 200, 'the server cut the client off before it gave up');
    assert.ok(!(await subjects(srv.dataDir)).includes('trickled'));
    // No partial file is left either: every file in the spool is a complete message.
    await waitFor('only complete messages in the spool', async () =>
      spoolFiles(srv.dataDir).length === (await spooledMessages(srv.dataDir)).length ? true : undefined,
    );
    await waitFor('the cut-off in the protocol log', () =>
      /\*,message transfer cut off: data transfer too slow \(\d+ bytes in \d+ s\)\n/.test(
        receiveLog(srv.dataDir).toString(),
      )
        ? true
        : undefined,
    );
    await waitFor('the log line', () =>
      /"reason":"rate".*"msg":"message transfer cut off"/.test(srv.output()) ? true : undefined,
    );
  });

  test('a BDAT transfer fast enough but longer than dataTimeLimit is cut off', async () => {
    const c = await session(srv.port);
    await envelope(c);
    c.write('BDAT 60000 LAST\r\nSubject: long transfer\r\n\r\n');
    // 4000 bytes a second, above the minimum rate; all of it would take 15 s.
    const trickling = trickle(c, 'y'.repeat(1000), 250, 59);
    assert.equal(
      await c.reply(25_000),
      '421 4.4.2 mail1.test.example Data transfer time limit exceeded, closing transmission channel',
    );
    await c.waitClosed();
    assert.ok((await trickling) < 59);
    assert.ok(!(await subjects(srv.dataDir)).includes('long transfer'));
    await waitFor('the cut-off in the protocol log', () =>
      /\*,message transfer cut off: data transfer time limit exceeded/.test(
        receiveLog(srv.dataDir).toString(),
      )
        ? true
        : undefined,
    );
  });

  // ------------------------------------------------------------------ bare LF

  test('a command ending in a bare LF gets 521 5.5.2 and the connection closes', async () => {
    const c = await RawSmtp.connect(srv.port, HOST, CLIENT);
    assert.match(await c.reply(), /^220 /);
    c.write('EHLO client.test\n');
    assert.equal(await c.reply(), BARE_LF_COMMAND);
    await c.waitClosed();
    const d = await session(srv.port);
    d.write('NOOP\nNOOP\r\n');
    assert.equal(await d.reply(), BARE_LF_COMMAND);
    await d.waitClosed();
  });

  test('DATA with bare LF lines or a bare-LF end marker gets 550 5.5.2; nothing is queued; the session stays in step', async () => {
    const c = await session(srv.port);
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    // The smuggling shape: a bare-LF "end" followed by a second transaction.
    c.write(
      `Subject: smuggled\r\n\r\nbody\n.\nMAIL FROM:<spoof@example.com>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: spoof\r\n\r\n.\r\n`,
    );
    assert.equal(await c.reply(), BARE_LF_DATA);
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: bare lines\r\n\r\none\ntwo\r\n.\r\n');
    assert.equal(await c.reply(), BARE_LF_DATA);
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: proper\r\n\r\none\r\n.\r\n');
    assert.match(await c.reply(), QUEUED);
    c.close();
    const stored = await subjects(srv.dataDir);
    for (const refused of ['smuggled', 'spoof', 'bare lines']) assert.ok(!stored.includes(refused), refused);
    assert.ok(stored.includes('proper'));
  });

  test('BDAT content with bare LF is stored byte for byte', async () => {
    const c = await session(srv.port);
    await envelope(c);
    const body = 'Subject: binary chunk\n\nline\n.\nend\n';
    c.write(`BDAT ${body.length} LAST\r\n${body}`);
    const id = queueId(await c.reply());
    assert.ok(id);
    c.close();
    assert.equal(withoutOwnReceived((await spooledById(srv.dataDir, id))!.message), body);
  });

  test('a client in bareLineFeed.exceptions has its bare LFs normalised', async () => {
    const c = await RawSmtp.connect(srv.port, HOST, EXEMPT);
    assert.match(await c.reply(), /^220 /);
    c.write('EHLO client.test\n');
    assert.match(await c.reply(), /^250-/);
    await envelope(c, '\n');
    c.write('DATA\n');
    assert.equal(await c.reply(), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: exempt\n\nbody\n.\nmore\r\n.\r\n');
    const id = queueId(await c.reply());
    assert.ok(id);
    c.close();
    const msg = await spooledById(srv.dataDir, id);
    assert.equal(withoutOwnReceived(msg!.message), 'Subject: exempt\r\n\r\nbody\r\n.\r\nmore\r\n');
  });

  // ------------------------------------------------------------------ BDAT counts

  test('BDAT far over the size limit is refused at once with 552 5.3.4 and the connection closes', async () => {
    for (const count of ['50000000 LAST', '100000000000000000000000']) {
      const c = await session(srv.port);
      await envelope(c);
      c.write(`BDAT ${count}\r\n`);
      // No byte of the chunk is sent: the reply must not wait for them.
      assert.equal(await c.reply(), TOO_BIG, count);
      await c.waitClosed();
    }
  });

  test('a BDAT chunk a little over the limit is refused at once, then read and discarded; RSET recovers', async () => {
    const c = await session(srv.port);
    await envelope(c);
    c.write('BDAT 80000\r\n');
    assert.equal(await c.reply(), TOO_BIG);
    c.write(Buffer.alloc(80000, 'z'));
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
    await envelope(c);
    const body = 'Subject: after skip\r\n\r\nok\r\n';
    c.write(`BDAT ${body.length} LAST\r\n${body}`);
    assert.match(await c.reply(), QUEUED);
    c.close();
    const stored = await spooledMessages(srv.dataDir);
    assert.equal(
      stored.filter((m) => m.envelope.subject === undefined).length,
      0,
      'the skipped chunk is not queued',
    );
  });

  test('a malformed BDAT count gets 501 5.5.4 and the session goes on', async () => {
    const c = await session(srv.port);
    await envelope(c);
    for (const arg of ['-5', '5x', '0x10', '+5', '5 LAST junk', '']) {
      assert.equal(await c.cmd(`BDAT ${arg}`.trimEnd()), '501 5.5.4 Syntax: BDAT chunk-size [LAST]', arg);
    }
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    c.close();
  });

  // ------------------------------------------------------------------ protocol log

  test('control bytes and invalid UTF-8 in a command are escaped in the protocol log', async () => {
    const c = await session(srv.port);
    c.write(
      Buffer.concat([
        Buffer.from('NOOP \x00\x1b[31mred\x7f\\ ', 'latin1'),
        Buffer.from([0xff, 0xc3, 0x28]),
        Buffer.from(' é\r\n', 'utf8'),
      ]),
    );
    assert.equal(await c.reply(), '250 2.0.0 OK');
    c.close();
    const log = await waitFor('the NOOP line in the protocol log', () => {
      const bytes = receiveLog(srv.dataDir);
      return bytes.includes('31mred') ? bytes : undefined;
    });
    for (const byte of log)
      assert.ok(byte === 0x0a || (byte >= 0x20 && byte !== 0x7f), `byte 0x${byte.toString(16)}`);
    const text = new TextDecoder('utf-8', { fatal: true }).decode(log);
    assert.ok(text.includes(',<,NOOP \\x00\\x1b[31mred\\x7f\\\\ \\xff\\xc3( é\n'), text);
  });
});

describe('virtual server that normalises bare LF', () => {
  let srv: RunningServer;
  before(async () => {
    srv = await startServer({
      host: HOST,
      port: 47202,
      mutate: (org) => {
        org.routingGroups[0].servers[0].virtualServers[0].bareLineFeed = { action: 'normalise' };
      },
    });
  });
  after(async () => {
    await srv.stop();
    cleanup(srv.dir);
  });

  test('bare-LF DATA is stored exactly as a CRLF client would have had it stored; no dot is lost', async () => {
    const stored = 'Subject: same\r\n\r\nline1\r\n.\r\nline3\r\n.dot\r\nx\r\n.\r\ny\r\n.\r\nlast\r\n';
    const sent = {
      lf: 'Subject: same\n\nline1\n.\nline3\n..dot\nx\r\n.\ny\n.\r\nlast\r\n.\r\n',
      crlf: 'Subject: same\r\n\r\nline1\r\n..\r\nline3\r\n..dot\r\nx\r\n..\r\ny\r\n..\r\nlast\r\n.\r\n',
    };
    for (const [label, body] of Object.entries(sent)) {
      const c = await session(srv.port);
      c.write('NOOP\n');
      assert.equal(await c.reply(), '250 2.0.0 OK');
      await envelope(c);
      assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
      c.write(body);
      const id = queueId(await c.reply());
      assert.ok(id, label);
      c.close();
      assert.equal(withoutOwnReceived((await spooledById(srv.dataDir, id))!.message), stored, label);
    }
  });
});
