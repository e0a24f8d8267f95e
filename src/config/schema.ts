// The organisation file: one schema for the whole organisation, carrying the spec's
// defaults (SPEC §1-§8). Every stage reads its settings from the parsed model; the same
// model is what link state and the admin API will carry.
import { z } from 'zod';
import { duration, sizeKb } from './units.js';
import { CATEGORIES } from '../logs/event-log.js';

const name = z.string().trim().min(1, 'must not be empty');

/** "192.0.2.1", "192.0.2.0/24", "192.0.2.0/255.255.255.0", "2001:db8::/32". */
export const ipRange = z.string().trim().min(1);

const domainOrAddress = z.string().trim().min(1);

// ---------------------------------------------------------------- virtual server

const authentication = z
  .strictObject({
    /** Anonymous access: Internet servers deliver without authenticating. */
    anonymous: z.boolean().default(true),
    /** Basic authentication (AUTH PLAIN / LOGIN). */
    basic: z.boolean().default(true),
    /** Decision: AUTH is offered only inside TLS unless this is set. */
    basicWithoutTls: z.boolean().default(false),
    /** "Requires TLS encryption": MAIL is refused until STARTTLS (530 5.7.0). */
    requireTls: z.boolean().default(false),
    /** Integrated authentication (SCRAM); not offered yet. */
    integrated: z.boolean().default(false),
  })
  .prefault({});

const tls = z
  .strictObject({
    /** PEM certificate chain; without cert and key a self-signed one is made at start. */
    certFile: z.string().optional(),
    keyFile: z.string().optional(),
    /** Offer STARTTLS. */
    enabled: z.boolean().default(true),
  })
  .prefault({});

const connectionControl = z
  .strictObject({
    /** allExcept: everyone but the list may connect; onlyList: only the list. */
    mode: z.enum(['allExcept', 'onlyList']).default('allExcept'),
    list: z.array(ipRange).default([]),
  })
  .prefault({});

const relay = z
  .strictObject({
    /** Default "only the list below" with an empty list [003:4143-4153]. */
    mode: z.enum(['onlyList', 'allExcept']).default('onlyList'),
    list: z.array(ipRange).default([]),
    /** "Allow all computers which successfully authenticate to relay". */
    allowAuthenticated: z.boolean().default(true),
  })
  .prefault({});

const messageLimits = z
  .strictObject({
    maxMessageSizeKb: sizeKb.default(4096),
    maxSessionSizeKb: sizeKb.default(10240),
    maxMessagesPerConnection: z.number().int().positive().nullable().default(20),
    maxRecipientsPerMessage: z.number().int().positive().nullable().default(64000),
    /** Copy every NDR to this address (e.g. postmaster). */
    ndrCopyTo: z.string().optional(),
    /** "Forward all mail with unresolved recipients to host". */
    forwardUnresolvedTo: z.string().optional(),
    /** Badmail directory; relative paths are under the server's data directory. */
    badmailDirectory: z.string().default('badmail'),
  })
  .prefault({});

const connections = z
  .strictObject({
    /** Concurrent inbound connections; null = no limit. */
    maxInbound: z.number().int().positive().nullable().default(null),
    /** Time a session may sit idle between commands. */
    idleTimeout: duration.prefault(600).refine((s) => s > 0, 'must be longer than 0'),
    /** Time allowed between two pieces of message data. */
    dataTimeout: duration.prefault(600).refine((s) => s > 0, 'must be longer than 0'),
    /** Longest command line accepted, CRLF included (RFC 5321 minimum 512). */
    maxCommandLineLength: z.number().int().min(512).default(2048),
  })
  .prefault({});

const retrySchedule = z
  .strictObject({
    first: duration.prefault('10m'),
    second: duration.prefault('10m'),
    third: duration.prefault('10m'),
    subsequent: duration.prefault('15m'),
    delayNotification: duration.prefault('12h'),
    expiration: duration.prefault('2d'),
  })
  .prefault({});

const outboundSecurity = z
  .strictObject({
    auth: z.enum(['anonymous', 'basic']).default('anonymous'),
    username: z.string().optional(),
    password: z.string().optional(),
    tls: z.enum(['opportunistic', 'required', 'none']).default('opportunistic'),
    /** With tls: required, the peer's certificate must verify against the system CAs. */
    verifyCertificate: z.boolean().default(true),
  })
  .prefault({});

