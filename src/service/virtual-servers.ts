// NAME      virtual servers: the SMTP virtual servers of one server, with their filters
// DESCRIPTION
//   Builds each virtual server's runtime (smtp/server) with its hygiene (connection,
//   sender and recipient filters, block lists, greylisting), TLS context and protocol log,
//   and starts listening. Every filter rejection becomes a tracking event (and a counter).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { allServers } from '../config/load.js';
import type { ServerConfig, VirtualServerConfig } from '../config/schema.js';
import type { AcceptedDomains } from '../directory/accepted-domains.js';
import type { Directory } from '../directory/directory.js';
import { Filters } from '../hygiene/filters.js';
import { BlockListChecker } from '../hygiene/blocklists.js';
import { Greylist } from '../hygiene/greylist.js';
import { SessionHygiene, type HygieneEvent } from '../hygiene/session-hygiene.js';
import { makeResolver } from '../delivery/remote/dns.js';
import type { EventLog } from '../logs/event-log.js';
import { ProtocolLog } from '../logs/protocol-log.js';
import type { Spool, SpooledMessage } from '../queue/spool.js';
import { VirtualServerRuntime, type VirtualServerDeps } from '../smtp/server/virtual-server.js';
import type { LinkStateService } from '../linkstate/service.js';
import type { MessageTracking } from '../tracking/tracking.js';
import { trackingEvent } from '../tracking/events.js';
import { tlsContextFor } from './tls-contexts.js';
import { FreeSpace } from '../queue/free-space.js';
import { buildTopology } from '../routing/topology.js';
import { isRelayDomain, relayDomainsOf as relayDomains } from '../routing/relay-domains.js';

export interface VirtualServerWiring {
  loaded: LoadedConfig;
  server: ServerConfig;
  dataDir: string;
  directory: Directory;
  acceptedDomains: AcceptedDomains;
  spool: Spool;
  eventLog: EventLog;
  tracking: MessageTracking;
  linkState?: LinkStateService;
  onAccepted: (m: SpooledMessage) => void;
  onArchived: (m: SpooledMessage, reason: string) => void;
  remoteTriggered: VirtualServerDeps['remoteTriggered'];
  /** Free space of the spool's file system, shared by the virtual servers (MAIL's reserve). */
  freeSpace?: FreeSpace;
  /** The organisation as last loaded (SIGHUP applies connectors at once); default `loaded`. */
  currentOrg?: () => LoadedConfig['org'];
}

/**
 * The connectors' relay domains for one virtual server (routing/relay-domains.ts), worked
 * out again when the organisation is reloaded: connectors apply at once on SIGHUP.
 */
function relayDomainsOf(
  currentOrg: () => LoadedConfig['org'],
  server: string,
  virtualServer: string,
): (domain: string) => boolean {
  let seen: { org: LoadedConfig['org']; patterns: string[] } | undefined;
  return (domain) => {
    const org = currentOrg();
    if (seen?.org !== org) seen = { org, patterns: relayDomains(buildTopology(org), server, virtualServer) };
    return isRelayDomain(seen.patterns, domain);
  };
}

/** Greylisting's database, when any virtual server greylists. */
export async function openGreylist(org: LoadedConfig['org'], server: ServerConfig, dataDir: string) {
  if (!server.virtualServers.some((v) => v.filters.greylisting)) return undefined;
  const grey = org.filters.greylisting;
  await fsp.mkdir(path.join(dataDir, 'hygiene'), { recursive: true, mode: 0o700 });
  return new Greylist(
    path.join(dataDir, 'hygiene', 'greylist.db'),
    grey.delay * 1000,
    grey.expiry * 1000,
    grey.whitelist,
  );
}

