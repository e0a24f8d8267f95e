import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countReceivedHeaders } from './headers.js';

test('countReceivedHeaders: counts Received lines in any case', () => {
  const header =
    'Received: from a by b\r\n\tid 1; date\r\nreceived: from c\r\nRECEIVED: from d\r\nSubject: x\r\n';
  assert.equal(countReceivedHeaders(header), 3);
});

test('countReceivedHeaders: stops at the first blank line (CRLF or LF)', () => {
  assert.equal(countReceivedHeaders('Received: one\r\n\r\nReceived: in the body\r\n'), 1);
  assert.equal(countReceivedHeaders('Received: one\nReceived: two\n\nReceived: in the body\n'), 2);
});

test('countReceivedHeaders: no blank line means all of it is header', () => {
  assert.equal(countReceivedHeaders('Received: one\r\nReceived: two'), 2);
});

test('countReceivedHeaders: neither continuation lines nor other fields count', () => {
  assert.equal(countReceivedHeaders('X-Received: one\r\nSubject: Received: two\r\n Received: folded\r\n'), 0);
  assert.equal(countReceivedHeaders(''), 0);
});
