import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mayRelay, needsRelay, type RelayRights } from './relay-policy.js';

const anonymous: RelayRights = {
  permission: undefined,
  authenticated: false,
  allowAuthenticated: true,
  listMode: 'onlyList',
  clientListed: false,
};

test('mayRelay: an anonymous client relays only from the list ("only the list")', () => {
  assert.equal(mayRelay(anonymous), false);
  assert.equal(mayRelay({ ...anonymous, clientListed: true }), true);
});

test('mayRelay: "all except the list" inverts the list', () => {
  assert.equal(mayRelay({ ...anonymous, listMode: 'allExcept' }), true);
  assert.equal(mayRelay({ ...anonymous, listMode: 'allExcept', clientListed: true }), false);
});

test('mayRelay: authenticated sessions relay when relay.allowAuthenticated', () => {
  const user: RelayRights = { ...anonymous, authenticated: true, permission: 'default' };
  assert.equal(mayRelay(user), true);
  assert.equal(mayRelay({ ...user, allowAuthenticated: false }), false);
  assert.equal(mayRelay({ ...user, allowAuthenticated: false, clientListed: true }), true);
});

test('mayRelay: the user permission decides first, deny over the list, allow without it', () => {
  const user: RelayRights = { ...anonymous, authenticated: true };
  assert.equal(mayRelay({ ...user, permission: 'deny', clientListed: true }), false);
  assert.equal(mayRelay({ ...user, permission: 'deny', listMode: 'allExcept' }), false);
  assert.equal(mayRelay({ ...user, permission: 'allow', allowAuthenticated: false }), true);
});

test('needsRelay: foreign domains do, local ones do not', () => {
  assert.equal(needsRelay({ localPart: 'user' }, false), true);
  assert.equal(needsRelay({ localPart: 'user' }, true), false);
});

test('needsRelay: routing tricks to a local domain do', () => {
  assert.equal(needsRelay({ localPart: 'user%elsewhere.example' }, true), true);
  assert.equal(needsRelay({ localPart: 'elsewhere!user' }, true), true);
  assert.equal(needsRelay({ localPart: '"user@elsewhere.example"' }, true), true);
  assert.equal(needsRelay({ localPart: 'user', sourceRoute: true }, true), true);
  assert.equal(needsRelay({ localPart: 'user', sourceRoute: false }, true), false);
});
