// The organisation file: one schema for the whole organisation, carrying the spec's
// defaults (SPEC §1-§8). Every stage reads its settings from the parsed model; the same
// model is what link state and the admin API will carry.
import { z } from 'zod';
import { duration, sizeKb } from './units.js';
import { ldapSchema } from './schema-ldap.js';
import { isStoredPassword } from '../directory/passwords.js';
import { CATEGORIES } from '../logs/event-log.js';
import { recipientTemplateProblem } from '../delivery/local/lmtp-recipient.js';

import {
  domainOrAddress,
  ipRange,
  name,
  outboundSecurity,
  virtualServerSchema,
} from './schema-virtual-server.js';
export { ipRange, virtualServerSchema } from './schema-virtual-server.js';
export type { VirtualServerConfig } from './schema-virtual-server.js';

// ---------------------------------------------------------------- servers, groups

const tracking = z
  .strictObject({
    enabled: z.boolean().default(true),
    logSubject: z.boolean().default(false),
    retentionDays: z.number().int().positive().default(7),
    /** Events kept in memory while the tracking database cannot be written (disk full). */
    maxHeldEvents: z.number().int().min(0).default(10_000),
  })
  .prefault({});

const adminApi = z
  .strictObject({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8025),
    /** Without one, the server makes one in <dataDir>/admin.token (unless open). */
    token: z.string().min(1, 'an empty token would let anyone in').optional(),
    readOnlyToken: z.string().min(1, 'an empty token would let anyone in').optional(),
    /** No token at all: anyone who can reach the API may use it (loopback only). */
    open: z.boolean().default(false),
  })
  .prefault({});

/** "0750" -> 0o750: YAML would read a bare 0750 as the decimal 750. */
const octalMode = z
  .string()
  .regex(/^0?[0-7]{3}$/, 'a mode is three octal digits in quotes, e.g. "0750"')
  .transform((m) => parseInt(m, 8))
  .refine((m) => (m & 0o022) === 0, 'must not give write access to group or others');

/**
 * Maildir modes of a store: private (0700/0600) unless the store is shared with a program
 * that runs as another user, e.g. Dovecot as vmail in the data directory's group.
 */
const maildirModes = z
  .strictObject({
    directoryMode: octalMode
      .refine((m) => (m & 0o700) === 0o700, "must give the server's user rwx (0700)")
      .prefault('0700'),
    fileMode: octalMode
      .refine((m) => (m & 0o600) === 0o600, "must give the server's user rw (0600)")
      .refine((m) => (m & 0o111) === 0, 'a message is not a program: no execute bits')
      .prefault('0600'),
  })
  .prefault({});

/** An LMTP store (RFC 2033): Dovecot, Cyrus, ... over TCP or a Unix socket. */
const lmtpStore = z
  .strictObject({
    host: z.string().trim().min(1).optional(),
    port: z.number().int().min(1).max(65535).default(24),
    /** A Unix socket path instead of host and port (e.g. /var/run/dovecot/lmtp). */
    socket: z.string().min(1).optional(),
    /** RCPT TO over the user's primary address: {address}, {localPart}, {domain}. */
    rcptTo: z
      .string()
      .default('{address}')
      .superRefine((t, ctx) => {
        const problem = recipientTemplateProblem(t);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    /** Connection and reply time-out. */
    timeout: duration.prefault('60s').refine((s) => s > 0, 'must be longer than 0'),
  })
  .refine((l) => (l.host === undefined) !== (l.socket === undefined), {
    message: 'an LMTP store needs either host (and port) or socket, not both',
  });

const mailboxStore = z
  .strictObject({
    name,
    /** How local delivery writes to the store: its own Maildirs, or an LMTP server. */
    driver: z.enum(['maildir', 'lmtp']).default('maildir'),
    maildir: maildirModes,
    lmtp: lmtpStore.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.driver === 'lmtp' && !s.lmtp)
      ctx.addIssue({
        code: 'custom',
        path: ['lmtp'],
        message: 'driver lmtp needs lmtp: {host, port} or {socket}',
      });
    if (s.driver !== 'lmtp' && s.lmtp)
      ctx.addIssue({
        code: 'custom',
        path: ['driver'],
        message: 'lmtp settings are given: set driver: lmtp',
      });
  });

export const serverSchema = z.strictObject({
  name,
  fqdn: z.string().trim().min(1),
  /** Everything this server writes lives under this directory. */
  dataDir: z.string().default('./var'),
  /** Address for the link state port and organisation traffic to this server. */
  address: z.string().default('127.0.0.1'),
  linkStatePort: z.number().int().min(1).max(65535).default(691),
  /**
   * Free space (KB) the data directory's file system keeps: below it MAIL gets 452 4.3.1
   * (Postfix's queue_minfree). null: 1.5 × the virtual server's message size limit, at
   * least 100 MB.
   */
  queueMinFreeKb: z.number().int().min(0).nullable().default(null),
  mailboxStores: z.array(mailboxStore).prefault([{ name: 'Mailbox Store' }]),
  virtualServers: z.array(virtualServerSchema).min(1, 'a server needs at least one virtual server'),
  messageTracking: tracking,
  adminApi,
  diagnosticLogging: z
    .partialRecord(z.enum(CATEGORIES), z.enum(['none', 'minimum', 'medium', 'maximum']))
    .default({}),
});
export type ServerConfig = z.infer<typeof serverSchema>;

const addressSpace = z.union([
  // "SMTP:*.net:20": type, pattern, cost 1-100
  z
    .string()
    .regex(/^[A-Za-z0-9-]+:[^:\s]+:(100|[1-9]\d?)$/, 'an address space looks like SMTP:*.example.com:10'),
  z.strictObject({
    type: z.string().default('SMTP'),
    pattern: z.string().min(1),
    cost: z.number().int().min(1).max(100).default(1),
    /**
     * "Allow messages to be relayed to these domains": the connector's local bridgehead
     * virtual servers accept this domain from anyone, and route it over the connector
     * [003:2939, 4548]. Refused with "*" (an open relay).
     */
    allowRelay: z.boolean().default(false),
  }),
]);

const deliveryRestrictions = z
  .strictObject({
    /** Connector restrictions are costly; they apply only when switched on [003:5214]. */
    enabled: z.boolean().default(false),
    acceptFrom: z.array(z.string()).default([]),
    rejectFrom: z.array(z.string()).default([]),
  })
  .prefault({});

const contentRestrictions = z
  .strictObject({
    priorities: z.array(z.enum(['high', 'normal', 'low'])).default(['high', 'normal', 'low']),
    systemMessages: z.boolean().default(true),
    nonSystemMessages: z.boolean().default(true),
    maxSizeKb: sizeKb.default(null),
  })
  .prefault({});

const window = z.strictObject({
  days: z.array(z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])).min(1),
  start: z.string().regex(/^\d{2}:\d{2}$/),
  end: z.string().regex(/^\d{2}:\d{2}$/),
});

