// Filter decisions behind the integration tests' findings: the header From: forms and the
// blank custom rejection text [003:5788, 5952-5954].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headerFromAddresses, rejectionText } from '../../src/hygiene/filters.js';

test('header From: every written form yields its address', () => {
  assert.deepEqual(headerFromAddresses('"Kim Akers" <kim@example.com>'), ['kim@example.com']);
  assert.deepEqual(headerFromAddresses('Kim Akers <kim@example.com>'), ['kim@example.com']);
  assert.deepEqual(headerFromAddresses('kim@example.com'), ['kim@example.com']);
  assert.deepEqual(headerFromAddresses('kim@example.com (Kim Akers)'), ['kim@example.com']);
  assert.deepEqual(headerFromAddresses('ted@contoso.com<Ted Bremer>'), ['ted@contoso.com']);
  assert.deepEqual(headerFromAddresses('"x@decoy.test" <Ted@Contoso.com>'), ['Ted@Contoso.com']);
  assert.deepEqual(headerFromAddresses('a@one.test, "B" <b@two.test>'), ['a@one.test', 'b@two.test']);
  assert.deepEqual(headerFromAddresses('"Kim" <"kim.akers"@example.com>'), ['"kim.akers"@example.com']);
  assert.deepEqual(headerFromAddresses('undisclosed-senders:;'), []);
});

test('a blank custom rejection text is the default "%0 has been blocked by %1"', () => {
  assert.equal(rejectionText('', '192.0.2.1', 'RBL', 'rbl.test'), '192.0.2.1 has been blocked by RBL');
  assert.equal(rejectionText('  ', '192.0.2.1', 'RBL', 'rbl.test'), '192.0.2.1 has been blocked by RBL');
});
