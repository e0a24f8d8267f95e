// The outbound source address binds a connection only to a peer of its own family (an IPv4
// source cannot reach an IPv6 MX).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crlfLines, dotStuff, sourceBinding } from './client.js';

test('the source address binds only connections to a peer of its family', () => {
  assert.deepEqual(sourceBinding('203.0.113.5', '192.0.2.10'), { localAddress: '192.0.2.10' });
  assert.deepEqual(sourceBinding('2001:db8::1', '192.0.2.10'), {});
  assert.deepEqual(sourceBinding('2001:db8::1', '2001:db8::7'), { localAddress: '2001:db8::7' });
  assert.deepEqual(sourceBinding('203.0.113.5', undefined), {});
});

test('over DATA every line ends in CRLF: bare LFs of a BDAT-received message become CRLF, then dots are stuffed', () => {
  const bdat = Buffer.from('Subject: x\r\n\r\nline one\nline two\r\n.\nend\n');
  assert.equal(crlfLines(bdat).toString(), 'Subject: x\r\n\r\nline one\r\nline two\r\n.\r\nend\r\n');
  assert.equal(dotStuff(bdat).toString(), 'Subject: x\r\n\r\nline one\r\nline two\r\n..\r\nend\r\n');
  // A message already in CRLF lines is the same buffer, untouched.
  const clean = Buffer.from('a\r\nb\r\n');
  assert.equal(crlfLines(clean), clean);
  assert.equal(crlfLines(Buffer.from('\nx')).toString(), '\r\nx');
});