const schedule = z
  .strictObject({
    mode: z.enum(['always', 'never', 'windows']).default('always'),
    windows: z.array(window).default([]),
    oversizeThresholdKb: sizeKb.default(null),
    oversizeWindows: z.array(window).default([]),
  })
  .prefault({});

const connectorCommon = {
  name,
  cost: z.number().int().min(1).max(100).default(1),
  /** Empty = any local server of the routing group may send over it. */
  localBridgeheads: z.array(z.string()).default([]),
  deliveryRestrictions,
  contentRestrictions,
  schedule,
};

export const connectorSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('routingGroup'),
    ...connectorCommon,
    to: name,
    remoteBridgeheads: z.array(z.string()).min(1, 'a routing group connector needs a remote bridgehead'),
  }),
  z.strictObject({
    type: z.literal('smtp'),
    ...connectorCommon,
    addressSpaces: z.array(addressSpace).default([]),
    connectedRoutingGroups: z.array(z.string()).default([]),
    scope: z.enum(['organisation', 'routingGroup']).default('organisation'),
    /** Empty = DNS (MX) routing. */
    smartHosts: z.array(z.string()).default([]),
    heloInsteadOfEhlo: z.boolean().default(false),
    outboundSecurity,
    queueForRemoteTriggeredDelivery: z
      .strictObject({ enabled: z.boolean().default(false), accounts: z.array(z.string()).default([]) })
      .prefault({}),
    /** Issue ETRN / TURN to the smart host when the connector runs. */
    requestEtrn: z.boolean().default(false),
  }),
]);
export type ConnectorConfig = z.infer<typeof connectorSchema>;

export const routingGroupSchema = z.strictObject({
  name,
  /** Routing group master; default the first server of the group. */
  master: z.string().optional(),
  servers: z.array(serverSchema).default([]),
  connectors: z.array(connectorSchema).default([]),
});
export type RoutingGroupConfig = z.infer<typeof routingGroupSchema>;

// ---------------------------------------------------------------- directory

const restrictions = z
  .strictObject({
    authenticatedOnly: z.boolean().default(false),
    acceptFrom: z.array(z.string()).default([]),
    rejectFrom: z.array(z.string()).default([]),
  })
  .prefault({});

const permissions = z
  .strictObject({
    submit: z.enum(['allow', 'deny', 'default']).default('default'),
    relay: z.enum(['allow', 'deny', 'default']).default('default'),
  })
  .prefault({});

export const userSchema = z.strictObject({
  name,
  /** SMTP addresses; the first is the primary (reply) address. */
  addresses: z.array(domainOrAddress).min(1),
  mailbox: z.strictObject({ server: z.string(), store: z.string().default('Mailbox Store') }),
  quotaKb: sizeKb.default(null),
  maxReceiveSizeKb: sizeKb.default(null),
  maxSendSizeKb: sizeKb.default(null),
  restrictions,
  permissions,
  forwardTo: z.string().optional(),
  deliverAndForward: z.boolean().default(false),
  /**
   * SCRAM-SHA-256 verifier set with `bridgehead user passwd` (serves SCRAM, PLAIN, LOGIN),
   * or a scrypt hash from earlier versions (PLAIN and LOGIN only).
   */
  passwordHash: z
    .string()
    .refine(isStoredPassword, 'expected a SCRAM-SHA-256 verifier (set it with `bridgehead user passwd`)')
    .optional(),
  /** Hidden from address lists: VRFY does not show it, expansion reports do not name it. */
  hidden: z.boolean().default(false),
});

