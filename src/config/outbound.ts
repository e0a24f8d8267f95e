// NAME      outbound settings: how this server sends
// DESCRIPTION
//   No I/O here. Exchange 2003 sends with the SMTP virtual server that owns the outbound
//   queues; Bridgehead sends with its first virtual server: its delivery settings (retry
//   schedule, smart host, outbound security, limits), its message settings (badmail, NDR
//   copies, unresolved recipients) and its port, where the organisation's other servers
//   connect. Everything that needs "the server's outbound settings" asks here.
import type { ServerConfig, VirtualServerConfig } from './schema.js';

export interface OutboundSettings {
  virtualServer: VirtualServerConfig;
  delivery: VirtualServerConfig['delivery'];
  messages: VirtualServerConfig['messages'];
  /** The name this server gives in HELO/EHLO when it sends. */
  heloName: string;
  /** Where other servers of the organisation deliver to this one. */
  port: number;
  /**
   * The address outbound connections come from: `outbound.sourceAddress`, else the
   * virtual server's IP when it is a specific address (not 0.0.0.0 / ::), else the
   * system's choice (undefined).
   */
  sourceAddress: string | undefined;
}

/** The virtual server's own outbound source address, if it has one (no I/O). */
export function sourceAddressOf(vs: Pick<VirtualServerConfig, 'ip' | 'outbound'>): string | undefined {
  if (vs.outbound.sourceAddress) return vs.outbound.sourceAddress;
  return ['0.0.0.0', '::', ''].includes(vs.ip.trim()) ? undefined : vs.ip.trim();
}

export function outboundSettings(server: ServerConfig): OutboundSettings {
  const virtualServer = server.virtualServers[0]!;
  return {
    virtualServer,
    delivery: virtualServer.delivery,
    messages: virtualServer.messages,
    heloName: virtualServer.delivery.fqdn ?? server.fqdn,
    port: virtualServer.port,
    sourceAddress: sourceAddressOf(virtualServer),
  };
}
