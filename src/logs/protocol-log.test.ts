import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logText } from './protocol-log.js';

test('logText: printable text and UTF-8 pass unchanged', () => {
  assert.equal(
    logText('MAIL FROM:<kim@fourthcoffee.test> SIZE=100'),
    'MAIL FROM:<kim@fourthcoffee.test> SIZE=100',
  );
  assert.equal(logText(Buffer.from('RCPT TO:<jörg@例え.jp>', 'utf8')), 'RCPT TO:<jörg@例え.jp>');
  assert.equal(logText(Buffer.from('😀 4 bytes', 'utf8')), '😀 4 bytes');
});

test('logText: control bytes, DEL, CR and LF become \\xNN; a backslash is doubled', () => {
  assert.equal(logText('a\x00b\x1b[31mc\x7f\td\r\ne\\f'), 'a\\x00b\\x1b[31mc\\x7f\\x09d\\x0d\\x0ae\\\\f');
  assert.equal(logText(Buffer.from('NOOP \x00\x1f\x7f\\', 'latin1')), 'NOOP \\x00\\x1f\\x7f\\\\');
});

test('logText: bytes that are not UTF-8 become \\xNN, the valid text around them stays', () => {
  const cases: [number[], string][] = [
    [[0x61, 0xff, 0x62], 'a\\xffb'],
    [[0xc3, 0x28], '\\xc3('], // lead byte without its continuation
    [[0xc0, 0xaf], '\\xc0\\xaf'], // overlong "/"
    [[0xe0, 0x80, 0xaf], '\\xe0\\x80\\xaf'], // overlong, three bytes
    [[0xed, 0xa0, 0x80], '\\xed\\xa0\\x80'], // a UTF-16 surrogate
    [[0xf4, 0x90, 0x80, 0x80], '\\xf4\\x90\\x80\\x80'], // above U+10FFFF
    [[0xe2, 0x82], '\\xe2\\x82'], // cut short at the end
    [[0x80, 0xc3, 0xa9], '\\x80é'],
  ];
  for (const [bytes, expected] of cases) assert.equal(logText(Buffer.from(bytes)), expected, bytes.join(' '));
});

test('logText: the result is one line of valid UTF-8 without control bytes, for any input', () => {
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const text = logText(Buffer.concat([every, Buffer.from(every).reverse()]));
  for (const char of text) assert.ok(char >= ' ' && char !== '\x7f', JSON.stringify(char));
  const bytes = Buffer.from(text, 'utf8');
  assert.equal(new TextDecoder('utf-8', { fatal: true }).decode(bytes), text);
});
