import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scryptSync } from 'node:crypto';
import { hashPassword, isStoredPassword, verifyPassword } from './passwords.js';

test('the stored form is a SCRAM-SHA-256 verifier that checks the password', async () => {
  const stored = await hashPassword('c0rrect horse');
  assert.match(stored, /^SCRAM-SHA-256\$4096:/);
  assert.equal(isStoredPassword(stored), true);
  assert.equal(await verifyPassword('c0rrect horse', stored), true);
  assert.equal(await verifyPassword('c0rrect hors', stored), false);
  assert.match(await hashPassword('x', 8192), /^SCRAM-SHA-256\$8192:/);
  await assert.rejects(hashPassword('bell\u0007'), /SASLprep \(RFC 4013\) prohibits/);
});

test('a scrypt hash written by an earlier version still checks PLAIN and LOGIN', async () => {
  const salt = Buffer.from('0123456789abcdef');
  const key = scryptSync('old password', salt, 32, { N: 16384, r: 8, p: 1 });
  const stored = `scrypt$16384$8$1$${salt.toString('base64')}$${key.toString('base64')}`;
  assert.equal(isStoredPassword(stored), true);
  assert.equal(await verifyPassword('old password', stored), true);
  assert.equal(await verifyPassword('new password', stored), false);
  assert.equal(isStoredPassword('plain text'), false);
  assert.equal(await verifyPassword('plain text', 'plain text'), false);
});
