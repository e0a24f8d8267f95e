// Raw-socket tests of the receive path: exact replies on the wire and what lands in the
// spool (SPEC §2). Servers run with their queues held, so accepted mail stays in the spool.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { spooledMessages } from '../helpers/spool.js';
import {
  ehloSession,
  spoolFiles,
  probeFrom,
  queueId,
  sleep,
  spooledById,
  upgradeToTls,
  waitFor,
} from './util.js';

const SENDER = 'kim@fourthcoffee.test';
const QUEUED = /^250 2\.6\.0 <[0-9A-Z]+@mail1\.test\.example> Queued mail for delivery$/;

/** MAIL + RCPT(s) on an open session; asserts each is accepted. */
async function envelope(c: RawSmtp, rcpts: string[] = ['alice@example.com'], mailParams = ''): Promise<void> {
  assert.equal(await c.cmd(`MAIL FROM:<${SENDER}>${mailParams}`), `250 2.1.0 ${SENDER}....Sender OK`);
  for (const r of rcpts) assert.equal(await c.cmd(`RCPT TO:<${r}>`), `250 2.1.5 ${r}`);
}

/** DATA with an already dot-stuffed body; returns the final reply. */
async function data(c: RawSmtp, body: string): Promise<string> {
  assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
  c.write(`${body}\r\n.\r\n`);
  return c.reply();
}

/** The stored message without the Received header this server added. */
function withoutOwnReceived(message: Buffer): Buffer {
  const text = message.toString('latin1');
  const m = /^Received: from [^\r\n]* by mail1\.test\.example [^\r\n]*\r\n\tid [0-9A-Z]+; [^\r\n]*\r\n/.exec(
    text,
  );
  assert.ok(m, `no Received header of ours at the top: ${JSON.stringify(text.slice(0, 200))}`);
  return message.subarray(m[0].length);
}

