import { test } from 'node:test';
import assert from 'node:assert/strict';
import { legacyMailboxFolder, mailboxFolder, storeFolder } from './folder-names.js';

test('plain addresses keep the folder they always had', () => {
  for (const a of [
    'alice@example.com',
    'c.jones+lists@example.com',
    'a_b-c@sub.example.com',
    'Bob@Example.COM',
  ]) {
    assert.equal(mailboxFolder(a), legacyMailboxFolder(a), a);
  }
  assert.equal(mailboxFolder('Bob@Example.COM'), 'bob@example.com');
  assert.equal(storeFolder('Mailbox Store'), 'Mailbox_Store');
});

test('other characters are escaped =XX per UTF-8 byte, "=" included', () => {
  assert.equal(mailboxFolder('josé@example.com'), 'jos=C3=A9@example.com');
  assert.equal(mailboxFolder('josè@example.com'), 'jos=C3=A8@example.com');
  assert.equal(mailboxFolder('a=b@example.com'), 'a=3Db@example.com');
  assert.equal(mailboxFolder('a/b@example.com'), 'a=2Fb@example.com');
  assert.equal(mailboxFolder('"a b"@example.com'), '=22a=20b=22@example.com');
  assert.equal(mailboxFolder('.hidden@example.com'), '=2Ehidden@example.com');
  assert.equal(mailboxFolder('..'), '=2E.');
  assert.equal(mailboxFolder('用户@例子.广告'), '=E7=94=A8=E6=88=B7@=E4=BE=8B=E5=AD=90.=E5=B9=BF=E5=91=8A');
});

test('injective on tricky cases, also when the filesystem ignores case', () => {
  const tricky = [
    'josé@example.com',
    'josè@example.com',
    'jose\u0301@example.com', // é decomposed: another address, another folder
    'a=b@example.com',
    'a_b@example.com',
    'a b@example.com',
    'a=3db@example.com',
    'a=3d b@example.com',
    'a__b@example.com',
    'a=_b@example.com',
    '.a@example.com',
    '=2Ea@example.com',
    'x'.repeat(300) + '@example.com',
    'x'.repeat(300) + '@example.org',
    'é'.repeat(100) + '@example.com',
    'é'.repeat(100) + '@example.org',
    '/@example.com',
    '_@example.com',
    '\u0000@example.com',
  ];
  const seen = new Map<string, string>();
  for (const a of tricky) {
    const f = mailboxFolder(a);
    assert.ok(Buffer.byteLength(f) <= 255, `${a}: ${f.length} bytes`);
    assert.match(f, /^[a-z0-9@._+=_-]+$/i, a);
    assert.ok(!f.startsWith('.'), a);
    const key = f.toLowerCase();
    assert.equal(seen.get(key), undefined, `${a} and ${seen.get(key)} share ${f}`);
    seen.set(key, a);
  }
  // The old rule sent these pairs to one folder.
  assert.equal(legacyMailboxFolder('a=b@example.com'), legacyMailboxFolder('a_b@example.com'));
  assert.equal(legacyMailboxFolder('josé@example.com'), legacyMailboxFolder('josè@example.com'));
});

test('case is folded as the directory folds it', () => {
  assert.equal(mailboxFolder('JOSÉ@EXAMPLE.COM'), mailboxFolder('josé@example.com'));
});
