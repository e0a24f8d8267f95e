// An unresolved recipient of an accepted domain: "Forward all mail with unresolved recipients
// to host" applies to authoritative domains only [003:2588, 2971, 5055].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unresolvedRoute } from './categorizer.js';

const NOT_HERE = 'The e-mail account does not exist at the organization this message was sent to.';

test('authoritative, forward host set: the recipient goes to that host', () => {
  assert.deepEqual(unresolvedRoute(true, 'contoso.com', '[192.0.2.25]'), {
    kind: 'forwardHost',
    host: '[192.0.2.25]',
  });
});

test('authoritative, no forward host: 550 5.1.1', () => {
  assert.deepEqual(unresolvedRoute(true, 'contoso.com'), {
    kind: 'failed',
    code: 550,
    status: '5.1.1',
    text: NOT_HERE,
  });
  assert.equal(unresolvedRoute(true, 'contoso.com', '').kind, 'failed');
});

test('non-authoritative: routed like a remote domain (connector or MX), forward host or not', () => {
  assert.deepEqual(unresolvedRoute(false, 'fourthcoffee.com', '[192.0.2.25]'), {
    kind: 'remote',
    domain: 'fourthcoffee.com',
  });
  assert.deepEqual(unresolvedRoute(false, 'fourthcoffee.com'), {
    kind: 'remote',
    domain: 'fourthcoffee.com',
  });
});
