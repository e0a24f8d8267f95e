import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeaderScan, headerFields } from './header-scan.js';

test('HeaderScan: done at the blank line, across chunks', () => {
  const scan = new HeaderScan();
  scan.feed(Buffer.from('Subject: one\r\nFrom: <a@b.example>\r'));
  assert.equal(scan.done, false);
  scan.feed(Buffer.from('\n\r\nbody\r\n'));
  assert.equal(scan.done, true);
  assert.equal(scan.text(), 'Subject: one\r\nFrom: <a@b.example>');
  scan.feed(Buffer.from('More: ignored\r\n'));
  assert.equal(scan.text(), 'Subject: one\r\nFrom: <a@b.example>');
});

test('HeaderScan: LF line ends, and a message with no header', () => {
  const lf = new HeaderScan();
  lf.feed(Buffer.from('Subject: lf\n\nbody\n'));
  assert.equal(lf.done, true);
  assert.equal(lf.text(), 'Subject: lf');
  const none = new HeaderScan();
  none.feed(Buffer.from('\nbody'));
  assert.equal(none.done, true);
});

test('HeaderScan: gives up after 256 KiB without a blank line', () => {
  const scan = new HeaderScan();
  scan.feed(Buffer.alloc(256 * 1024, 'x'));
  assert.equal(scan.done, false);
  scan.feed(Buffer.from('x'));
  assert.equal(scan.done, true);
});

test('headerFields: unfolds, trims, keeps order, skips lines without a name', () => {
  assert.deepEqual(
    headerFields('Subject: a\r\n folded\r\nX-Empty:\r\nno colon\r\n: nameless\nReceived : old'),
    [
      { name: 'Subject', value: 'a folded' },
      { name: 'X-Empty', value: '' },
      { name: 'Received', value: 'old' },
    ],
  );
});