function filtered(w: VirtualServerWiring, virtualServer: string, e: HygieneEvent): void {
  const v = e.verdict;
  w.tracking.write(
    trackingEvent.filtered({
      stage: e.stage,
      ip: e.ip,
      ...(e.sender !== undefined ? { sender: e.sender } : {}),
      ...(e.recipient ? { recipient: e.recipient } : {}),
      ...(v.action === 'reject' ? { status: v.status } : {}),
      detail:
        v.action === 'reject'
          ? `${v.code ? `${v.code} ` : ''}${v.status} ${v.text}`
          : v.action === 'archive'
            ? v.reason
            : '',
      connectorId: `${w.server.name}\\${virtualServer}`,
    }),
  );
}

function hygieneFor(
  w: VirtualServerWiring,
  vs: VirtualServerConfig,
  filters: Filters,
  greylist: Greylist | undefined,
) {
  const org = w.loaded.org;
  if (!Object.values(vs.filters).some(Boolean)) return undefined;
  return new SessionHygiene(
    vs.filters,
    filters,
    org.filters.connection.blockLists.length
      ? new BlockListChecker(
          org.filters.connection.blockLists,
          // One try: the check's deadline is the whole budget (hygiene/blocklists.ts).
          (timeoutMs) => makeResolver(vs.delivery.externalDnsServers, timeoutMs, 1),
          w.eventLog.category('Connection Manager'),
        )
      : undefined,
    greylist,
    w.directory,
    w.acceptedDomains,
    (e) => filtered(w, vs.name, e),
  );
}

/** One statfs reader for the spool's file system, made on first use and shared. */
function freeSpaceOf(w: VirtualServerWiring): () => Promise<number | undefined> {
  const space = (w.freeSpace ??= new FreeSpace(w.spool.dir, {
    onError: (err) =>
      w.eventLog
        .category('SMTP Protocol')
        .error({ err, dir: w.spool.dir }, 'cannot read the free space of the spool; MAIL is not checked'),
  }));
  return () => space.available();
}

/** Builds one virtual server and starts it listening; throws with the address if it cannot. */
export async function startVirtualServer(
  w: VirtualServerWiring,
  vs: VirtualServerConfig,
  shared: { filters: Filters; greylist: Greylist | undefined },
): Promise<VirtualServerRuntime> {
  const org = w.loaded.org;
  const runtime = new VirtualServerRuntime({
    serverName: w.server.name,
    fqdn: w.server.fqdn,
    config: vs,
    acceptedDomains: w.acceptedDomains,
    directory: w.directory,
    spool: w.spool,
    orgMaxRecipients: org.organisation.maxRecipientsPerMessage,
    tlsContext: await tlsContextFor(vs, {
      baseDir: w.loaded.baseDir,
      dataDir: w.dataDir,
      fqdn: w.server.fqdn,
    }),
    protocolLog: vs.protocolLog.enabled
      ? await ProtocolLog.open(w.dataDir, 'receive', vs.name, vs.protocolLog.retentionDays)
      : undefined,
    log: w.eventLog.category('SMTP Protocol'),
    onAccepted: w.onAccepted,
    onArchived: w.onArchived,
    hygiene: hygieneFor(w, vs, shared.filters, shared.greylist),
    onRefused: (ip) =>
      filtered(w, vs.name, {
        stage: 'connection control',
        ip,
        verdict: { action: 'reject', code: 0, status: '5.7.1', text: 'dropped at connect' },
      }),
    ...(w.linkState ? { linkState: w.linkState } : {}),
    organisationServers: allServers(org).map((x) => x.server.name),
    remoteTriggered: w.remoteTriggered,
    freeSpace: freeSpaceOf(w),
    queueMinFreeKb: w.server.queueMinFreeKb,
    relayDomain: relayDomainsOf(w.currentOrg ?? (() => org), w.server.name, vs.name),
  });
  try {
    await runtime.listen();
  } catch (err) {
    throw new Error(
      `virtual server "${vs.name}" cannot listen on ${vs.ip}:${vs.port}: ${(err as Error).message}`,
    );
  }
  return runtime;
}
