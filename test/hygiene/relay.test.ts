// The relay battery, driven with swaks: an unauthenticated client outside the relay list may
// send only to the organisation's own domains, and no addressing trick (percent hack, bang
// path, quoted "@", source route, IP literal) turns that into relay [003:4143-4153, SPEC §2].
// Authenticated clients and the relay list may relay.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { RunningServer } from '../helpers/server.js';
import { hashPassword } from '../../src/directory/passwords.js';
import { replyTo, sessionFrom, startServers, stopServers, swaks, SWAKS } from './support.js';

const PASSWORD = 'relay-test; s3cret';
const OUTSIDER = '127.0.0.1';
const RELAY_LISTED = '127.0.0.5';

let srv: RunningServer;

before(async () => {
  const passwordHash = await hashPassword(PASSWORD);
  [srv] = await startServers([
    (org) => {
      org.directory.users[0].passwordHash = passwordHash;
      org.routingGroups[0].servers[0].virtualServers[0].relay = { list: [RELAY_LISTED] };
    },
  ]);
});

after(async () => {
  await stopServers([srv]);
});

/** MAIL and RCPT replies of one swaks session that quits after RCPT. */
async function attempt(
  from: string,
  to: string,
  extra: string[] = [],
): Promise<{ code: number | null; mail?: string; rcpt?: string; out: string }> {
  const r = await swaks(srv.port, ['--quit-after', 'RCPT', '--from', from, '--to', to, ...extra]);
  return { code: r.code, mail: replyTo(r.out, 'MAIL FROM:'), rcpt: replyTo(r.out, 'RCPT TO:'), out: r.out };
}

describe(
  'relay battery (swaks, unauthenticated, outside the relay list)',
  { skip: !existsSync(SWAKS) && 'swaks is not installed' },
  () => {
    const refused: [string, string, string][] = [
      ['plain external recipient', 'bob@external.test', '550 5.7.1 Unable to relay for bob@external.test'],
      [
        'percent hack',
        'user%external.test@example.com',
        '550 5.7.1 Unable to relay for user%external.test@example.com',
      ],
      [
        'bang path',
        'external.test!user@example.com',
        '550 5.7.1 Unable to relay for external.test!user@example.com',
      ],
      [
        'quoted local part with @',
        '"user@external.test"@example.com',
        '550 5.7.1 Unable to relay for "user@external.test"@example.com',
      ],
      ['source route', '@example.com:user@external.test', '550 5.7.1 Unable to relay for user@external.test'],
      ['IP-literal domain', 'user@[127.0.0.9]', '550 5.7.1 Unable to relay for user@[127.0.0.9]'],
      ['local domain with a trailing dot (syntax)', 'user@example.com.', '501 5.1.3 Invalid address'],
      ['external domain with a trailing dot (syntax)', 'bob@external.test.', '501 5.1.3 Invalid address'],
    ];
    for (const [what, to, expected] of refused) {
      test(`${what}: ${to} → ${expected}`, async () => {
        const r = await attempt('kim@fourthcoffee.test', to);
        assert.equal(r.mail, '250 2.1.0 kim@fourthcoffee.test....Sender OK', r.out);
        assert.equal(r.rcpt, expected, r.out);
        // swaks exits 24 when the server refuses every recipient.
        assert.equal(r.code, 24, r.out);
      });
    }

    test('the local domain in another case is local: alice@EXAMPLE.COM is accepted', async () => {
      const r = await attempt('kim@fourthcoffee.test', 'alice@EXAMPLE.COM');
      assert.equal(r.rcpt, '250 2.1.5 alice@EXAMPLE.COM', r.out);
      assert.equal(r.code, 0, r.out);
      // …and so is the other case of the percent hack refused.
      const trick = await attempt('kim@fourthcoffee.test', 'USER%EXTERNAL.TEST@EXAMPLE.COM');
      assert.equal(trick.rcpt, '550 5.7.1 Unable to relay for USER%EXTERNAL.TEST@EXAMPLE.COM', trick.out);
    });

    test('empty MAIL FROM (<>) does not open relay', async () => {
      const r = await attempt('<>', 'bob@external.test');
      assert.match(r.out, /^ -> MAIL FROM:<>$/m);
      assert.equal(r.mail, '250 2.1.0 <>....Sender OK', r.out);
      assert.equal(r.rcpt, '550 5.7.1 Unable to relay for bob@external.test', r.out);
      assert.equal(r.code, 24, r.out);
    });

    test('bracket-less MAIL FROM (and RCPT TO) with an external recipient is refused', async () => {
      // swaks always writes angle brackets; this one is raw.
      const c = await sessionFrom(srv.port, OUTSIDER);
      try {
        assert.equal(
          await c.cmd('MAIL FROM:kim@fourthcoffee.test'),
          '250 2.1.0 kim@fourthcoffee.test....Sender OK',
        );
        assert.equal(
          await c.cmd('RCPT TO:<bob@external.test>'),
          '550 5.7.1 Unable to relay for bob@external.test',
        );
        assert.equal(
          await c.cmd('RCPT TO:bob@external.test'),
          '550 5.7.1 Unable to relay for bob@external.test',
        );
        assert.equal(
          await c.cmd('RCPT TO:user%external.test@example.com'),
          '550 5.7.1 Unable to relay for user%external.test@example.com',
        );
        assert.equal(await c.cmd('DATA'), '554 5.5.1 No valid recipients');
      } finally {
        c.close();
      }
    });

    test('STARTTLS without AUTH is still unauthenticated: relay refused inside TLS', async () => {
      const r = await attempt('kim@fourthcoffee.test', 'bob@external.test', ['--tls']);
      assert.equal(r.rcpt, '550 5.7.1 Unable to relay for bob@external.test', r.out);
    });

    test('an authenticated client (AUTH PLAIN over STARTTLS) relays to the external recipient', async () => {
      const r = await attempt('alice@example.com', 'bob@external.test', [
        '--tls',
        '--auth',
        'PLAIN',
        '--auth-user',
        'alice@example.com',
        '--auth-password',
        PASSWORD,
      ]);
      assert.match(r.out, /^<~ {2}235 2\.7\.0 Authentication successful\.$/m);
      assert.equal(r.rcpt, '250 2.1.5 bob@external.test', r.out);
      assert.equal(r.code, 0, r.out);
    });

    test('a wrong password does not authenticate, so no relay', async () => {
      const r = await swaks(srv.port, [
        '--tls',
        '--auth',
        'LOGIN',
        '--auth-user',
        'alice@example.com',
        '--auth-password',
        'wrong',
        '--from',
        'alice@example.com',
        '--to',
        'bob@external.test',
      ]);
      assert.match(r.out, /535 5\.7\.8 Authentication credentials invalid/);
      assert.doesNotMatch(r.out, /250 2\.1\.5 bob@external\.test/);
    });

    test('a client on the relay list relays without authenticating; the same trick from outside does not', async () => {
      const inside = await attempt('kim@fourthcoffee.test', 'bob@external.test', [
        '--local-interface',
        RELAY_LISTED,
      ]);
      assert.match(inside.out, /^<- {2}250-mail1\.test\.example Hello \[127\.0\.0\.5\]$/m);
      assert.equal(inside.rcpt, '250 2.1.5 bob@external.test', inside.out);
      const outside = await attempt('kim@fourthcoffee.test', 'bob@external.test', [
        '--local-interface',
        '127.0.0.6',
      ]);
      assert.equal(outside.rcpt, '550 5.7.1 Unable to relay for bob@external.test', outside.out);
    });
  },
);