const delivery = z
  .strictObject({
    outbound: retrySchedule,
    local: retrySchedule,
    /** Glitch retry [004]: a transient failure is retried quickly before the schedule. */
    glitchRetryInterval: duration.prefault('60s'),
    glitchRetryCount: z.number().int().min(0).default(3),
    maxOutboundConnections: z.number().int().positive().nullable().default(1000),
    maxOutboundConnectionsPerDomain: z.number().int().positive().nullable().default(100),
    outboundPort: z.number().int().min(1).max(65535).default(25),
    outboundTimeout: duration.prefault('10m'),
    /** Smart host for everything this virtual server sends: "[192.0.2.1]" or an FQDN. */
    smartHost: z.string().optional(),
    /** External DNS servers used for delivery; empty = system resolver. */
    externalDnsServers: z.array(z.string()).default([]),
    heloInsteadOfEhlo: z.boolean().default(false),
    /** Outbound security for direct and smart-host delivery (connectors have their own). */
    outboundSecurity,
    maxHopCount: z.number().int().positive().default(15),
    /** Fully qualified name announced in banner, EHLO and Received headers. */
    fqdn: z.string().optional(),
  })
  .prefault({});

const protocolLog = z
  .strictObject({
    enabled: z.boolean().default(false),
    /** Log files rotate daily and are kept this many days. */
    retentionDays: z.number().int().positive().default(30),
  })
  .prefault({});

const filterSwitches = z
  .strictObject({
    connection: z.boolean().default(false),
    sender: z.boolean().default(false),
    recipient: z.boolean().default(false),
    greylisting: z.boolean().default(false),
  })
  .prefault({});

export const virtualServerSchema = z.strictObject({
  name,
  /** Address to listen on; "0.0.0.0" (All Unassigned) or "::" for all. */
  ip: z.string().default('0.0.0.0'),
  port: z.number().int().min(1).max(65535).default(25),
  authentication,
  tls,
  connectionControl,
  relay,
  messages: messageLimits,
  connections,
  delivery,
  /** VRFY answers 252 without looking anyone up unless enabled. */
  vrfy: z.boolean().default(false),
  /** Filters configured for the organisation, switched on for this binding. */
  filters: filterSwitches,
  protocolLog,
  /** Accept X-LINK2STATE / XEXCH50 from authenticated organisation servers. */
  exchangeVerbs: z.boolean().default(true),
  /** XEXCH50 from anonymous sessions (off: 504 5.7.4). */
  xexch50FromAnonymous: z.boolean().default(false),
  /** Resolve anonymous e-mail: show directory display names for anonymous senders. */
  resolveAnonymousEmail: z.boolean().default(false),
});
export type VirtualServerConfig = z.infer<typeof virtualServerSchema>;

// ---------------------------------------------------------------- servers, groups

const tracking = z
  .strictObject({
    enabled: z.boolean().default(true),
    logSubject: z.boolean().default(false),
    retentionDays: z.number().int().positive().default(7),
  })
  .prefault({});

const adminApi = z
  .strictObject({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8025),
    /** Required when host is not loopback. */
    token: z.string().optional(),
    readOnlyToken: z.string().optional(),
  })
  .prefault({});

export const serverSchema = z.strictObject({
  name,
  fqdn: z.string().trim().min(1),
  /** Everything this server writes lives under this directory. */
  dataDir: z.string().default('./var'),
  /** Address for the link state port and organisation traffic to this server. */
  address: z.string().default('127.0.0.1'),
  linkStatePort: z.number().int().min(1).max(65535).default(691),
  mailboxStores: z.array(z.strictObject({ name })).default([{ name: 'Mailbox Store' }]),
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
  /** scrypt hash set with `bridgehead user passwd`. */
  passwordHash: z.string().optional(),
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
  hideMembership: z.boolean().default(false),
  restrictions,
  permissions,
});

export const directorySchema = z
  .strictObject({
    backend: z.enum(['embedded', 'ldap']).default('embedded'),
    /** Another YAML file holding users, contacts and groups. */
    file: z.string().optional(),
    ldap: z
      .strictObject({
        url: z.string(),
        bindDn: z.string().optional(),
        bindPassword: z.string().optional(),
        baseDn: z.string(),
      })
      .optional(),
    users: z.array(userSchema).default([]),
    contacts: z.array(contactSchema).default([]),
    groups: z.array(groupSchema).default([]),
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
