import { test } from 'node:test';
import assert from 'node:assert/strict';
import { displayPhrase, originatorAddresses, presentOriginators } from './originator.js';

const message = (head: string, body = 'Body with From: kim@example.com\r\n') =>
  Buffer.from(`Received: from x by y\r\n\tid 1; date\r\n${head}Subject: hi\r\n\r\n${body}`, 'utf8');

test('the From and Sender addresses, each once, folded fields included', () => {
  const m = message(
    'From: "Kim Akers" <Kim@Example.com>,\r\n ted@adatum.test (Ted)\r\nSender: kim@example.com\r\n',
  );
  assert.deepEqual(originatorAddresses(m), ['kim@example.com', 'ted@adatum.test']);
});

test('display names replaced or removed; other mailboxes, fields and the body kept byte for byte', () => {
  const m = message(
    'From: "Kim Akers" <kim@example.com>, "Someone" <x@else.test>\r\nTo: kim@example.com\r\n',
  );
  const out = presentOriginators(
    m,
    new Map([
      ['kim@example.com', null],
      ['nobody@example.com', 'Nobody'],
    ]),
  );
  assert.equal(
    out.toString('utf8'),
    message('From: kim@example.com, "Someone" <x@else.test>\r\nTo: kim@example.com\r\n').toString('utf8'),
  );
  const named = presentOriginators(
    message('from: ted@adatum.test\r\n'),
    new Map([['ted@adatum.test', 'Ted Bremer']]),
  );
  assert.match(
    named.toString('utf8'),
    /\r\nfrom: Ted Bremer <ted@adatum\.test>\r\nSubject: hi\r\n\r\nBody with From: kim@example\.com\r\n$/,
  );
});

test('untouched when no listed address appears, or the field is a group or unbalanced', () => {
  const names = new Map([['kim@example.com', 'Kim Akers']]);
  for (const head of [
    'From: a@b.test\r\n',
    'From: Team: kim@example.com;\r\n',
    'From: "Kim <kim@example.com>\r\n',
  ]) {
    const m = message(head);
    assert.equal(presentOriginators(m, names), m);
  }
  const latin = Buffer.concat([
    Buffer.from('From: kim@example.com\r\nX-Old: '),
    Buffer.from([0xe9]),
    Buffer.from('\r\n\r\nb'),
  ]);
  const out = presentOriginators(latin, names);
  assert.match(out.toString('latin1'), /^From: Kim Akers <kim@example\.com>\r\nX-Old: \xe9\r\n\r\nb$/);
});

test('phrases: atoms plain, specials quoted, non-ASCII encoded', () => {
  assert.equal(displayPhrase('Kim Akers'), 'Kim Akers');
  assert.equal(displayPhrase('Akers, Kim'), '"Akers, Kim"');
  assert.equal(displayPhrase('Say "hi"'), '"Say \\"hi\\""');
  assert.equal(displayPhrase('Zoë'), '=?UTF-8?B?Wm/Dqw==?=');
});
