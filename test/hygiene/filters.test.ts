// Filter decisions [003:5058-6256], one by one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addressListMatch,
  blockListMatch,
  dnsblQueryName,
  Filters,
  rejectionText,
  type BlockListRule,
} from '../../src/hygiene/filters.js';
import { greylistDecision, clientNetwork } from '../../src/hygiene/greylist.js';

const rule = (r: Partial<BlockListRule>): BlockListRule => ({
  name: 'Example RBL',
  suffix: 'rbl.test',
  matchMode: 'any',
  codes: [],
  rejectionText: '%0 has been blocked by %1',
  enabled: true,
  ...r,
});

test('DNSBL query names: reversed octets and IPv6 nibbles', () => {
  assert.equal(dnsblQueryName('192.0.2.99', 'rbl.test'), '99.2.0.192.rbl.test');
  assert.equal(dnsblQueryName('::ffff:10.1.2.3', '.rbl.test.'), '3.2.1.10.rbl.test');
  assert.equal(
    dnsblQueryName('2001:db8::1', 'rbl.test'),
    '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.rbl.test',
  );
});

test('match modes: any, listed codes, mask ((x & mask) == mask)', () => {
  assert.equal(blockListMatch(rule({}), ['127.0.0.3']), '127.0.0.3');
  assert.equal(blockListMatch(rule({}), []), undefined);
  assert.equal(blockListMatch(rule({ matchMode: 'codes', codes: ['127.0.0.2'] }), ['127.0.0.3']), undefined);
  assert.equal(
    blockListMatch(rule({ matchMode: 'codes', codes: ['127.0.0.2'] }), ['127.0.0.2']),
    '127.0.0.2',
  );
  const mask = rule({ matchMode: 'mask', mask: '0.0.0.2' });
  assert.equal(blockListMatch(mask, ['127.0.0.2']), '127.0.0.2');
  assert.equal(blockListMatch(mask, ['127.0.0.6']), '127.0.0.6');
  assert.equal(blockListMatch(mask, ['127.0.0.7']), '127.0.0.7');
  assert.equal(blockListMatch(mask, ['127.0.0.4']), undefined);
});

test('custom rejection text: %0 %1 %2 %% and {0} {1} {2}', () => {
  assert.equal(
    rejectionText('%0 has been blocked by %1', '192.0.2.1', 'RBL', 'rbl.test'),
    '192.0.2.1 has been blocked by RBL',
  );
  assert.equal(
    rejectionText('100%% sure: %0 via %2', '192.0.2.1', 'RBL', 'rbl.test'),
    '100% sure: 192.0.2.1 via rbl.test',
  );
  assert.equal(
    rejectionText('{0} is listed on {2} ({1})', '192.0.2.1', 'RBL', 'rbl.test'),
    '192.0.2.1 is listed on rbl.test (RBL)',
  );
});

test('sender and recipient filter syntax: address, *@domain, @domain, display name', () => {
  const list = ['spam@bad.test', '*@worse.test', '@worst.test', '"Kim Akers" <kim@example.com>'];
  assert.ok(addressListMatch(list, 'SPAM@bad.test'));
  assert.ok(addressListMatch(list, 'anyone@worse.test'));
  assert.ok(addressListMatch(list, 'anyone@worst.test'));
  assert.ok(addressListMatch(list, 'kim@example.com'));
  assert.equal(addressListMatch(list, 'ok@bad.test'), undefined);
  assert.equal(addressListMatch(list, 'anyone@sub.worse.test'), undefined);
});

test('accept list wins over deny list; sender filter drop or archive; blank sender', () => {
  const f = new Filters({
    connection: {
      accept: ['192.0.2.0/24'],
      deny: ['192.0.2.0/16', '198.51.100.7'],
      blockLists: [],
      exceptions: ['postmaster@*'],
    },
    sender: { addresses: ['*@spam.test'], filterBlankSender: true, dropConnection: true, archive: false },
    recipient: { blocked: ['ceo@example.com'], filterNotInDirectory: true },
  });
  assert.deepEqual(f.connectionAtMail('192.0.2.5'), { action: 'accept' });
  assert.equal(f.connectionAtMail('198.51.100.7').action, 'reject');
  const s = f.sender('x@spam.test', 'envelope');
  assert.equal(s.action === 'reject' && s.drop, true);
  assert.equal(f.sender('', 'envelope').action, 'reject');
  const header = f.sender('x@spam.test', 'header');
  assert.equal(
    header.action === 'reject' && `${header.code} ${header.status} ${header.text}`,
    '550 5.1.0 Sender Denied',
  );
  assert.equal(f.recipientBlocked('CEO@example.com').action, 'reject');
  const archive = new Filters({ ...f.settings, sender: { ...f.settings.sender, archive: true } });
  assert.equal(archive.sender('x@spam.test', 'envelope').action, 'archive');
});

test('greylisting: defer first, pass after the delay, remember passed triplets', () => {
  const delay = 300_000;
  assert.deepEqual(greylistDecision(undefined, false, 0, delay), { pass: false, retryAfterSeconds: 300 });
  assert.equal(greylistDecision(0, false, 60_000, delay).pass, false);
  assert.equal(greylistDecision(0, false, 300_000, delay).pass, true);
  assert.equal(greylistDecision(0, true, 1, delay).pass, true);
  assert.equal(clientNetwork('192.0.2.77'), '192.0.2.0/24');
});
