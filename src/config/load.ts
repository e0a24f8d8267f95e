// Reads, validates and cross-checks the organisation file. Errors carry the path of the
// offending key so `bridgehead config check` can print one line per problem.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import {
  organisationSchema,
  type OrganisationConfig,
  type OrganisationInput,
  type ServerConfig,
  type RoutingGroupConfig,
} from './schema.js';
import { parseIpRange } from '../net/ip-range.js';
import { mailboxFolderProblems } from './mailbox-folders.js';
import { mailboxStoreProblems } from './mailbox-stores.js';
import { smartHostCheck } from './smart-hosts.js';
import { returnConnectorWarnings } from './return-connectors.js';

export interface ConfigProblem {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly problems: ConfigProblem[],
    readonly file?: string,
  ) {
    super(
      `${file ?? 'configuration'} is not valid:\n` +
        problems.map((p) => `  ${p.path}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  org: OrganisationConfig;
  /** Problems that do not stop a server but an administrator should see. */
  warnings: ConfigProblem[];
  /** Directory of the config file; relative paths in it are resolved from here. */
  baseDir: string;
  file?: string;
}

function pathText(p: readonly PropertyKey[]): string {
  return p.reduce<string>(
    (acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)),
    '',
  );
}

/** The embedded defaults: a single-server organisation on loopback port 2525. */
export function defaultOrganisation(): OrganisationInput {
  const host = os.hostname() || 'localhost';
  const fqdn = host.includes('.') ? host : `${host}.localdomain`;
  return {
    organisation: { name: 'First Organization' },
    routingGroups: [
      {
        name: 'First Routing Group',
        servers: [
          {
            name: host.split('.')[0]!.toUpperCase(),
            fqdn,
            dataDir: './var',
            virtualServers: [{ name: 'Default SMTP Virtual Server', ip: '127.0.0.1', port: 2525 }],
          },
        ],
      },
    ],
    recipientPolicies: [
      { name: 'Default Policy', addresses: [{ address: '@example.com', authoritative: true }] },
    ],
    directory: {
      users: [
        {
          name: 'Postmaster',
          addresses: ['postmaster@example.com'],
          mailbox: { server: host.split('.')[0]!.toUpperCase() },
        },
      ],
    },
  };
}

export function allServers(org: OrganisationConfig): { group: RoutingGroupConfig; server: ServerConfig }[] {
  return org.routingGroups.flatMap((group) => group.servers.map((server) => ({ group, server })));
}

/** Cross-field rules the schema alone cannot state. */
export function crossCheck(org: OrganisationConfig): { errors: ConfigProblem[]; warnings: ConfigProblem[] } {
  const errors: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const servers = allServers(org);
  const serverNames = new Map<string, string>();
  const groupNames = new Set<string>();

  org.routingGroups.forEach((group, gi) => {
    const gpath = `routingGroups[${gi}]`;
    if (groupNames.has(group.name.toLowerCase())) {
      errors.push({ path: `${gpath}.name`, message: `routing group "${group.name}" is defined twice` });
    }
    groupNames.add(group.name.toLowerCase());
    if (group.master && !group.servers.some((s) => s.name === group.master)) {
      errors.push({
        path: `${gpath}.master`,
        message: `"${group.master}" is not a server of this routing group`,
      });
    }
    group.servers.forEach((server, si) => {
      const spath = `${gpath}.servers[${si}]`;
      const prior = serverNames.get(server.name.toLowerCase());
      if (prior) errors.push({ path: `${spath}.name`, message: `server "${server.name}" is also ${prior}` });
      serverNames.set(server.name.toLowerCase(), spath);

      const api = server.adminApi;
      const loopback = api.host === 'localhost' || api.host === '::1' || /^127\./.test(api.host);
      if (!loopback && !api.token && !api.readOnlyToken && !api.open) {
        errors.push({
          path: `${spath}.adminApi.token`,
          message: `the admin API listens on ${api.host}, beyond loopback: set a token`,
        });
      }
      if (api.open && !loopback) {
        errors.push({
          path: `${spath}.adminApi.open`,
          message: `the admin API listens on ${api.host}, beyond loopback: it cannot be open`,
        });
      }
      if (api.open && (api.token || api.readOnlyToken)) {
        errors.push({
          path: `${spath}.adminApi.open`,
          message: 'an open admin API takes no token: remove open or the token',
        });
      }
      const bindings = new Map<string, string>();
      const vsNames = new Set<string>();
      server.virtualServers.forEach((vs, vi) => {
        const vpath = `${spath}.virtualServers[${vi}]`;
        if (vsNames.has(vs.name.toLowerCase())) {
          errors.push({
            path: `${vpath}.name`,
            message: `virtual server "${vs.name}" is defined twice on this server`,
          });
        }
        vsNames.add(vs.name.toLowerCase());
        // A wildcard address holds the port on every address of its family.
        const wildcard = vs.ip === '0.0.0.0' || vs.ip === '::';
        for (const [key, other] of bindings) {
          const [ip, port] = key.split('|') as [string, string];
          const otherWildcard = ip === '0.0.0.0' || ip === '::';
          if (Number(port) === vs.port && (ip === vs.ip || wildcard || otherWildcard)) {
            errors.push({
              path: `${vpath}.port`,
              message: `${vs.ip}:${vs.port} is already used by ${other}; two virtual servers on one IP and port would loop mail (5.3.5)`,
            });
          }
        }
        bindings.set(`${vs.ip}|${vs.port}`, `virtual server "${vs.name}"`);

        const m = vs.messages;
        if (
          m.maxMessageSizeKb !== null &&
          m.maxSessionSizeKb !== null &&
          m.maxSessionSizeKb <= m.maxMessageSizeKb
        ) {
          errors.push({
            path: `${vpath}.messages.maxSessionSizeKb`,
            message: `must be larger than maxMessageSizeKb (${m.maxMessageSizeKb})`,
          });
        }
        const lists: [string, readonly string[]][] = [
          ['connectionControl.list', vs.connectionControl.list],
          ['relay.list', vs.relay.list],
          ['bareLineFeed.exceptions', vs.bareLineFeed.exceptions],
        ];
        for (const [key, list] of lists) {
          list.forEach((entry, i) => {
            if (!parseIpRange(entry)) {
              errors.push({
                path: `${vpath}.${key}[${i}]`,
                message: `"${entry}" is not an IP address or network/mask`,
              });
            }
          });
        }
        if (vs.tls.certFile && !vs.tls.keyFile) {
          errors.push({ path: `${vpath}.tls.keyFile`, message: 'a certificate needs its key' });
        }
        if (
          vs.relay.mode === 'allExcept' ||
          vs.relay.list.some((r) => ['0.0.0.0/0', '::/0'].includes(r.replace(/\s/g, '')))
        ) {
          warnings.push({ path: `${vpath}.relay`, message: 'this virtual server is an open relay' });
        }
        if (vs.authentication.requireTls && !vs.tls.enabled) {
          errors.push({
            path: `${vpath}.authentication.requireTls`,
            message: 'requires TLS but tls.enabled is false',
          });
        }
      });
    });
  });

  org.routingGroups.forEach((group, gi) => {
    group.connectors.forEach((c, ci) => {
      const cpath = `routingGroups[${gi}].connectors[${ci}]`;
      for (const b of c.localBridgeheads) {
        if (!group.servers.some((s) => s.name === b.split('/')[0])) {
          errors.push({
            path: `${cpath}.localBridgeheads`,
            message: `"${b}" is not a server of "${group.name}"`,
          });
        }
      }
      if (c.type === 'smtp') {
        c.addressSpaces.forEach((s, si) => {
          // "Do not select this check box if you are creating a connector with an address
          // space of *" [003:2939, 4548]: it would relay for anyone to anywhere.
          if (typeof s !== 'string' && s.allowRelay && s.pattern.trim() === '*') {
            errors.push({
              path: `${cpath}.addressSpaces[${si}].allowRelay`,
              message: 'relaying to "*" would make an open relay; name the domains',
            });
          }
        });
      }
      if (c.type === 'routingGroup') {
        const target = org.routingGroups.find((g) => g.name === c.to);
        if (!target) errors.push({ path: `${cpath}.to`, message: `no routing group "${c.to}"` });
        else {
          for (const b of c.remoteBridgeheads) {
            if (!target.servers.some((s) => s.name === b.split('/')[0])) {
              errors.push({
                path: `${cpath}.remoteBridgeheads`,
                message: `"${b}" is not a server of "${c.to}"`,
              });
            }
          }
        }
      }
    });
  });

  const filterLists: [string, readonly string[]][] = [
    ['filters.connection.accept', org.filters.connection.accept],
    ['filters.connection.deny', org.filters.connection.deny],
    ['filters.greylisting.whitelist', org.filters.greylisting.whitelist],
  ];
  for (const [key, list] of filterLists) {
    list.forEach((entry, i) => {
      if (!parseIpRange(entry))
        errors.push({ path: `${key}[${i}]`, message: `"${entry}" is not an IP address or network/mask` });
    });
  }
  if (servers.length > 1 && !org.organisation.secret) {
    warnings.push({
      path: 'organisation.secret',
      message:
        'several servers but no organisation secret: servers cannot authenticate to each other (link state, relay)',
    });
  }
  const fqdns = new Set(servers.map((s) => s.server.fqdn.toLowerCase()));
  org.recipientPolicies.forEach((policy, pi) => {
    policy.addresses.forEach((a, ai) => {
      const domain = a.address.slice(a.address.lastIndexOf('@') + 1).toLowerCase();
      if (fqdns.has(domain)) {
        errors.push({
          path: `recipientPolicies[${pi}].addresses[${ai}]`,
          message: `"${domain}" is a server's FQDN; mail for it would loop back (5.4.8)`,
        });
      }
    });
  });

  org.directory.users.forEach((u, ui) => {
    if (!serverNames.has(u.mailbox.server.toLowerCase())) {
      errors.push({
        path: `directory.users[${ui}].mailbox.server`,
        message: `no server "${u.mailbox.server}"`,
      });
    }
  });

  errors.push(...mailboxFolderProblems(org));
  errors.push(...mailboxStoreProblems(org));
  const smartHosts = smartHostCheck(org);
  errors.push(...smartHosts.errors);
  warnings.push(...smartHosts.warnings);
  warnings.push(...returnConnectorWarnings(org));
  return { errors, warnings };
}

