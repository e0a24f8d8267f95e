import { test } from 'node:test';
import assert from 'node:assert/strict';
import { admitChunk, DotUnstuffer } from './data-intake.js';

/** Feeds the chunks in turn, as the pump would, carrying unconsumed bytes to the next. */
function unstuffWith(
  normalise: boolean,
  chunks: string[],
): { message: string; rest: string; ended: boolean; bareLineFeed: boolean } {
  const unstuffer = new DotUnstuffer(normalise);
  let message = '';
  let pending = Buffer.alloc(0);
  let ended = false;
  let bareLineFeed = false;
  for (const chunk of chunks) {
    pending = Buffer.concat([pending, Buffer.from(chunk, 'latin1')]);
    if (ended) continue;
    const scan = unstuffer.scan(pending);
    message += Buffer.concat(scan.segments).toString('latin1');
    pending = pending.subarray(scan.consumed);
    ended = scan.ended;
    bareLineFeed ||= scan.bareLineFeed;
  }
  return { message, rest: pending.toString('latin1'), ended, bareLineFeed };
}

function unstuff(...chunks: string[]): { message: string; rest: string; ended: boolean } {
  const { message, rest, ended, bareLineFeed } = unstuffWith(false, chunks);
  assert.equal(
    bareLineFeed,
    /(?<!\r)\n/.test(chunks.join('').slice(0, chunks.join('').length - rest.length)),
  );
  return { message, rest, ended };
}

const normalised = (...chunks: string[]) => unstuffWith(true, chunks);

test('DotUnstuffer: ends at CRLF.CRLF and leaves pipelined commands', () => {
  assert.deepEqual(unstuff('Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n'), {
    message: 'Subject: x\r\n\r\nbody\r\n',
    rest: 'QUIT\r\n',
    ended: true,
  });
});

test('DotUnstuffer: removes the stuffed dot at a line start only', () => {
  assert.deepEqual(unstuff('..one\r\na.b\r\n...\r\n.\r\n'), {
    message: '.one\r\na.b\r\n..\r\n',
    rest: '',
    ended: true,
  });
});

test('DotUnstuffer: bare-LF end markers are message text, their dot kept (no smuggling)', () => {
  const result = unstuff('a\n.\nMAIL FROM:<x@y>\r\n.\r\n');
  assert.equal(result.ended, true);
  assert.equal(result.message, 'a\n.\nMAIL FROM:<x@y>\r\n');
  assert.equal(unstuff('a\r\n.\nb\r\n').ended, false);
  // LF . CRLF: the line before ended in a bare LF.
  assert.deepEqual(unstuff('a\n.\r\nb\r\n.\r\n'), { message: 'a\n.\r\nb\r\n', rest: '', ended: true });
});

test('DotUnstuffer: reports a bare LF, also one whose CR came in the buffer before', () => {
  assert.equal(unstuffWith(false, ['a\r', '\nb\r\n.\r\n']).bareLineFeed, false);
  assert.equal(unstuffWith(false, ['a\r\n', '\nb\r\n.\r\n']).bareLineFeed, true);
  assert.equal(unstuffWith(false, ['\n.\r\n']).bareLineFeed, true);
  assert.equal(unstuffWith(false, ['a\rb\r\n.\r\n']).bareLineFeed, false);
});

test('DotUnstuffer normalising: bare LF is stored as CRLF, as a CRLF client would have sent it', () => {
  const lf = normalised('Subject: x\n\nline1\n.\nline3\n..dot\nx\r\n.\ny\n.\r\nlast\r\n.\r\nQUIT\r\n');
  const crlf = normalised(
    'Subject: x\r\n\r\nline1\r\n..\r\nline3\r\n..dot\r\nx\r\n..\r\ny\r\n..\r\nlast\r\n.\r\nQUIT\r\n',
  );
  const stored = 'Subject: x\r\n\r\nline1\r\n.\r\nline3\r\n.dot\r\nx\r\n.\r\ny\r\n.\r\nlast\r\n';
  assert.deepEqual(lf, { message: stored, rest: 'QUIT\r\n', ended: true, bareLineFeed: true });
  assert.deepEqual(crlf, { message: stored, rest: 'QUIT\r\n', ended: true, bareLineFeed: false });
  // Split anywhere, the same.
  const bytes = 'a\nb\r\n.\n..c\n\r\n.\r\n';
  for (let cut = 1; cut < bytes.length; cut++) {
    const split = normalised(bytes.slice(0, cut), bytes.slice(cut));
    assert.equal(split.message, 'a\r\nb\r\n.\r\n.c\r\n\r\n', `cut at ${cut}`);
    assert.equal(split.ended, true);
  }
});

test('DotUnstuffer: a marker split across chunks waits for its next byte', () => {
  assert.deepEqual(unstuff('body\r\n', '.', '\r', '\nNOOP\r\n'), {
    message: 'body\r\n',
    rest: 'NOOP\r\n',
    ended: true,
  });
  assert.deepEqual(unstuff('body\r', '\n.', '.x\r\n.\r\n'), {
    message: 'body\r\n.x\r\n',
    rest: '',
    ended: true,
  });
});

const LIMITS = { maxMessageSizeKb: 64, maxSessionSizeKb: 1024 } as Parameters<typeof admitChunk>[2];
const TOO_BIG = '552 5.3.4 Message size exceeds fixed maximum message size';

function admission(size: number, message = 0, session = 0, limits = LIMITS): string {
  const verdict = admitChunk(size, { message, session }, limits);
  return verdict.action === 'read'
    ? 'read'
    : `${verdict.action} ${verdict.reply.code} ${verdict.reply.status} ${verdict.reply.text}`;
}

test('admitChunk: within the limits a chunk is read', () => {
  assert.equal(admission(65536), 'read');
  assert.equal(admission(1, 65535), 'read');
  assert.equal(admission(0, 65536), 'read');
});

test('admitChunk: over the message limit, skipped up to 1.5 times it, beyond that the connection closes', () => {
  assert.equal(admission(65537), `skip ${TOO_BIG}`);
  assert.equal(admission(60000, 38304), `skip ${TOO_BIG}`); // 98304 = 1.5 x 64 KiB
  assert.equal(admission(60001, 38304), `close ${TOO_BIG}`);
  assert.equal(admission(50_000_000), `close ${TOO_BIG}`);
  assert.equal(admission(Number('100000000000000000000000')), `close ${TOO_BIG}`);
});

test('admitChunk: over the session limit the connection closes; no limits, only sizes that can be', () => {
  assert.equal(
    admission(30000, 30000, 1_000_000),
    'close 552 5.3.4 Session size exceeds fixed maximum session size',
  );
  const none = { maxMessageSizeKb: null, maxSessionSizeKb: null } as Parameters<typeof admitChunk>[2];
  assert.equal(admission(2 ** 40, 0, 0, none), 'read');
  assert.equal(admission(2 ** 60, 0, 0, none), `close ${TOO_BIG}`);
});
