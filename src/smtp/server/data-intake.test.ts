import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DotUnstuffer } from './data-intake.js';

/** Feeds the chunks in turn, as the pump would, carrying unconsumed bytes to the next. */
function unstuff(...chunks: string[]): { message: string; rest: string; ended: boolean } {
  const unstuffer = new DotUnstuffer();
  let message = '';
  let pending = Buffer.alloc(0);
  let ended = false;
  for (const chunk of chunks) {
    pending = Buffer.concat([pending, Buffer.from(chunk, 'latin1')]);
    if (ended) continue;
    const scan = unstuffer.scan(pending);
    message += Buffer.concat(scan.segments).toString('latin1');
    pending = pending.subarray(scan.consumed);
    ended = scan.ended;
  }
  return { message, rest: pending.toString('latin1'), ended };
}

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

test('DotUnstuffer: bare-LF end markers are message text (no smuggling)', () => {
  const result = unstuff('a\n.\nMAIL FROM:<x@y>\r\n.\r\n');
  assert.equal(result.ended, true);
  assert.equal(result.message, 'a\n\nMAIL FROM:<x@y>\r\n');
  assert.equal(unstuff('a\r\n.\nb\r\n').ended, false);
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