export const contactSchema = z.strictObject({
  name,
  addresses: z.array(domainOrAddress).default([]),
  targetAddress: z.string().min(1),
});

export const groupSchema = z.strictObject({
  name,
  addresses: z.array(domainOrAddress).default([]),
  members: z.array(z.string()).default([]),
  expansionServer: z.string().optional(),
  /** Members are never named to a sender: their failures are reported under the group. */
  hideMembership: z.boolean().default(false),
  restrictions,
  permissions,
});

export const directorySchema = z
  .strictObject({
    backend: z.enum(['embedded', 'ldap']).default('embedded'),
    /** Another YAML file holding users, contacts and groups. */
    file: z.string().optional(),
    /** The LDAP backend's settings (backend: ldap); see schema-ldap.ts. */
    ldap: ldapSchema.optional(),
    users: z.array(userSchema).default([]),
    contacts: z.array(contactSchema).default([]),
    groups: z.array(groupSchema).default([]),
  })
  .refine((d) => d.backend !== 'ldap' || d.ldap !== undefined, {
    message: 'backend ldap needs directory.ldap (url, baseDn)',
    path: ['ldap'],
  })
  .refine((d) => !d.ldap?.bindDn || d.ldap.bindPasswordFile !== undefined, {
    message: 'bindDn needs bindPasswordFile (the password is never written in this file)',
    path: ['ldap', 'bindPasswordFile'],
  })
  .prefault({});

// ---------------------------------------------------------------- policies, filters

export const recipientPolicySchema = z.strictObject({
  name,
  priority: z.number().int().min(0).default(0),
  addresses: z
    .array(
      z.strictObject({
        /** Address template "@example.com" (or "%g.%s@example.com"; only the domain matters here). */
        address: z.string().regex(/@[^@\s]+$/, 'an SMTP address template looks like @example.com'),
        /** "This organisation is responsible for all mail delivery to this address". */
        authoritative: z.boolean().default(true),
      }),
    )
    .min(1),
});

const blockList = z.strictObject({
  name,
  suffix: z.string().min(1),
  matchMode: z.enum(['any', 'mask', 'codes']).default('any'),
  mask: z.string().optional(),
  codes: z.array(z.string()).default([]),
  /** %0 client IP, %1 rule name, %2 provider suffix, %% literal ({0} {1} {2} too). */
  rejectionText: z.string().default('%0 has been blocked by %1'),
  enabled: z.boolean().default(true),
});

export const filtersSchema = z
  .strictObject({
    connection: z
      .strictObject({
        accept: z.array(ipRange).default([]),
        deny: z.array(ipRange).default([]),
        blockLists: z.array(blockList).default([]),
        exceptions: z.array(z.string()).default([]),
      })
      .prefault({}),
    sender: z
      .strictObject({
        addresses: z.array(z.string()).default([]),
        filterBlankSender: z.boolean().default(false),
        dropConnection: z.boolean().default(false),
        /** Accept without notifying the sender; the message goes to badmail. */
        archive: z.boolean().default(false),
      })
      .prefault({}),
    recipient: z
      .strictObject({
        blocked: z.array(z.string()).default([]),
        filterNotInDirectory: z.boolean().default(false),
      })
      .prefault({}),
    greylisting: z
      .strictObject({
        delay: duration.prefault('5m'),
        expiry: duration.prefault('36d'),
        whitelist: z.array(ipRange).default([]),
      })
      .prefault({}),
  })
  .prefault({});

// ---------------------------------------------------------------- organisation

export const organisationSchema = z.strictObject({
  organisation: z
    .strictObject({
      name: name.default('First Organization'),
      /** Shared secret for link state and organisation verbs between servers. */
      secret: z.string().optional(),
      /** Organisation default: recipients per message (5.5.3 beyond it) [003:7807]. */
      maxRecipientsPerMessage: z.number().int().positive().nullable().default(5000),
      maxSendSizeKb: sizeKb.default(null),
      maxReceiveSizeKb: sizeKb.default(null),
      linkState: z
        .strictObject({
          /** Members poll their routing group master this often [003:9040]. */
          pollInterval: duration.prefault('5m').refine((s) => s > 0, 'must be longer than 0'),
          /** The master probes its routing group connectors and exchanges tables this often. */
          probeInterval: duration.prefault('60s').refine((s) => s > 0, 'must be longer than 0'),
          /** A connector that changes state more than once in this window stays up. */
          dampingWindow: duration.prefault('10m'),
        })
        .prefault({}),
    })
    .prefault({}),
  routingGroups: z.array(routingGroupSchema).min(1, 'an organisation needs at least one routing group'),
  recipientPolicies: z.array(recipientPolicySchema).default([]),
  directory: directorySchema,
  filters: filtersSchema,
});
export type OrganisationConfig = z.infer<typeof organisationSchema>;
export type OrganisationInput = z.input<typeof organisationSchema>;
