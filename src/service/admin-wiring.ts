// NAME      admin wiring: the admin API and metrics of one server process
// DESCRIPTION
//   Builds the admin API (admin/api.ts) over the queue viewer and operations, message
//   tracking, the diagnostic log and link state, with the Prometheus metrics fed by
//   tracking events. If its port cannot be had, the transport runs without it and the
//   operator is told why.
//   Token: adminApi.token when configured; else, unless adminApi.open, the one kept in
//   <dataDir>/admin.token (admin/token.ts), made at the first start. If that file can be
//   neither read nor made, the API does not start: it never falls back to open.
import type { FastifyInstance } from 'fastify';
import type { ServerConfig } from '../config/schema.js';
import { buildAdminApi } from '../admin/api.js';
import { TransportMetrics } from '../admin/metrics.js';
import { adminTokenFile, ensureAdminToken } from '../admin/token.js';
import type { EventLog } from '../logs/event-log.js';
import type { MessageTracking } from '../tracking/tracking.js';
import type { LinkStateService } from '../linkstate/service.js';
import type { QueueAdmin } from '../queue/admin/index.js';
import type { VirtualServerRuntime } from '../smtp/server/virtual-server.js';

export interface AdminWiring {
  server: ServerConfig;
  dataDir: string;
  queues: QueueAdmin;
  tracking: MessageTracking;
  eventLog: EventLog;
  linkState: () => LinkStateService | undefined;
  virtualServers: () => VirtualServerRuntime[];
  startedAt: number;
  /** The LDAP directory's counters, when that backend is in use. */
  directoryCounters?: () => Readonly<Record<string, number>> | undefined;
}

export interface AdminApi {
  metrics: TransportMetrics;
  admin?: FastifyInstance;
  /** Where the admin API listens ("http://host:port"), or why it does not. */
  url?: string;
  error?: string;
  /** The token file the API requires the token of, when no token is configured. */
  tokenFile?: string;
}

/** The administrator token: configured, or the one of <dataDir>/admin.token. */
async function administratorToken(
  w: AdminWiring,
): Promise<{ token?: string; tokenFile?: string } | { error: string }> {
  const cfg = w.server.adminApi;
  if (cfg.open || cfg.token) return { token: cfg.token };
  try {
    const t = await ensureAdminToken(w.dataDir);
    if (t.created) w.eventLog.service.info({ file: t.file }, 'admin API token made');
    if (t.tightened)
      w.eventLog.service.warn({ file: t.file }, 'admin API token file was readable by others: now 0600');
    return { token: t.token, tokenFile: t.file };
  } catch (err) {
    return {
      error: `admin API not started: cannot read or make its token ${adminTokenFile(w.dataDir)}: ${(err as Error).message}`,
    };
  }
}

export async function startAdminApi(w: AdminWiring): Promise<AdminApi> {
  const cfg = w.server.adminApi;
  const metrics = new TransportMetrics({
    queues: () => w.queues.listQueues(),
    inboundConnections: () =>
      w.virtualServers().map((v) => ({ virtualServer: v.config.name, count: v.connectionCount })),
    ...(w.directoryCounters ? { directory: w.directoryCounters } : {}),
  });
  w.tracking.listeners.push((e) => metrics.observe(e));
  const credentials = await administratorToken(w);
  if ('error' in credentials) {
    w.eventLog.service.error(credentials.error);
    return { metrics, error: credentials.error };
  }
  const admin = buildAdminApi({
    serverName: w.server.name,
    fqdn: w.server.fqdn,
    engine: w.queues,
    tracking: w.tracking,
    eventLog: w.eventLog,
    metrics,
    token: credentials.token,
    readOnlyToken: cfg.readOnlyToken,
    open: cfg.open,
    linkState: () => {
      const ls = w.linkState();
      return ls
        ? { master: ls.masterName, isMaster: ls.isMaster, port: ls.port, digest: ls.digest, table: ls.table }
        : undefined;
    },
    info: () => ({
      uptimeSeconds: Math.round((Date.now() - w.startedAt) / 1000),
      dataDir: w.dataDir,
      virtualServers: w.virtualServers().map((v) => ({
        name: v.config.name,
        address: v.address(),
        connections: v.connectionCount,
        accepted: v.accepted_total,
      })),
    }),
  });
  try {
    const url = await admin.listen({ host: cfg.host, port: cfg.port });
    return {
      metrics,
      admin,
      url: url.replace('[::1]', '127.0.0.1'),
      ...(credentials.tokenFile ? { tokenFile: credentials.tokenFile } : {}),
    };
  } catch (err) {
    // The transport keeps running without its admin API; the operator is told why.
    const error = `admin API cannot listen on ${cfg.host}:${cfg.port}: ${(err as Error).message}`;
    w.eventLog.service.error(error);
    await admin.close().catch(() => undefined);
    return { metrics, error };
  }
}
