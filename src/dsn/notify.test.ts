import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dsnFor, memberNotify } from './notify.js';

test('RFC 3461 NOTIFY decides which DSN a recipient is owed', () => {
  const s = 'alice@example.com';
  const table: [Parameters<typeof dsnFor>, string | null][] = [
    [['failure', undefined, s], 'failure'],
    [['delay', undefined, s], 'delay'],
    [['success', undefined, s], null],
    [['failure', ['NEVER'], s], null],
    [['success', ['SUCCESS'], s], 'success'],
    [['failure', ['SUCCESS'], s], null],
    [['delay', ['FAILURE', 'DELAY'], s], 'delay'],
    // The null sender: failures are owed (as badmail), nothing else.
    [['failure', ['NEVER'], ''], 'failure'],
    [['success', ['SUCCESS'], ''], null],
  ];
  for (const [args, expected] of table) assert.equal(dsnFor(...args), expected, JSON.stringify(args));
});

test('members of an expanded group report failures only, unless NEVER', () => {
  assert.equal(memberNotify(null), '["FAILURE"]');
  assert.equal(memberNotify('["SUCCESS","FAILURE"]'), '["FAILURE"]');
  assert.equal(memberNotify('["NEVER"]'), '["NEVER"]');
});