describe('default virtual server', () => {
  let srv: RunningServer;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.stop();
    cleanup(srv.dir);
  });

  test('BDAT chunks, the last one marked LAST, are stored byte for byte', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c, ['alice@example.com'], ' BODY=BINARYMIME');
    const first = Buffer.from('Subject: chunked\r\nFrom: <kim@fourthcoffee.test>\r\n\r\n');
    // Every byte value, bare CR and LF, NUL, and an SMTP end marker that BDAT must not honour.
    const binary = Buffer.concat([
      Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      Buffer.from('\r\n.\r\n\n.\n\r\0\xff', 'latin1'),
    ]);
    c.write(`BDAT ${first.length}\r\n`);
    c.write(first);
    assert.equal(await c.reply(), `250 2.0.0 ${first.length} octets received`);
    c.write(Buffer.concat([Buffer.from(`BDAT ${binary.length} LAST\r\n`), binary]));
    const done = await c.reply();
    const id = queueId(done);
    assert.ok(id, done);
    assert.match(await c.cmd('QUIT'), /^221 2\.0\.0 /);
    const msg = await spooledById(srv.dataDir, id);
    assert.ok(msg, 'message is in the spool');
    assert.equal(msg.envelope.body, 'BINARYMIME');
    assert.deepEqual(msg.envelope.recipients, [{ address: 'alice@example.com' }]);
    assert.equal(msg.envelope.subject, 'chunked');
    assert.deepEqual(withoutOwnReceived(msg.message), Buffer.concat([first, binary]));
  });

  test('a message large enough to spill to disk keeps Message-ID, Subject and From in its envelope', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c);
    const line = `${'L'.repeat(98)}\r\n`;
    const body = `From: Kim <kim@fourthcoffee.test>\r\nSubject: large\r\nMessage-ID: <large-1@fourthcoffee.test>\r\n\r\n${line.repeat(4000)}`;
    const id = queueId(await data(c, body.slice(0, -2))); // data() adds the final CRLF
    assert.ok(id);
    const msg = await spooledById(srv.dataDir, id);
    assert.ok(msg);
    assert.equal(withoutOwnReceived(msg.message).toString(), body);
    assert.equal(msg.envelope.messageId, '<large-1@fourthcoffee.test>');
    assert.equal(msg.envelope.subject, 'large');
    assert.equal(msg.envelope.headerFrom, 'Kim <kim@fourthcoffee.test>');
    assert.equal(msg.envelope.receivedHeaders, 1);
    c.close();
  });

  test('large messages arriving in many packets are accepted (DATA and BDAT)', async () => {
    const line = `${'P'.repeat(98)}\r\n`;
    const body = Buffer.from(`Subject: packets\r\n\r\n${line.repeat(6000)}`); // ~600 KB
    const pieces = (b: Buffer) =>
      Array.from({ length: Math.ceil(b.length / 65536) }, (_, i) => b.subarray(i * 65536, (i + 1) * 65536));
    const c = await ehloSession(srv.port);
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    for (const p of pieces(Buffer.concat([body, Buffer.from('.\r\n')]))) {
      c.write(p);
      await sleep(1);
    }
    const viaData = queueId(await c.reply());
    assert.ok(viaData);
    await envelope(c);
    c.write(`BDAT ${body.length} LAST\r\n`);
    for (const p of pieces(body)) {
      c.write(p);
      await sleep(1);
    }
    const viaBdat = queueId(await c.reply());
    assert.ok(viaBdat);
    for (const id of [viaData, viaBdat]) {
      const msg = await spooledById(srv.dataDir, id);
      assert.ok(msg, id);
      assert.deepEqual(withoutOwnReceived(msg.message), body);
    }
    c.close();
  });

  test('BDAT pipelined with the next command, and BDAT 0 LAST', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c);
    // Chunk data followed at once by the next command in the same write.
    const chunk = 'Subject: p\r\n\r\nbody\r\n';
    c.write(`BDAT ${chunk.length}\r\n${chunk}BDAT 0 LAST\r\n`);
    assert.equal(await c.reply(), `250 2.0.0 ${chunk.length} octets received`);
    const id = queueId(await c.reply());
    assert.ok(id);
    const msg = await spooledById(srv.dataDir, id);
    assert.equal(withoutOwnReceived(msg!.message).toString(), 'Subject: p\r\n\r\nbody\r\n');
    c.close();
  });

  test('BDAT out of sequence is answered after its chunk is consumed; the session stays in step', async () => {
    const c = await ehloSession(srv.port);
    c.write('BDAT 9\r\nMAIL FROM');
    assert.equal(await c.reply(), '503 5.5.1 Need mail command');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    assert.equal(await c.cmd('BDAT x'), '501 5.5.4 Syntax: BDAT chunk-size [LAST]');
    c.close();
  });

  test('BODY=BINARYMIME refuses DATA', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c, ['alice@example.com'], ' BODY=BINARYMIME');
    assert.equal(await c.cmd('DATA'), '503 5.5.1 BODY=BINARYMIME requires BDAT');
    // The transaction is still open and can use BDAT instead.
    c.write('BDAT 12 LAST\r\nSubject: x\r\n');
    assert.match(await c.reply(), QUEUED);
    c.close();
  });

  test('malformed commands get 500 5.3.3', async () => {
    const c = await ehloSession(srv.port);
    assert.equal(await c.cmd('FOO bar'), '500 5.3.3 Unrecognized command');
    assert.equal(await c.cmd(''), '500 5.3.3 Unrecognized command');
    assert.equal(await c.cmd('MAILFROM:<kim@fourthcoffee.test>'), '500 5.3.3 Unrecognized command');
    assert.equal(await c.cmd('MAIL <kim@fourthcoffee.test>'), '501 5.5.4 Syntax: MAIL FROM:<address>');
    assert.equal(await c.cmd('RCPT alice@example.com'), '503 5.5.1 Need mail command');
    assert.equal(await c.cmd('EHLO'), '501 5.5.4 Syntax: EHLO hostname');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    c.close();
  });

  test('an over-long command line gets 500 5.5.2 and the session goes on', async () => {
    const c = await ehloSession(srv.port);
    // 2048 octets with CRLF is the configured maximum: accepted. One more is not.
    const atLimit = `NOOP ${'x'.repeat(2048 - 'NOOP '.length - 2)}`;
    assert.equal(await c.cmd(atLimit), '250 2.0.0 OK');
    assert.equal(await c.cmd(`${atLimit}y`), '500 5.5.2 Line too long');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    // A very long line arriving in pieces: one reply, and the tail is not read as a command.
    c.write(`NOOP ${'a'.repeat(5000)}`);
    await sleep(50);
    c.write(`${'b'.repeat(5000)} QUIT\r\n`);
    assert.equal(await c.reply(), '500 5.5.2 Line too long');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    c.close();
  });

  test('commands out of sequence get 503 5.5.1', async () => {
    const c = await RawSmtp.connect(srv.port);
    assert.match(await c.reply(), /^220 /);
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}>`), '503 5.5.1 Send hello first');
    assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '503 5.5.1 Send hello first');
    assert.equal(await c.cmd('DATA'), '503 5.5.1 Send hello first');
    assert.match(await c.cmd('EHLO client.test'), /^250-/);
    assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '503 5.5.1 Need mail command');
    assert.equal(await c.cmd('DATA'), '503 5.5.1 Need mail command');
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}>`), `250 2.1.0 ${SENDER}....Sender OK`);
    assert.equal(await c.cmd('DATA'), '503 5.5.1 Need rcpt command');
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}>`), '503 5.5.1 Sender already specified');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
    assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '503 5.5.1 Need mail command');
    c.close();
  });

  test('bad sender addresses get 501 5.1.7, bad recipients 501 5.1.3', async () => {
    const c = await ehloSession(srv.port);
    for (const bad of [
      'kim',
      'kim@@fourthcoffee.test',
      'kim@',
      '@fourthcoffee.test',
      'kim@bad_domain..test',
    ]) {
      assert.equal(await c.cmd(`MAIL FROM:<${bad}>`), '501 5.1.7 Invalid address', bad);
    }
    assert.equal(await c.cmd('MAIL FROM:<>'), '250 2.1.0 <>....Sender OK');
    for (const bad of [
      '',
      'alice',
      'alice@',
      'al ice@example.com',
      'alice@-example-.com',
      'alice@exa..mple.com',
    ]) {
      assert.equal(await c.cmd(`RCPT TO:<${bad}>`), '501 5.1.3 Invalid address', bad);
    }
    assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
    c.close();
  });

  test('a UTF-8 address needs SMTPUTF8 (553 5.6.7); with it, it is accepted', async () => {
    const c = await ehloSession(srv.port);
    assert.equal(
      await c.cmd('MAIL FROM:<josé@fourthcoffee.test>'),
      '553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter',
    );
    assert.equal(
      await c.cmd('MAIL FROM:<josé@fourthcoffee.test> SMTPUTF8 BODY=8BITMIME'),
      '250 2.1.0 josé@fourthcoffee.test....Sender OK',
    );
    assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
    c.close();
  });

  test('unauthenticated relay is refused with 550 5.7.1', async () => {
    const c = await ehloSession(srv.port);
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}>`), `250 2.1.0 ${SENDER}....Sender OK`);
    assert.equal(
      await c.cmd('RCPT TO:<bob@external.test>'),
      '550 5.7.1 Unable to relay for bob@external.test',
    );
    assert.equal(await c.cmd('DATA'), '554 5.5.1 No valid recipients');
    c.close();
  });

  test('AUTH before STARTTLS is refused with 538 5.7.11 and not offered', async () => {
    const c = await RawSmtp.connect(srv.port);
    await c.reply();
    const ehlo = await c.cmd('EHLO client.test');
    assert.match(ehlo, /^250-STARTTLS$/m);
    assert.doesNotMatch(ehlo, /AUTH/);
    const plain = Buffer.from('\0alice@example.com\0whatever').toString('base64');
    const refused = '538 5.7.11 Encryption required for requested authentication mechanism';
    assert.equal(await c.cmd(`AUTH PLAIN ${plain}`), refused);
    assert.equal(await c.cmd('AUTH LOGIN'), refused);
    assert.equal(await c.cmd('AUTH CRAM-MD5'), '504 5.5.4 Unrecognized authentication type');
    c.close();
  });

  test('STARTTLS discards commands pipelined after it and restarts the session', async () => {
    const c = await ehloSession(srv.port);
    // RFC 3207 §4.2: nothing sent in the clear after STARTTLS may be acted on inside TLS.
    c.write('STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n');
    assert.equal(await c.reply(), '220 2.0.0 SMTP server ready');
    const s = await upgradeToTls(c);
    assert.equal(await s.cmd(`MAIL FROM:<${SENDER}>`), '503 5.5.1 Send hello first');
    const ehlo = await s.cmd('EHLO client.test');
    assert.match(ehlo, /^250-AUTH LOGIN PLAIN$/m);
    assert.doesNotMatch(ehlo, /STARTTLS/);
    assert.equal(await s.cmd('STARTTLS'), '503 5.5.1 TLS already active');
    assert.equal(await s.cmd('AUTH PLAIN !!!'), '501 5.5.2 Cannot decode response');
    assert.equal(await s.cmd('AUTH LOGIN'), '334 VXNlcm5hbWU6');
    assert.equal(await s.cmd('*'), '501 5.7.0 Authentication cancelled');
    const wrong = Buffer.from('\0alice@example.com\0wrong').toString('base64');
    assert.equal(await s.cmd(`AUTH PLAIN ${wrong}`), '535 5.7.8 Authentication credentials invalid');
    // Encrypted but anonymous: still no relay.
    assert.equal(await s.cmd(`MAIL FROM:<${SENDER}>`), `250 2.1.0 ${SENDER}....Sender OK`);
    assert.equal(
      await s.cmd('RCPT TO:<bob@external.test>'),
      '550 5.7.1 Unable to relay for bob@external.test',
    );
    assert.equal(await s.cmd('RCPT TO:<Postmaster>'), '250 2.1.5 Postmaster');
    const id = queueId(await data(s, 'Subject: tls\r\n\r\nx'));
    assert.ok(id);
    const msg = await spooledById(srv.dataDir, id);
    assert.equal(msg?.envelope.client.tls, true);
    assert.match(
      msg!.message.toString(),
      /^Received: from client\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example with ESMTPS\r\n/,
    );
    s.close();
  });

  test('message size: a body over the limit while data streams gets 552 5.3.4 and nothing is queued', async () => {
    // Default limit 4,096 KB is announced.
    const c = await RawSmtp.connect(srv.port);
    await c.reply();
    assert.match(await c.cmd('EHLO client.test'), /^250-SIZE 4194304$/m);
    assert.equal(
      await c.cmd(`MAIL FROM:<${SENDER}> SIZE=${4096 * 1024 + 1}`),
      '552 5.3.4 Message size exceeds fixed maximum message size',
    );
    assert.equal(
      await c.cmd(`MAIL FROM:<${SENDER}> SIZE=${4096 * 1024}`),
      `250 2.1.0 ${SENDER}....Sender OK`,
    );
    c.close();
  });

  test('hop count: more than 15 Received headers gets 554 5.4.6', async () => {
    const received = (n: number) =>
      Array.from(
        { length: n },
        (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000`,
      ).join('\r\n');
    const c = await ehloSession(srv.port);
    await envelope(c);
    // With ours, 15 incoming make 16: a loop.
    assert.equal(
      await data(c, `${received(15)}\r\nSubject: loop\r\n\r\nbody`),
      '554 5.4.6 Hop count exceeded - possible mail loop',
    );
    await envelope(c);
    const ok = await data(c, `${received(14)}\r\nSubject: fine\r\n\r\nbody`);
    const id = queueId(ok);
    assert.ok(id, ok);
    const spooled = await spooledMessages(srv.dataDir);
    assert.equal(spooled.filter((m) => m.envelope.subject === 'loop').length, 0);
    const msg = spooled.find((m) => m.envelope.id === id)!;
    assert.equal((msg.message.toString().match(/^Received:/gm) ?? []).length, 15);
    assert.equal(msg.envelope.receivedHeaders, 15);
    c.close();
  });

  test('DSN parameters RET, ENVID, NOTIFY and ORCPT are kept in the spooled envelope', async () => {
    const c = await ehloSession(srv.port);
    assert.match(await c.cmd('EHLO client.test'), /^250-DSN$/m);
    assert.equal(
      await c.cmd(`MAIL FROM:<${SENDER}> RET=HDRS ENVID=QQ+2B314`),
      `250 2.1.0 ${SENDER}....Sender OK`,
    );
    assert.equal(
      await c.cmd('RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+2Bold@example.com'),
      '250 2.1.5 alice@example.com',
    );
    assert.equal(
      await c.cmd('RCPT TO:<postmaster@example.com> NOTIFY=NEVER'),
      '250 2.1.5 postmaster@example.com',
    );
    assert.equal(
      await c.cmd('RCPT TO:<alice@example.com> NOTIFY=NEVER,SUCCESS'),
      '501 5.5.4 Invalid NOTIFY parameter',
    );
    assert.equal(await c.cmd('RCPT TO:<alice@example.com> FOO=1'), '555 5.5.4 Unsupported option: FOO');
    const id = queueId(await data(c, 'Subject: dsn\r\n\r\nbody'));
    assert.ok(id);
    const msg = await spooledById(srv.dataDir, id);
    assert.ok(msg);
    assert.equal(msg.envelope.ret, 'HDRS');
    assert.equal(msg.envelope.envid, 'QQ+314');
    assert.deepEqual(msg.envelope.recipients, [
      { address: 'alice@example.com', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;alice+old@example.com' },
      { address: 'postmaster@example.com', notify: ['NEVER'] },
    ]);
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}> RET=MAYBE`), '501 5.5.4 Invalid RET parameter');
    c.close();
  });

  test('VRFY is off by default and answers 252', async () => {
    const c = await RawSmtp.connect(srv.port);
    await c.reply();
    assert.doesNotMatch(await c.cmd('EHLO client.test'), /VRFY/);
    assert.equal(
      await c.cmd('VRFY alice'),
      '252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery',
    );
    assert.equal(
      await c.cmd('VRFY nobody@example.com'),
      '252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery',
    );
    assert.equal(await c.cmd('EXPN staff'), '502 5.3.3 EXPN is not available');
    c.close();
  });

  test('ETRN, TURN and ATRN', async () => {
    const c = await RawSmtp.connect(srv.port);
    await c.reply();
    assert.equal(await c.cmd('ETRN example.com'), '503 5.5.1 Send hello first');
    const ehlo = await c.cmd('EHLO client.test');
    assert.match(ehlo, /^250-ETRN$/m);
    assert.match(ehlo, /^250-ATRN$/m);
    assert.match(ehlo, /^250-TURN$/m);
    // RFC 1985: no connector holds mail for remote triggered delivery here.
    const notHeld = '459 4.7.0 Node example.com not allowed: no queue is held for it';
    assert.equal(await c.cmd('ETRN example.com'), notHeld);
    assert.equal(await c.cmd('ETRN @example.com'), notHeld);
    assert.equal(await c.cmd('ETRN #somequeue'), '458 4.3.0 Unable to queue messages for node #somequeue');
    assert.equal(await c.cmd('ETRN'), '501 5.5.4 Syntax: ETRN [@#]domain');
    assert.equal(await c.cmd('ATRN example.com'), '530 5.7.0 Authentication required');
    assert.equal(await c.cmd('TURN'), '530 5.7.0 Authentication required');
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}>`), `250 2.1.0 ${SENDER}....Sender OK`);
    assert.equal(await c.cmd('ETRN example.com'), '503 5.5.1 ETRN not allowed during a mail transaction');
    c.close();
  });

  test('PIPELINING: MAIL, RCPT, RCPT, DATA in one write are answered in order', async () => {
    const c = await RawSmtp.connect(srv.port);
    await c.reply();
    assert.match(await c.cmd('EHLO client.test'), /^250-PIPELINING$/m);
    c.write(
      `MAIL FROM:<${SENDER}>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<bob@external.test>\r\n` +
        'RCPT TO:<postmaster@example.com>\r\nDATA\r\n',
    );
    assert.equal(await c.reply(), `250 2.1.0 ${SENDER}....Sender OK`);
    assert.equal(await c.reply(), '250 2.1.5 alice@example.com');
    assert.equal(await c.reply(), '550 5.7.1 Unable to relay for bob@external.test');
    assert.equal(await c.reply(), '250 2.1.5 postmaster@example.com');
    assert.equal(await c.reply(), '354 Start mail input; end with <CRLF>.<CRLF>');
    // The end of data, a second transaction and QUIT in one write as well.
    c.write(
      `Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<${SENDER}>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n`,
    );
    const id1 = queueId(await c.reply());
    assert.ok(id1);
    assert.equal(await c.reply(), `250 2.1.0 ${SENDER}....Sender OK`);
    assert.equal(await c.reply(), '250 2.1.5 alice@example.com');
    assert.equal(await c.reply(), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n');
    const id2 = queueId(await c.reply());
    assert.ok(id2);
    assert.match(await c.reply(), /^221 2\.0\.0 /);
    await c.waitClosed();
    const one = await spooledById(srv.dataDir, id1);
    const two = await spooledById(srv.dataDir, id2);
    assert.deepEqual(
      one?.envelope.recipients.map((r) => r.address),
      ['alice@example.com', 'postmaster@example.com'],
    );
    assert.equal(withoutOwnReceived(one!.message).toString(), 'Subject: one\r\n\r\nfirst\r\n');
    assert.equal(withoutOwnReceived(two!.message).toString(), 'Subject: two\r\n\r\nsecond\r\n');
  });

  test('dot-stuffing: a line starting with ".." is stored with one "."', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write('Subject: dots\r\n\r\n..leading dot\r\n..\r\n...three\r\nmiddle . dot\r\n.');
    // The end marker split over several packets.
    await sleep(30);
    c.write('\r');
    await sleep(30);
    c.write('\n');
    const id = queueId(await c.reply());
    assert.ok(id);
    const msg = await spooledById(srv.dataDir, id);
    assert.equal(
      withoutOwnReceived(msg!.message).toString(),
      'Subject: dots\r\n\r\n.leading dot\r\n.\r\n..three\r\nmiddle . dot\r\n',
    );
    c.close();
  });

  for (const [label, size] of [
    ['a small message', 2_000],
    ['a message large enough to spill to disk', 700_000],
  ] as const) {
    test(`a client that vanishes mid-DATA leaves nothing queued (${label})`, async () => {
      const before = await spooledMessages(srv.dataDir);
      const c = await ehloSession(srv.port);
      await envelope(c);
      assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
      const line = `${'v'.repeat(98)}\r\n`;
      c.write(`Subject: vanishing\r\n\r\n${line.repeat(Math.ceil(size / line.length))}`);
      if (size > 256 * 1024) {
        // Large enough that the server has started writing the file: the case to clean up.
        await waitFor('the partial file to appear', () =>
          spoolFiles(srv.dataDir).length > before.length ? true : undefined,
        );
      } else {
        await sleep(100);
      }
      c.close();
      // The partial file (if any) must be gone, not just ignored.
      await waitFor('the partial message to be removed', async () => {
        const files = spoolFiles(srv.dataDir);
        return files.length === before.length ? files : undefined;
      });
      await sleep(200);
      assert.equal(spoolFiles(srv.dataDir).length, before.length);
      const after = await spooledMessages(srv.dataDir);
      assert.equal(after.filter((m) => m.envelope.subject === 'vanishing').length, 0);
      // The server carries on.
      const d = await ehloSession(srv.port);
      assert.equal(await d.cmd('NOOP'), '250 2.0.0 OK');
      d.close();
    });
  }

  test('clients vanishing at many points of a spilling DATA leave no file behind', async () => {
    const before = spoolFiles(srv.dataDir);
    const line = `${'w'.repeat(98)}\r\n`;
    const payload = `Subject: vanishing\r\n\r\n${line.repeat(3000)}`; // ~300 KB, spills to disk
    for (let i = 0; i < 60; i++) {
      const c = await ehloSession(srv.port);
      c.write(`MAIL FROM:<${SENDER}>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n`);
      await c.reply();
      await c.reply();
      assert.equal(await c.reply(), '354 Start mail input; end with <CRLF>.<CRLF>');
      c.write(payload);
      await sleep(i % 3);
      c.close();
    }
    const left = await waitFor('aborted spool files to be removed', async () => {
      await sleep(100);
      const files = spoolFiles(srv.dataDir);
      return files.length === before.length ? files : undefined;
    }).catch(() => spoolFiles(srv.dataDir));
    assert.deepEqual(left, before);
  });
});

describe('virtual server with small message limits', () => {
  let srv: RunningServer;
  before(async () => {
    srv = await startServer({
      mutate: (org) => {
        org.routingGroups[0].servers[0].virtualServers[0].messages = {
          maxMessageSizeKb: 2,
          maxRecipientsPerMessage: 2,
          maxMessagesPerConnection: 2,
        };
      },
    });
  });
  after(async () => {
    await srv.stop();
    cleanup(srv.dir);
  });

  test('SIZE= over the limit at MAIL gets 552 5.3.4', async () => {
    const c = await RawSmtp.connect(srv.port);
    await c.reply();
    assert.match(await c.cmd('EHLO client.test'), /^250-SIZE 2048$/m);
    assert.equal(
      await c.cmd(`MAIL FROM:<${SENDER}> SIZE=2049`),
      '552 5.3.4 Message size exceeds fixed maximum message size',
    );
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}> SIZE=abc`), '501 5.5.4 Invalid SIZE parameter');
    assert.equal(await c.cmd(`MAIL FROM:<${SENDER}> SIZE=2048`), `250 2.1.0 ${SENDER}....Sender OK`);
    c.close();
  });

  test('a message growing over the limit while data streams gets 552 5.3.4 (DATA and BDAT)', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c);
    const big = `Subject: too big\r\n\r\n${'z'.repeat(78)}\r\n`.repeat(40); // ~4 KB
    assert.equal(await data(c, big), '552 5.3.4 Message size exceeds fixed maximum message size');
    // The session is still usable, and a small message is accepted.
    await envelope(c);
    assert.match(await data(c, 'Subject: small\r\n\r\nok'), QUEUED);
    // BDAT: a chunk that takes the message over the limit.
    await envelope(c);
    const chunk = Buffer.alloc(1500, 'b');
    c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length}\r\n`), chunk]));
    assert.equal(await c.reply(), `250 2.0.0 ${chunk.length} octets received`);
    c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length}\r\n`), chunk]));
    assert.equal(await c.reply(), '552 5.3.4 Message size exceeds fixed maximum message size');
    c.write(Buffer.concat([Buffer.from('BDAT 4 LAST\r\n'), Buffer.from('tail')]));
    assert.equal(await c.reply(), '503 5.5.1 Previous BDAT failed; send RSET');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
    c.close();
    const spooled = await spooledMessages(srv.dataDir);
    assert.equal(spooled.filter((m) => m.envelope.subject === 'too big').length, 0);
    assert.equal(spooled.filter((m) => m.envelope.subject === 'small').length, 1);
    assert.equal(
      spooled.filter((m) => m.envelope.subject === undefined).length,
      0,
      'the oversize BDAT message is not queued',
    );
  });

  test('too many recipients gets 452 4.5.3; the accepted ones are kept', async () => {
    const c = await ehloSession(srv.port);
    await envelope(c, ['alice@example.com', 'postmaster@example.com']);
    assert.equal(await c.cmd('RCPT TO:<alice2@example.com>'), '452 4.5.3 Too many recipients');
    const id = queueId(await data(c, 'Subject: two rcpts\r\n\r\nbody'));
    assert.ok(id);
    const msg = await spooledById(srv.dataDir, id);
    assert.deepEqual(
      msg?.envelope.recipients.map((r) => r.address),
      ['alice@example.com', 'postmaster@example.com'],
    );
    c.close();
  });

  test('messages per connection: the next MAIL after the limit gets 421 and the connection closes', async () => {
    const c = await ehloSession(srv.port);
    for (let i = 0; i < 2; i++) {
      await envelope(c);
      assert.match(await data(c, `Subject: per connection ${i}\r\n\r\nbody`), QUEUED);
    }
    assert.equal(
      await c.cmd(`MAIL FROM:<${SENDER}>`),
      '421 4.7.0 mail1.test.example Too many messages for this connection, closing transmission channel',
    );
    await c.waitClosed();
    // A new connection may send again.
    const d = await ehloSession(srv.port);
    await envelope(d);
    assert.match(await data(d, 'Subject: per connection 2\r\n\r\nbody'), QUEUED);
    d.close();
  });
});

