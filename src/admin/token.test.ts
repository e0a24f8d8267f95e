import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bearerToken, tokenMatches } from './token.js';

test('tokenMatches: equal tokens only, whatever their lengths', () => {
  assert.equal(tokenMatches('s3cret-token', 's3cret-token'), true);
  assert.equal(tokenMatches('s3cret-token', 's3cret-tokeN'), false);
  assert.equal(tokenMatches('s3cret', 's3cret-token'), false, 'a prefix is not the token');
  assert.equal(tokenMatches('s3cret-token-and-more', 's3cret-token'), false);
  assert.equal(tokenMatches('', ''), false, 'an empty token never matches');
  assert.equal(tokenMatches('x', ''), false);
  assert.equal(tokenMatches('tökén', 'tökén'), true);
});

test('bearerToken: the token of a Bearer header', () => {
  assert.equal(bearerToken('Bearer abc.DEF-123'), 'abc.DEF-123');
  assert.equal(bearerToken('bearer abc'), 'abc');
  assert.equal(bearerToken('Bearer '), undefined);
  assert.equal(bearerToken('Basic YWxhZGRpbjpvcGVuc2VzYW1l'), undefined);
  assert.equal(bearerToken(undefined), undefined);
  assert.equal(bearerToken('Bearer a configured token'), 'a configured token');
});
