import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CONTACT_CLASSES,
  GROUP_CLASSES,
  attributeMap,
  dynamicSearch,
  escapeFilterValue,
  looksLikeDn,
  toDirectoryEntry,
  type MapContext,
} from './ldap-map.js';

const context = (schema: 'openldap' | 'activedirectory', attributes = {}): MapContext => ({
  map: attributeMap({ schema, attributes }),
  groupClasses: GROUP_CLASSES[schema],
  contactClasses: CONTACT_CLASSES[schema],
  defaultServer: 'MAIL1',
  defaultStore: 'Mailbox Store',
});

test('filter values are escaped (RFC 4515)', () => {
  assert.equal(escapeFilterValue('a*)(uid=*)\\'), 'a\\2a\\29\\28uid=\\2a\\29\\5c');
});

test('a DN is told from an address', () => {
  assert.ok(looksLikeDn('uid=alice,ou=people,dc=example,dc=com'));
  assert.ok(!looksLikeDn('alice@example.com'));
  assert.ok(!looksLikeDn('Inner Circle'));
});

test('an Active Directory user: proxyAddresses, mailbox, limits, forwarding, hidden', () => {
  const entry = toDirectoryEntry(
    {
      dn: 'CN=Alice,OU=Users,DC=corp,DC=test',
      objectClass: ['top', 'person', 'organizationalPerson', 'user'],
      cn: 'Alice',
      mail: 'alice@corp.test',
      proxyAddresses: ['smtp:a@corp.test', 'SMTP:alice@corp.test', 'X400:c=US;a= ;p=Corp;s=Alice;'],
      msExchHomeServerName: '/o=Corp/ou=First Administrative Group/cn=Configuration/cn=Servers/cn=EX1',
      homeMDB: 'CN=Mailbox Store (EX1),CN=First Storage Group,CN=InformationStore,CN=EX1',
      mDBStorageQuota: '51200',
      delivContLength: '10240',
      altRecipient: 'CN=Bob,OU=Users,DC=corp,DC=test',
      deliverAndRedirect: 'TRUE',
      msExchHideFromAddressLists: 'TRUE',
      authOrig: 'CN=Bob,OU=Users,DC=corp,DC=test',
    },
    context('activedirectory'),
  );
  assert.ok(entry && entry.kind === 'user');
  assert.deepEqual(entry.user.addresses, ['alice@corp.test', 'a@corp.test']);
  assert.deepEqual(entry.user.mailbox, { server: 'EX1', store: 'Mailbox Store (EX1)' });
  assert.equal(entry.user.quotaKb, 51200);
  assert.equal(entry.user.maxReceiveSizeKb, 10240);
  assert.equal(entry.user.forwardTo, 'CN=Bob,OU=Users,DC=corp,DC=test');
  assert.equal(entry.user.deliverAndForward, true);
  assert.equal(entry.user.hidden, true);
  assert.deepEqual(entry.user.restrictions.acceptFrom, ['CN=Bob,OU=Users,DC=corp,DC=test']);
});

test('AD contact and group; OpenLDAP contact by mailRoutingAddress; overrides', () => {
  const contact = toDirectoryEntry(
    { dn: 'CN=Dan,DC=corp', objectClass: ['contact'], cn: 'Dan', targetAddress: 'SMTP:dan@fabrikam.test' },
    context('activedirectory'),
  );
  assert.ok(contact?.kind === 'contact');
  assert.equal(contact.contact.targetAddress, 'dan@fabrikam.test');
  const group = toDirectoryEntry(
    {
      dn: 'CN=Staff,DC=corp',
      objectClass: ['group'],
      cn: 'Staff',
      proxyAddresses: 'SMTP:staff@corp.test',
      member: ['CN=A,DC=corp', 'CN=B,DC=corp'],
      hideDLMembership: 'TRUE',
      msExchExpansionServerName: '/o=Corp/cn=Servers/cn=EX2',
    },
    context('activedirectory'),
  );
  assert.ok(group?.kind === 'group');
  assert.equal(group.primaryAddress, 'staff@corp.test');
  assert.equal(group.group.members.length, 2);
  assert.equal(group.group.hideMembership, true);
  assert.equal(group.group.expansionServer, 'EX2');
  const ol = toDirectoryEntry(
    {
      dn: 'uid=x,dc=ex',
      objectClass: 'inetOrgPerson',
      cn: 'X',
      mail: 'x@ex.test',
      mailRoutingAddress: 'x@else.test',
    },
    context('openldap'),
  );
  assert.equal(ol?.kind, 'contact');
  const quota = toDirectoryEntry(
    { dn: 'uid=y,dc=ex', objectClass: 'inetOrgPerson', cn: 'Y', mail: 'y@ex.test', mailQuota: '100' },
    context('openldap', { quotaKb: 'mailQuota' }),
  );
  assert.ok(quota?.kind === 'user');
  assert.equal(quota.user.quotaKb, 100);
  assert.equal(quota.user.mailbox.server, 'MAIL1');
});

test('OpenLDAP: the store comes from the attribute attributes.mailboxStore names, else defaultMailbox.store', () => {
  const ctx = { ...context('openldap', { mailboxStore: 'description' }), defaultStore: 'Dovecot' };
  const person = (uid: string, extra: Record<string, string> = {}) =>
    toDirectoryEntry(
      { dn: `uid=${uid},dc=ex`, objectClass: ['inetOrgPerson'], cn: uid, mail: `${uid}@ex.test`, ...extra },
      ctx,
    );
  const named = person('dana', { description: 'Mailbox Store', mailHost: 'MAIL2' });
  assert.ok(named?.kind === 'user');
  assert.deepEqual(named.user.mailbox, { server: 'MAIL2', store: 'Mailbox Store' });
  const unnamed = person('erin');
  assert.ok(unnamed?.kind === 'user');
  assert.deepEqual(unnamed.user.mailbox, { server: 'MAIL1', store: 'Dovecot' });
  // The preset reads no store attribute: an entry's description is not taken for one.
  const preset = toDirectoryEntry(
    { dn: 'uid=f,dc=ex', objectClass: 'inetOrgPerson', cn: 'F', mail: 'f@ex.test', description: 'Staff' },
    context('openldap'),
  );
  assert.ok(preset?.kind === 'user');
  assert.equal(preset.user.mailbox.store, 'Mailbox Store');
});

test('a dynamic group search from memberURL', () => {
  const search = dynamicSearch(
    { dn: 'cn=All,dc=ex', memberURL: 'ldap:///ou=people,dc=ex??sub?(objectClass=inetOrgPerson)' },
    attributeMap({ schema: 'openldap', attributes: {} }),
    'dc=ex',
  );
  assert.deepEqual(search, { base: 'ou=people,dc=ex', scope: 'sub', filter: '(objectClass=inetOrgPerson)' });
});
