// NAME      schema-ldap: the `directory.ldap` settings (connection, TLS, bind, attribute map)
// DESCRIPTION
//   No I/O here. The bind password is read from a file (bindPasswordFile), never written in
//   the organisation file. The attribute map starts from a preset (openldap, activedirectory;
//   directory/ldap-map.ts) and `attributes` overrides single entries of it.
import { z } from 'zod';

const attributeName = z.string().trim().min(1);

/** Every model field the LDAP backend can read; each names one LDAP attribute. */
export const ldapAttributeKeys = [
  'name',
  'mail',
  'proxyAddresses',
  'login',
  'mailboxServer',
  'mailboxStore',
  'targetAddress',
  'forwardTo',
  'deliverAndForward',
  'member',
  'memberUrl',
  'dynamicFilter',
  'dynamicBaseDn',
  'memberOf',
  'hidden',
  'hideMembership',
  'expansionServer',
  'quotaKb',
  'maxReceiveSizeKb',
  'maxSendSizeKb',
  'authenticatedOnly',
  'acceptFrom',
  'rejectFrom',
  'passwordHash',
] as const;
export type LdapAttributeKey = (typeof ldapAttributeKeys)[number];

export const ldapSchema = z.strictObject({
  /** ldap://host:389 or ldaps://host:636. */
  url: z
    .string()
    .regex(/^ldaps?:\/\/[^/]+\/?$/i, 'an LDAP URL looks like ldap://host:389 or ldaps://host:636'),
  /** Upgrade ldap:// with StartTLS before binding. */
  startTls: z.boolean().default(false),
  /** PEM file of the CA that signed the directory's certificate (system CAs otherwise). */
  caFile: z.string().optional(),
  /** Check the directory's certificate (chain and name); off only for a lab. */
  verifyCertificate: z.boolean().default(true),
  /** Service account; anonymous when absent. */
  bindDn: z.string().optional(),
  /** File holding the bind password (first line); required with bindDn. */
  bindPasswordFile: z.string().optional(),
  baseDn: z.string().min(1),
  /** Which attribute map to start from. */
  schema: z.enum(['openldap', 'activedirectory']).default('openldap'),
  /** Overrides of single attribute names; "" switches one off. */
  attributes: z.partialRecord(z.enum(ldapAttributeKeys), z.string()).default({}),
  /** Only entries matching this filter are recipients (ANDed with every search). */
  filter: z.string().default('(objectClass=*)'),
  /** Classes that make an entry a distribution group / a contact. */
  groupClasses: z.array(attributeName).optional(),
  contactClasses: z.array(attributeName).optional(),
  /** Mailbox of a user whose entry names no server: the server reading it, store "Mailbox Store". */
  defaultMailbox: z
    .strictObject({ server: z.string().optional(), store: z.string().default('Mailbox Store') })
    .prefault({}),
  /** SMTP AUTH: bind as the user's DN, or compare with the passwordHash attribute. */
  authentication: z.enum(['bind', 'passwordHash']).default('bind'),
  /** Connections kept open to the directory. */
  poolSize: z.number().int().min(1).max(16).default(4),
  /** Milliseconds a connect or an operation may take. */
  timeoutMs: z.number().int().positive().default(5000),
  cache: z
    .strictObject({
      ttlSeconds: z.number().int().min(0).default(300),
      /** How long "no such recipient" is remembered. */
      negativeTtlSeconds: z.number().int().min(0).default(60),
      maxEntries: z.number().int().positive().default(10000),
    })
    .prefault({}),
  /** The categorizer retries a message this many seconds after the directory failed it. */
  retrySeconds: z.number().int().positive().default(60),
});
export type LdapConfig = z.infer<typeof ldapSchema>;
