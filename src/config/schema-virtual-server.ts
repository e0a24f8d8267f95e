// NAME      virtual server schema: the settings of one SMTP virtual server
// DESCRIPTION  Bindings, authentication, TLS, connection control, relay, message limits,
//   outbound delivery and the protocol log, with the spec's defaults (SPEC §1-§3). Split
//   from schema.ts so each part of the organisation file stays readable on its own.
import { isIP } from 'node:net';
import { z } from 'zod';
import { duration, sizeKb } from './units.js';

export const name = z.string().trim().min(1, 'must not be empty');

/** "192.0.2.1", "192.0.2.0/24", "192.0.2.0/255.255.255.0", "2001:db8::/32". */
export const ipRange = z.string().trim().min(1);

export const domainOrAddress = z.string().trim().min(1);

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
    /** Integrated authentication: AUTH SCRAM-SHA-256 against stored verifiers. */
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
    /**
     * How far a DATA or BDAT transfer may fall behind minDataRate: with no data at all, the
     * longest pause between two pieces (Postfix smtpd_timeout with a per-request deadline).
     */
    dataTimeout: duration.prefault(600).refine((s) => s > 0, 'must be longer than 0'),
    /** Bytes a second a transfer must keep up (Postfix smtpd_min_data_rate); 0: none. */
    minDataRate: z.number().int().min(0).default(500),
    /** Total time for one message's data, DATA or all its BDAT chunks; 0: no limit. */
    dataTimeLimit: duration.prefault('1h'),
    /** Longest command line accepted, CRLF included (RFC 5321 minimum 512). */
    maxCommandLineLength: z.number().int().min(512).default(2048),
  })
  .prefault({});

/** "normalize" is accepted too: Postfix's spelling of smtpd_forbid_bare_newline. */
const bareLineFeedAction = z.preprocess(
  (value) => (value === 'normalize' ? 'normalise' : value),
  z.enum(['reject', 'normalise']),
);

const bareLineFeed = z
  .strictObject({
    /**
     * A line ending in LF without CR, in a command or in DATA: refused (521 and close for a
     * command, 550 5.5.2 for the message), or read as if it were CRLF. BDAT is binary and
     * never looked at. The end of DATA is CRLF.CRLF whichever is chosen.
     */
    action: bareLineFeedAction.default('reject'),
    /** Clients whose bare LFs are normalised even when action is reject. */
    exceptions: z.array(ipRange).default([]),
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

export const outboundSecurity = z
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

const outbound = z
  .strictObject({
    /**
     * The address outbound SMTP connections (delivery, link state probes) come from.
     * Default: the virtual server's ip when it is a specific address, else the system's.
     */
    sourceAddress: z
      .string()
      .trim()
      .refine((v) => isIP(v) !== 0, 'must be an IPv4 or IPv6 address')
      .optional(),
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
  outbound,
  /** VRFY answers 252 without looking anyone up unless enabled. */
  vrfy: z.boolean().default(false),
  /** Filters configured for the organisation, switched on for this binding. */
  filters: filterSwitches,
  protocolLog,
  bareLineFeed,
  /** Accept X-LINK2STATE / XEXCH50 from authenticated organisation servers. */
  exchangeVerbs: z.boolean().default(true),
  /** XEXCH50 from anonymous sessions (off: 504 5.7.4). */
  xexch50FromAnonymous: z.boolean().default(false),
  /** Resolve anonymous e-mail: show directory display names for anonymous senders. */
  resolveAnonymousEmail: z.boolean().default(false),
});
export type VirtualServerConfig = z.infer<typeof virtualServerSchema>;
