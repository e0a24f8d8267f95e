// SCRAM-SHA-256 against the test vector of RFC 7677 §3, and the verifier format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkProof,
  formatVerifier,
  isFailure,
  makeVerifier,
  parseVerifier,
  passwordMatches,
  readClientFinal,
  readClientFirst,
  serverFirst,
  type ClientFirst,
  type ClientFinal,
} from './scram.js';

// RFC 7677 §3: user "user", password "pencil".
const CLIENT_FIRST = 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO';
const SERVER_NONCE = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const CLIENT_FINAL =
  'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

const vectorVerifier = () => makeVerifier('pencil', 4096, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));

test('RFC 7677 test vector: server-first, proof accepted, server signature', async () => {
  const v = await vectorVerifier();
  const first = readClientFirst(CLIENT_FIRST) as ClientFirst;
  assert.ok(!isFailure(first));
  assert.equal(first.username, 'user');
  assert.equal(first.gs2Header, 'n,,');
  const sf = serverFirst(first, v, SERVER_NONCE);
  assert.equal(sf, SERVER_FIRST);
  const final = readClientFinal(CLIENT_FINAL, first, sf) as ClientFinal;
  assert.ok(!isFailure(final));
  assert.deepEqual(checkProof(first, sf, final, v), { serverFinal: SERVER_FINAL });
});

test('a wrong proof, a changed nonce or a changed GS2 header is refused', async () => {
  const v = await vectorVerifier();
  const first = readClientFirst(CLIENT_FIRST) as ClientFirst;
  const wrong = CLIENT_FINAL.replace('p=dHzb', 'p=dHzc');
  const final = readClientFinal(wrong, first, SERVER_FIRST) as ClientFinal;
  assert.deepEqual(checkProof(first, SERVER_FIRST, final, v), { failure: 'invalid-proof' });
  assert.deepEqual(readClientFinal(CLIENT_FINAL.replace('$k0,p', '$k1,p'), first, SERVER_FIRST), {
    failure: 'invalid-proof',
  });
  assert.deepEqual(readClientFinal(CLIENT_FINAL.replace('c=biws', 'c=eSws'), first, SERVER_FIRST), {
    failure: 'channel-bindings-dont-match',
  });
  const other = await makeVerifier('pencil', 4096);
  const good = readClientFinal(CLIENT_FINAL, first, SERVER_FIRST) as ClientFinal;
  assert.deepEqual(checkProof(first, SERVER_FIRST, good, other), { failure: 'invalid-proof' });
});

test('client-first: channel binding demanded, extensions, bad names', () => {
  assert.deepEqual(readClientFirst('p=tls-unique,,n=user,r=abc'), {
    failure: 'channel-binding-not-supported',
  });
  assert.deepEqual(readClientFirst('n,,m=ext,n=user,r=abc'), { failure: 'extensions-not-supported' });
  assert.deepEqual(readClientFirst('n,,n=us=er,r=abc'), { failure: 'invalid-username-encoding' });
  assert.deepEqual(readClientFirst('x,,n=user,r=abc'), { failure: 'invalid-encoding' });
  assert.deepEqual(readClientFirst('n,,n=user'), { failure: 'invalid-encoding' });
  const y = readClientFirst('y,a=a=3Db=2Cc,n=a=2Cb,r=abc') as ClientFirst;
  assert.equal(y.gs2Header, 'y,a=a=3Db=2Cc,');
  assert.equal(y.authzid, 'a=b,c');
  assert.equal(y.username, 'a,b');
});

test('the stored form round-trips and checks a PLAIN password (SASLprep applied)', async () => {
  const v = await makeVerifier('I\u00ADX pass', 4096);
  const text = formatVerifier(v);
  assert.match(text, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
  const parsed = parseVerifier(text)!;
  assert.deepEqual(parsed, v);
  assert.equal(await passwordMatches('IX pass', parsed), true, 'soft hyphen is mapped to nothing');
  assert.equal(await passwordMatches('IX pas', parsed), false);
  assert.equal(await passwordMatches('\u0007', parsed), false, 'prohibited input never matches');
  assert.equal(parseVerifier('scrypt$16384$8$1$abc$def'), undefined);
  assert.equal(parseVerifier('SCRAM-SHA-256$4096:abc=$AAAA:AAAA'), undefined);
  await assert.rejects(makeVerifier('x', 100), /iteration count/);
});

test('RFC 7677 keys: the vector password gives the stored key the proof needs', async () => {
  const v = await vectorVerifier();
  const text = formatVerifier(v);
  assert.equal(text.split('$')[1], '4096:W22ZaJ0SNY7soEsUEjb6gQ==');
  assert.equal(await passwordMatches('pencil', v), true);
});