describe('virtual server with connection control and a connection limit', () => {
  let srv: RunningServer;
  before(async () => {
    srv = await startServer({
      mutate: (org) => {
        const vs = org.routingGroups[0].servers[0].virtualServers[0];
        vs.connectionControl = { mode: 'allExcept', list: ['127.0.0.2', '127.0.0.16/255.255.255.240'] };
        vs.connections = { maxInbound: 2 };
      },
    });
  });
  after(async () => {
    await srv.stop();
    cleanup(srv.dir);
  });

  // The server forgets a closed client a moment after it closed: a connection limit of 2 may
  // still count the previous test's clients, so admission waits for a banner (bounded).
  const admittedFrom = (ip: string) =>
    waitFor(`a banner for ${ip}`, async () => {
      const r = await probeFrom(srv.port, ip);
      return r.received.startsWith('421 4.3.2 ') ? undefined : r;
    });
  const admitted = () =>
    waitFor('a session within the connection limit', async () => {
      const c = await RawSmtp.connect(srv.port);
      const banner = await c.reply();
      if (banner.startsWith('220 ')) return c;
      await c.waitClosed();
      return undefined;
    });

  test('a client on the deny list is dropped at connect without a banner', async () => {
    for (const ip of ['127.0.0.2', '127.0.0.17', '127.0.0.31']) {
      const denied = await probeFrom(srv.port, ip);
      assert.equal(denied.received, '', ip);
      assert.equal(denied.closedByServer, true, ip);
    }
    for (const ip of ['127.0.0.3', '127.0.0.32', '127.0.0.1']) {
      const allowed = await admittedFrom(ip);
      assert.match(allowed.received, /^220 mail1\.test\.example /, ip);
    }
  });

  test('connections over maxInbound get 421 4.3.2 and are closed', async () => {
    const a = await admitted();
    const b = await admitted();
    const c = await RawSmtp.connect(srv.port);
    assert.equal(await c.reply(), '421 4.3.2 mail1.test.example Service not available, too many connections');
    await c.waitClosed();
    assert.match(await a.cmd('QUIT'), /^221 /);
    await a.waitClosed();
    // Once a slot is free, a new client gets in.
    const d = await admitted();
    assert.equal(await d.cmd('NOOP'), '250 2.0.0 OK');
    d.close();
    b.close();
  });
});
