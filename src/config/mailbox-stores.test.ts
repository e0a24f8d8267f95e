import { test } from 'node:test';
import assert from 'node:assert/strict';
import { organisationSchema } from './schema.js';
import { mailboxStoreProblems } from './mailbox-stores.js';

function org(stores: unknown, userStore?: string) {
  return organisationSchema.parse({
    organisation: { name: 'T' },
    routingGroups: [
      {
        name: 'RG',
        servers: [
          {
            name: 'MAIL1',
            fqdn: 'mail1.test',
            ...(stores ? { mailboxStores: stores } : {}),
            virtualServers: [{ name: 'SMTP' }],
          },
        ],
      },
    ],
    directory: {
      users: [
        {
          name: 'Alice',
          addresses: ['alice@example.com'],
          mailbox: { server: 'mail1', ...(userStore ? { store: userStore } : {}) },
        },
      ],
    },
  });
}

test('the default store is configured by default', () => {
  assert.deepEqual(mailboxStoreProblems(org(undefined)), []);
  assert.deepEqual(mailboxStoreProblems(org([{ name: 'Dovecot' }], 'Dovecot')), []);
});

test('a store the user names but the server does not list is refused, saying which ones it has', () => {
  assert.deepEqual(mailboxStoreProblems(org([{ name: 'Dovecot' }])), [
    {
      path: 'directory.users[0].mailbox.store',
      message:
        '"Alice": mailbox store "Mailbox Store" is not configured on server mail1 (its mailboxStores: "Dovecot"; add it there)',
    },
  ]);
  assert.match(
    mailboxStoreProblems(org([{ name: 'Dovecot' }], 'dovecot'))[0]!.message,
    /did you mean "Dovecot"\?/,
  );
});
