// The next hop of a routed recipient, as this server sees the organisation: SMTP connectors
// by address space and cost, routing group paths to other servers, and without connectors
// the virtual server's smart host or DNS [SPEC §5]. The queuing engine asks; `route test`
// asks the same object, so what the CLI explains is what the server does.
import type { OrganisationConfig, ServerConfig } from '../config/schema.js';
import { allServers } from '../config/load.js';
import { QUEUE, SCHEDULE_NEVER_RUNS } from '../queue/names.js';
import type { NextHop } from './next-hop.js';
import type { Route } from '../categorizer/categorizer.js';
import {
  addressSpaceMatch,
  routeToDomain,
  routeToServer,
  unusableNextHops,
  type Topology,
} from './routing.js';
import { buildTopology, senderIdentities } from './topology.js';
import { nextOpening, scheduleOpen } from './schedule.js';
import { outboundSettings } from '../config/outbound.js';

/** What routing needs to know of a message for content restrictions and oversize schedules. */
export interface MessageFacts {
  size: number;
  priority: 'high' | 'normal' | 'low';
  /** System messages: delivery status notifications and other mail from the null sender. */
  system: boolean;
}

export class Router {
  private readonly self: ServerConfig;

  constructor(
    private readonly org: OrganisationConfig,
    serverName: string,
    /** Link state: which servers are up (all, until link state says otherwise). */
    private readonly serverUp: (name: string) => boolean = () => true,
    /** Link state: connector states the owning routing group's master has published. */
    private readonly connectorState: (name: string) => 'up' | 'down' | undefined = () => undefined,
  ) {
    const found = allServers(org).find((s) => s.server.name.toLowerCase() === serverName.toLowerCase());
    if (!found) throw new Error(`no server ${serverName} in the organisation`);
    this.self = found.server;
  }

  private topologyView: Topology | undefined;

  /** The organisation as routing sees it (every server assumed up until link state says otherwise). */
  topology(): Topology {
    this.topologyView ??= buildTopology(this.org, this.serverUp, this.connectorState);
    return this.topologyView;
  }

  /** Delivery straight to another server of the organisation, authenticated with the organisation secret. */
  private toServer(name: string): NextHop {
    const target = allServers(this.org).find(
      (s) => s.server.name.toLowerCase() === name.toLowerCase(),
    )?.server;
    if (!target)
      return {
        queue: QUEUE.unreachable,
        retryAt: Date.now() + 60_000,
        hold: 'no-route',
        reason: `no server ${name}`,
      };
    const secret = this.org.organisation.secret;
    return {
      queue: target.fqdn,
      destination: {
        type: 'server',
        name: target.name,
        host: target.address,
        port: outboundSettings(target).port,
        ...(secret ? { auth: { username: this.self.name, password: secret }, verifyCertificate: false } : {}),
      },
    };
  }

  private defaultRemote(domain: string): NextHop {
    const d = outboundSettings(this.self).delivery;
    if (d.smartHost) {
      const hosts = d.smartHost.split(/[\s,;]+/).filter(Boolean);
      return { queue: d.smartHost, destination: { type: 'smarthost', hosts } };
    }
    return { queue: domain, destination: { type: 'dns', domain } };
  }

  private viaConnector(name: string, domain: string, message?: MessageFacts): NextHop {
    const c = this.org.routingGroups.flatMap((g) => g.connectors).find((x) => x.name === name);
    if (!c || c.type !== 'smtp') return this.defaultRemote(domain);
    const now = new Date();
    // Messages over the oversize threshold follow the connector's oversize schedule.
    const oversize =
      message !== undefined &&
      c.schedule.oversizeThresholdKb !== null &&
      message.size > c.schedule.oversizeThresholdKb * 1024;
    const schedule = oversize
      ? { mode: 'windows' as const, windows: c.schedule.oversizeWindows }
      : c.schedule;
    if (!scheduleOpen(schedule, now)) {
      const next = nextOpening(schedule, now);
      return {
        queue: c.name,
        retryAt: next ?? now.getTime() + 3600_000,
        hold: 'schedule',
        reason: oversize
          ? 'Connector schedule: oversize message outside its windows'
          : next === undefined
            ? SCHEDULE_NEVER_RUNS
            : 'Connector schedule: outside its windows',
      };
    }
    if (c.queueForRemoteTriggeredDelivery.enabled && !this.released(c.name, domain)) {
      return {
        queue: c.name,
        retryAt: now.getTime() + 3600_000,
        hold: 'remote-triggered',
        reason: 'Remote triggered delivery: held until the remote side sends ETRN or TURN',
      };
    }
    const sec = c.outboundSecurity;
    const overrides = {
      connector: c.name,
      heloOnly: c.heloInsteadOfEhlo,
      tls: sec.tls,
      verifyCertificate: sec.verifyCertificate,
      // A connector's own security applies: anonymous means anonymous.
      auth:
        sec.auth === 'basic' && sec.username
          ? { username: sec.username, password: sec.password ?? '' }
          : null,
    };
    if (c.smartHosts.length)
      return { queue: c.name, destination: { type: 'smarthost', hosts: c.smartHosts, ...overrides } };
    return { queue: domain, destination: { type: 'dns', domain, ...overrides } };
  }

