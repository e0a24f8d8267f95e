// NAME      ldap-map: LDAP entries -> the directory model the YAML backend yields
// DESCRIPTION
//   No I/O here. An entry becomes the same user / contact / group object the organisation
//   file describes (config/schema.ts), so the categorizer has one code path whatever the
//   backend. Attribute names come from a preset (openldap: inetOrgPerson + misc.schema's
//   inetLocalMailRecipient + groupOfNames / groupOfUniqueNames / groupOfURLs; activedirectory:
//   Exchange's attributes) with the administrator's overrides on top.
//   Kind: a group class -> group; a contact class, or a target address with no mailbox
//   server -> contact; anything else -> user. Group members stay DNs: the directory resolves
//   a DN given as a name (findByName), so nesting needs no second representation.
import type { LdapAttributeKey, LdapConfig } from '../config/schema-ldap.js';
import { contactSchema, groupSchema, userSchema } from '../config/schema.js';
import type { DirectoryEntry } from './directory.js';

export type AttributeMap = Partial<Record<LdapAttributeKey, string>>;

export const ATTRIBUTE_PRESETS: Record<LdapConfig['schema'], AttributeMap> = {
  openldap: {
    name: 'cn',
    mail: 'mail',
    proxyAddresses: 'mailLocalAddress',
    login: 'uid',
    mailboxServer: 'mailHost',
    targetAddress: 'mailRoutingAddress',
    member: 'member',
    memberUrl: 'memberURL',
    memberOf: 'memberOf',
  },
  activedirectory: {
    name: 'cn',
    mail: 'mail',
    proxyAddresses: 'proxyAddresses',
    login: 'sAMAccountName',
    mailboxServer: 'msExchHomeServerName',
    mailboxStore: 'homeMDB',
    targetAddress: 'targetAddress',
    forwardTo: 'altRecipient',
    deliverAndForward: 'deliverAndRedirect',
    member: 'member',
    dynamicFilter: 'msExchDynamicDLFilter',
    dynamicBaseDn: 'msExchDynamicDLBaseDN',
    memberOf: 'memberOf',
    hidden: 'msExchHideFromAddressLists',
    hideMembership: 'hideDLMembership',
    expansionServer: 'msExchExpansionServerName',
    quotaKb: 'mDBStorageQuota',
    maxReceiveSizeKb: 'delivContLength',
    maxSendSizeKb: 'submissionContLength',
    authenticatedOnly: 'msExchRequireAuthToSendTo',
    acceptFrom: 'authOrig',
    rejectFrom: 'unauthOrig',
  },
};

export const GROUP_CLASSES: Record<LdapConfig['schema'], string[]> = {
  openldap: ['groupOfNames', 'groupOfUniqueNames', 'groupOfURLs'],
  activedirectory: ['group', 'msExchDynamicDistributionList'],
};
export const CONTACT_CLASSES: Record<LdapConfig['schema'], string[]> = {
  openldap: [],
  activedirectory: ['contact'],
};

/** The preset with the administrator's overrides; "" switches an attribute off. */
export function attributeMap(config: Pick<LdapConfig, 'schema' | 'attributes'>): AttributeMap {
  const map: AttributeMap = { ...ATTRIBUTE_PRESETS[config.schema] };
  for (const [key, value] of Object.entries(config.attributes) as [LdapAttributeKey, string][]) {
    if (value) map[key] = value;
    else delete map[key];
  }
  return map;
}

/** RFC 4515 escaping of a value placed in a filter. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Is this a DN (how group members, authOrig and altRecipient name entries)? */
export function looksLikeDn(value: string): boolean {
  return /^[a-z][\w-]*=[^,]+(,[a-z][\w-]*=[^,]+)*$/i.test(value.trim()) && !value.includes('@');
}

export interface LdapEntry {
  dn: string;
  [attribute: string]: string | string[] | Buffer | Buffer[];
}

export function values(entry: LdapEntry, attribute: string | undefined): string[] {
  if (!attribute) return [];
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
  if (!key || key === 'dn') return [];
  const raw = entry[key]!;
  return (Array.isArray(raw) ? raw : [raw]).map((v) => v.toString());
}

const first = (entry: LdapEntry, attribute: string | undefined) => values(entry, attribute)[0];

function truthy(value: string | undefined): boolean {
  return value !== undefined && /^(true|yes|1)$/i.test(value.trim());
}

function kb(value: string | undefined): number | null {
  const n = value === undefined ? NaN : Number(value);
  return Number.isInteger(n) && n > 0 ? n : null;
}

/**
 * SMTP addresses of an entry: `mail` first (the primary), then every proxy address. AD's
 * proxyAddresses hold "SMTP:" (primary), "smtp:" (secondary) and other types (X400:, ...),
 * which are not SMTP addresses and are left out.
 */
