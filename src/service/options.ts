// NAME      options: configuration -> the options each stage is built with
// DESCRIPTION
//   No I/O here but the DNS resolver handle and the machine's interface addresses. One function a stage: the retry schedules,
//   remote delivery's SMTP client settings, the categorizer's limits. All read the
//   server's outbound settings (config/outbound.ts).
import os from 'node:os';
import type { LoadedConfig } from '../config/load.js';
import { ownIdentity } from '../config/own-listeners.js';
import type { ServerConfig } from '../config/schema.js';
import { outboundSettings } from '../config/outbound.js';
import type { RetryPolicy } from '../queue/retry.js';
import type { RemoteSettings } from '../delivery/remote/remote-delivery.js';
import { makeResolver } from '../delivery/remote/dns.js';
import type { CategorizerContext } from '../categorizer/categorizer.js';

/** The local and the outbound retry schedules; glitch retries are shared [004]. */
export function retryPolicies(server: ServerConfig): { local: RetryPolicy; remote: RetryPolicy } {
  const d = outboundSettings(server).delivery;
  const policy = (p: typeof d.local): RetryPolicy => ({
    glitchInterval: d.glitchRetryInterval,
    glitchCount: d.glitchRetryCount,
    first: p.first,
    second: p.second,
    third: p.third,
    subsequent: p.subsequent,
    delayNotification: p.delayNotification,
    expiration: p.expiration,
  });
  return { local: policy(d.local), remote: policy(d.outbound) };
}

export function remoteSettings(
  server: ServerConfig,
  protocolLog: RemoteSettings['protocolLog'],
): RemoteSettings {
  const { delivery: d, heloName, sourceAddress } = outboundSettings(server);
  const security = d.outboundSecurity;
  const identity = ownIdentity(server);
  return {
    heloName,
    port: d.outboundPort,
    timeoutMs: d.outboundTimeout * 1000,
    heloOnly: d.heloInsteadOfEhlo,
    tls: security.tls,
    verifyCertificate: security.verifyCertificate,
    ...(security.auth === 'basic' && security.username
      ? { auth: { username: security.username, password: security.password ?? '' } }
      : {}),
    resolver: makeResolver(d.externalDnsServers),
    maxMessagesPerConnection: 100,
    ...(sourceAddress ? { localAddress: sourceAddress } : {}),
    ...(protocolLog ? { protocolLog } : {}),
    // Asked before each connection: interfaces may come and go while the server runs.
    self: () => ({ identity, localAddresses: localAddresses() }),
  };
}

/** Every address of this machine's interfaces (a 0.0.0.0 listener answers on each). */
function localAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/** Connections to one next hop and in total; unset means no limit of ours. */
export function connectionLimits(server: ServerConfig): { perQueue: number; total: number } {
  const d = outboundSettings(server).delivery;
  return {
    perQueue: d.maxOutboundConnectionsPerDomain ?? 100_000,
    total: d.maxOutboundConnections ?? 100_000,
  };
}

export function categorizerContext(
  server: ServerConfig,
  org: LoadedConfig['org'],
  facts: Pick<CategorizerContext, 'directory' | 'acceptedDomains'>,
): CategorizerContext {
  const outbound = outboundSettings(server);
  return {
    serverName: server.name,
    ...facts,
    forwardUnresolvedTo: outbound.messages.forwardUnresolvedTo,
    orgMaxRecipients: org.organisation.maxRecipientsPerMessage,
    orgMaxReceiveSizeKb: org.organisation.maxReceiveSizeKb,
    orgMaxSendSizeKb: org.organisation.maxSendSizeKb,
    maxHopCount: outbound.delivery.maxHopCount,
  };
}