function yamlProblems(doc: YAML.Document.Parsed): ConfigProblem[] {
  return doc.errors.map((e) => ({
    path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(yaml)',
    message: e.message.split('\n')[0]!,
  }));
}

/** Validates a parsed document (already plain data). */
export function validateOrganisation(raw: unknown, baseDir: string, file?: string): LoadedConfig {
  const data = (raw ?? {}) as Record<string, unknown>;
  // A directory file holds users, contacts and groups apart from the topology.
  const dir = data.directory as Record<string, unknown> | undefined;
  if (dir && typeof dir.file === 'string') {
    const dirFile = path.resolve(baseDir, dir.file);
    let extra: unknown;
    try {
      extra = YAML.parse(readFileSync(dirFile, 'utf8'));
    } catch (err) {
      throw new ConfigError(
        [{ path: 'directory.file', message: `cannot read ${dirFile}: ${(err as Error).message}` }],
        file,
      );
    }
    const e = (extra ?? {}) as Record<string, unknown[]>;
    data.directory = {
      ...dir,
      users: [...((dir.users as unknown[]) ?? []), ...(e.users ?? [])],
      contacts: [...((dir.contacts as unknown[]) ?? []), ...(e.contacts ?? [])],
      groups: [...((dir.groups as unknown[]) ?? []), ...(e.groups ?? [])],
    };
  }
  const parsed = organisationSchema.safeParse(data);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ path: pathText(i.path) || '(top level)', message: i.message })),
      file,
    );
  }
  const { errors, warnings } = crossCheck(parsed.data);
  if (errors.length) throw new ConfigError(errors, file);
  return { org: parsed.data, warnings, baseDir, file };
}