export function smtpAddresses(entry: LdapEntry, map: AttributeMap): string[] {
  const proxies = values(entry, map.proxyAddresses);
  const primaryProxy = proxies.find((p) => p.startsWith('SMTP:'));
  const list = [
    ...values(entry, map.mail),
    ...(primaryProxy ? [primaryProxy.slice(5)] : []),
    ...proxies.map((p) => (/^smtp:/i.test(p) ? p.slice(5) : /^[a-z0-9]+:/i.test(p) ? '' : p)),
  ];
  const seen = new Set<string>();
  return list.filter((a) => {
    const key = a.toLowerCase();
    if (!a || !a.includes('@') || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** "/o=Org/ou=Site/cn=Configuration/cn=Servers/cn=EX1" or "cn=Store (EX1),cn=SG,..." -> a plain name. */
export function plainName(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (value.includes('/cn=')) return value.slice(value.lastIndexOf('/cn=') + 4);
  if (looksLikeDn(value))
    return value
      .slice(value.indexOf('=') + 1)
      .split(',')[0]!
      .trim();
  return value;
}

export interface MapContext {
  map: AttributeMap;
  groupClasses: string[];
  contactClasses: string[];
  defaultServer: string;
  defaultStore: string;
}

export type EntryKind = DirectoryEntry['kind'];

export function entryKind(entry: LdapEntry, ctx: MapContext): EntryKind {
  const classes = values(entry, 'objectClass').map((c) => c.toLowerCase());
  if (ctx.groupClasses.some((c) => classes.includes(c.toLowerCase()))) return 'group';
  if (ctx.contactClasses.some((c) => classes.includes(c.toLowerCase()))) return 'contact';
  const target = first(entry, ctx.map.targetAddress);
  if (target && !first(entry, ctx.map.mailboxServer)) return 'contact';
  return 'user';
}

/** An LDAP entry as the YAML model's entry; undefined when it cannot be a recipient. */
export function toDirectoryEntry(entry: LdapEntry, ctx: MapContext): DirectoryEntry | undefined {
  const { map } = ctx;
  const name = first(entry, map.name) ?? plainName(entry.dn) ?? entry.dn;
  const addresses = smtpAddresses(entry, map);
  const restrictions = {
    authenticatedOnly: truthy(first(entry, map.authenticatedOnly)),
    acceptFrom: values(entry, map.acceptFrom),
    rejectFrom: values(entry, map.rejectFrom),
  };
  const kind = entryKind(entry, ctx);
  if (kind === 'group') {
    const group = groupSchema.parse({
      name,
      addresses,
      members: values(entry, map.member).concat(values(entry, 'uniqueMember')),
      expansionServer: plainName(first(entry, map.expansionServer)),
      hideMembership: truthy(first(entry, map.hideMembership)),
      restrictions,
    });
    return { kind, name, primaryAddress: (addresses[0] ?? '').toLowerCase(), group };
  }
  if (kind === 'contact') {
    const target = (first(entry, map.targetAddress) ?? addresses[0] ?? '').replace(/^smtp:/i, '');
    if (!target) return undefined;
    const contact = contactSchema.parse({ name, addresses, targetAddress: target });
    return { kind, name, primaryAddress: (addresses[0] ?? target).toLowerCase(), contact };
  }
  if (!addresses.length) return undefined;
  const forwardTo = first(entry, map.forwardTo);
  const user = userSchema.parse({
    name,
    addresses,
    mailbox: {
      server: plainName(first(entry, map.mailboxServer)) ?? ctx.defaultServer,
      store: plainName(first(entry, map.mailboxStore)) ?? ctx.defaultStore,
    },
    quotaKb: kb(first(entry, map.quotaKb)),
    maxReceiveSizeKb: kb(first(entry, map.maxReceiveSizeKb)),
    maxSendSizeKb: kb(first(entry, map.maxSendSizeKb)),
    restrictions,
    ...(forwardTo ? { forwardTo: forwardTo.replace(/^smtp:/i, '') } : {}),
    deliverAndForward: truthy(first(entry, map.deliverAndForward)),
    ...(first(entry, map.passwordHash) ? { passwordHash: first(entry, map.passwordHash) } : {}),
    hidden: truthy(first(entry, map.hidden)),
  });
  return { kind, name, primaryAddress: addresses[0]!.toLowerCase(), user };
}

/** A dynamic group's search: groupOfURLs' memberURL or AD's filter + base DN. */
export function dynamicSearch(
  entry: LdapEntry,
  map: AttributeMap,
  baseDn: string,
): { base: string; scope: 'base' | 'one' | 'sub'; filter: string } | undefined {
  const url = first(entry, map.memberUrl);
  if (url) {
    // ldap:///base?attributes?scope?filter (RFC 4516); host part ignored: same directory.
    const match = /^ldaps?:\/\/[^/]*\/([^?]*)(?:\?([^?]*)(?:\?([^?]*)(?:\?(.*))?)?)?$/i.exec(url);
    if (!match) return undefined;
    const scope = (match[3] || 'base').toLowerCase();
    return {
      base: decodeURIComponent(match[1] || baseDn),
      scope: scope === 'sub' || scope === 'one' ? scope : 'base',
      filter: decodeURIComponent(match[4] || '(objectClass=*)'),
    };
  }
  const filter = first(entry, map.dynamicFilter);
  if (!filter) return undefined;
  return { base: first(entry, map.dynamicBaseDn) ?? baseDn, scope: 'sub', filter };
}
