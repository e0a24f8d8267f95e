import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DirectoryEntry } from '../../directory/directory.js';
import { displayNameFor } from './originators.js';

const user = (name: string, hidden = false) =>
  ({
    kind: 'user',
    name,
    primaryAddress: `${name.toLowerCase()}@example.com`,
    user: { hidden },
  }) as unknown as DirectoryEntry;
const kim = user('Kim Akers');
const agent = user('Agent', true);

test('anonymous mail: directory addresses bare, unless the virtual server resolves it (hidden never)', () => {
  const anonymous = { authenticated: false, resolveAnonymous: false };
  assert.equal(displayNameFor(kim, anonymous), null);
  assert.equal(displayNameFor(undefined, anonymous), undefined);
  const resolving = { authenticated: false, resolveAnonymous: true };
  assert.equal(displayNameFor(kim, resolving), 'Kim Akers');
  assert.equal(displayNameFor(agent, resolving), null);
});

test('authenticated mail: the submitter resolves as itself only', () => {
  assert.equal(
    displayNameFor(kim, { authenticated: true, submitter: kim, resolveAnonymous: false }),
    'Kim Akers',
  );
  assert.equal(
    displayNameFor(agent, { authenticated: true, submitter: agent, resolveAnonymous: false }),
    'Agent',
  );
  assert.equal(displayNameFor(kim, { authenticated: true, submitter: agent, resolveAnonymous: true }), null);
  assert.equal(displayNameFor(kim, { authenticated: true, resolveAnonymous: false }), null);
});