export function parseConfigText(text: string, file?: string): LoadedConfig {
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) throw new ConfigError(yamlProblems(doc), file);
  return validateOrganisation(doc.toJS(), file ? path.dirname(path.resolve(file)) : process.cwd(), file);
}

export function loadConfigFile(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      [{ path: '(file)', message: `cannot read: ${(err as NodeJS.ErrnoException).message}` }],
      file,
    );
  }
  return parseConfigText(text, file);
}

export function loadDefaultConfig(): LoadedConfig {
  return validateOrganisation(defaultOrganisation(), process.cwd());
}

/** Picks the server this process runs as: by name, or the only server there is. */
export function selectServer(
  org: OrganisationConfig,
  name?: string,
): { group: RoutingGroupConfig; server: ServerConfig } {
  const servers = allServers(org);
  if (name) {
    const found = servers.find((s) => s.server.name.toLowerCase() === name.toLowerCase());
    if (!found) {
      throw new ConfigError([
        {
          path: '--server',
          message: `no server "${name}" (servers: ${servers.map((s) => s.server.name).join(', ')})`,
        },
      ]);
    }
    return found;
  }
  if (servers.length !== 1) {
    throw new ConfigError([
      {
        path: '--server',
        message: `the organisation has ${servers.length} servers; name one with --server (${servers
          .map((s) => s.server.name)
          .join(', ')})`,
      },
    ]);
  }
  return servers[0]!;
}