  /**
   * Next hop for a recipient the categorizer sent to routing [SPEC §5]: SMTP connectors by
   * address space and cost, routing group paths to other servers, and without connectors
   * the virtual server's smart host or DNS.
   */
  nextHop(route: Route, sender: string, message?: MessageFacts): NextHop {
    return this.explain(route, sender, message).hop;
  }

  /** The decision and the reasons for it, as `bridgehead route test` prints them. */
  explain(route: Route, sender: string, message?: MessageFacts): { hop: NextHop; why: string[] } {
    const self = this.self.name;
    const topo = this.topology();
    const hold = (why: string[], reason: 'no-route' | 'link-down' = 'link-down') => ({
      hop: { queue: QUEUE.unreachable, retryAt: Date.now() + 60_000, hold: reason, reason: why.join('; ') },
      why,
    });
    switch (route.kind) {
      case 'remote': {
        if (!topo.connectors.some((c) => c.type === 'smtp')) {
          return {
            hop: this.defaultRemote(route.domain),
            why: ['no SMTP connector in the organisation: smart host or DNS of the virtual server'],
          };
        }
        const r = routeToDomain(topo, self, route.domain, {
          address: sender,
          identities: senderIdentities(this.org, sender),
          ...(message ? { message } : {}),
        });
        if (r.kind === 'none') {
          return {
            hop: this.defaultRemote(route.domain),
            why: [...r.why, 'smart host or DNS of the virtual server'],
          };
        }
        if (r.kind === 'restricted') {
          const tooBig = r.why.some((w) => w.includes('larger than'));
          return {
            hop: {
              fail: tooBig
                ? {
                    code: 552,
                    status: '5.3.4',
                    text: 'The message is too large for the connector to this address space.',
                  }
                : {
                    code: 550,
                    status: '5.7.1',
                    text: 'The sender is not allowed to send to this address space.',
                  },
            },
            why: r.why,
          };
        }
        if (r.kind === 'unreachable') return hold(r.why);
        if (r.nextHop.toLowerCase() !== self.toLowerCase())
          return { hop: this.toServer(r.nextHop), why: r.why };
        return { hop: this.viaConnector(r.connector.name, route.domain, message), why: r.why };
      }
      case 'forwardHost':
        return {
          hop: { queue: route.host, destination: { type: 'smarthost', hosts: [route.host] } },
          why: ['unresolved recipient in a shared address space: forwarded to the configured host'],
        };
      case 'server': {
        const r = routeToServer(topo, self, route.server);
        if (r.kind !== 'connector') return hold(r.why);
        return { hop: this.toServer(r.nextHop), why: r.why };
      }
      case 'local':
        return {
          hop: { queue: QUEUE.local, retryAt: 0, hold: 'no-route', reason: 'local' },
          why: ['mailbox on this server: Local delivery'],
        };
      default:
        return hold(['no route'], 'no-route');
    }
  }

  private readonly releases = new Map<string, number>();

  private released(connector: string, domain: string): boolean {
    const until = this.releases.get(`${connector}|${domain.toLowerCase()}`) ?? 0;
    return until > Date.now();
  }

  /**
   * ETRN / ATRN: the connectors holding mail for remote triggered delivery whose address
   * spaces cover `domain` are opened for it for `forMs` [RFC 1985, 003:534-539].
   */
  releaseRemoteTriggered(domain: string, forMs = 600_000): string[] {
    const out: string[] = [];
    for (const c of this.org.routingGroups.flatMap((g) => g.connectors)) {
      if (c.type !== 'smtp' || !c.queueForRemoteTriggeredDelivery.enabled) continue;
      const spaces = this.topology().connectors.find((x) => x.name === c.name)?.addressSpaces ?? [];
      if (!spaces.some((a) => addressSpaceMatch(a.pattern, domain) >= 0)) continue;
      this.releases.set(`${c.name}|${domain.toLowerCase()}`, Date.now() + forMs);
      out.push(c.name);
    }
    return out;
  }

  /** Next hops whose queued mail must be routed again (link state marks them down). */
  unusableNextHops(): { servers: string[]; connectors: string[] } {
    return unusableNextHops(this.topology(), this.self.name);
  }

  /** Forget the cached view (link state changed). */
  invalidate(): void {
    this.topologyView = undefined;
  }
}
