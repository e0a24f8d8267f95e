// Link state on one server [003:8754-9230].
//
// Inside a routing group: the routing group master (the group's `master`, else its first
// server) listens on the link state port (691 in the guide; servers[].linkStatePort). Members
// attach over TCP, prove they know the organisation secret (HMAC of a nonce), receive the
// table, and poll every `pollInterval`. The master marks a member up while it is attached and
// down when it goes (a minor update); a member keeps its last table when the master is gone
// (no automatic master fail-over).
//
// Between routing groups: the master probes the remote bridgeheads of its group's routing
// group connectors with an SMTP session (EHLO, STARTTLS, AUTH with the organisation secret,
// then X-LINK2STATE). A connector is down when none of its remote bridgeheads answers
// (oscillation damping keeps a flapping connector up). The same session compares digests and
// exchanges the tables in chunks when they differ; whatever a member learns that way it
// forwards to its master, which pushes it to the group.
import net from 'node:net';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { proof, readLines, sendLine } from './wire.js';
import type { Logger } from 'pino';
import type { OrganisationConfig, RoutingGroupConfig, ServerConfig } from '../config/schema.js';
import { allServers } from '../config/load.js';
import { dampedState, leafKeepsUp } from './state-rules.js';
import { SmtpClient } from '../smtp/client/client.js';
import { buildTopology } from '../routing/topology.js';
import {
  bump,
  canonical,
  compareVersions,
  connectorStateIn,
  digest,
  fromChunks,
  mergeTables,
  serverUpIn,
  toChunks,
  type GroupState,
  type LinkStateTable,
} from './table.js';
import { ROUTING_EVENTS } from '../logs/event-ids.js';
import { outboundSettings } from '../config/outbound.js';

export interface LinkStateOptions {
  org: OrganisationConfig;
  self: ServerConfig;
  group: RoutingGroupConfig;
  log: Logger;
  /** Member poll interval (5 minutes in the guide). */
  pollIntervalMs: number;
  /** How often the master probes its routing group connectors and exchanges tables. */
  probeIntervalMs: number;
  dampingWindowMs: number;
  heloName: string;
  onChange: (table: LinkStateTable) => void;
}

function configDigest(org: OrganisationConfig): string {
  return createHash('md5')
    .update(canonical(buildTopology(org)))
    .digest('hex')
    .slice(0, 12);
}

export class LinkStateService {
  table: LinkStateTable = { groups: {} };
  readonly isMaster: boolean;
  readonly masterName: string;
  private server: net.Server | undefined;
  private readonly members = new Map<string, net.Socket>();
  private memberSocket: net.Socket | undefined;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private readonly history = new Map<string, number[]>();
  private probing = false;
  /** What the last probe saw of each routing group connector (damping counts its changes). */
  private readonly observed = new Map<string, 'up' | 'down'>();
  /** Listening port of the master (the configured one, or the one bound when 0). */
  port = 0;

  constructor(private o: LinkStateOptions) {
    this.masterName = o.group.master ?? o.group.servers[0]!.name;
    this.isMaster = this.masterName.toLowerCase() === o.self.name.toLowerCase();
    this.sourceAddress = outboundSettings(o.self).sourceAddress;
  }

  /** Probes come from the server's own address, like its mail (read at start, like it). */
  private readonly sourceAddress: string | undefined;

  private get secret(): string {
    return this.o.org.organisation.secret ?? '';
  }

  get digest(): string {
    return digest(this.table);
  }

  private own(): GroupState | undefined {
    return this.table.groups[this.o.group.name];
  }

  private setTable(t: LinkStateTable): void {
    const before = digest(this.table);
    this.table = t;
    if (digest(t) !== before) {
      this.o.log.info(
        { eventId: ROUTING_EVENTS.resetRoutes, digest: digest(t) },
        'link state changed: reset routes',
      );
      this.o.onChange(t);
    }
  }

  async start(): Promise<void> {
    if (this.isMaster) {
      const g: GroupState = {
        name: this.o.group.name,
        master: this.masterName,
        version: { major: 1, minor: 0, user: 0 },
        config: configDigest(this.o.org),
        servers: Object.fromEntries(
          this.o.group.servers.map((s) => [s.name, s.name === this.o.self.name ? 'up' : 'down'] as const),
        ),
        connectors: Object.fromEntries(this.o.group.connectors.map((c) => [c.name, 'up'] as const)),
      };
      this.setTable({ groups: { ...this.table.groups, [g.name]: g } });
      await this.listen();
      this.every(this.o.probeIntervalMs, () => void this.probe());
      void this.probe();
    } else {
      this.attach();
      this.every(this.o.pollIntervalMs, () => sendLine(this.memberSocket, { t: 'poll' }));
    }
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.memberSocket?.destroy();
    for (const s of this.members.values()) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /**
   * The organisation file was reloaded. A master whose group's configuration changed makes a
   * major update (topology), which every server then takes over.
   */
  reconfigure(org: OrganisationConfig, group: RoutingGroupConfig, self: ServerConfig): void {
    this.o = { ...this.o, org, group, self };
    const g = this.own();
    if (!this.isMaster || !g) return;
    const config = configDigest(org);
    if (config === g.config) return;
    const connectors = Object.fromEntries(
      group.connectors.map((c) => [c.name, g.connectors[c.name] ?? 'up'] as const),
    );
    const servers = Object.fromEntries(
      group.servers.map((s) => [s.name, g.servers[s.name] ?? 'down'] as const),
    );
    this.publish(bump({ ...g, config, connectors, servers }, 'major'));
  }

  // ---------------------------------------------------------------- master side

  private listen(): Promise<void> {
    const server = net.createServer((socket) => this.onMember(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.self.linkStatePort, this.o.self.address, () => {
        server.off('error', reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private onMember(socket: net.Socket): void {
    socket.on('error', () => undefined);
    const nonce = randomBytes(16).toString('hex');
    let member: string | undefined;
    sendLine(socket, { t: 'challenge', nonce });
    const timeout = setTimeout(() => socket.destroy(), 10_000);
    readLines(socket, (msg) => {
      if (!member) {
        const name = String(msg.server ?? '');
        const known = this.o.group.servers.find((s) => s.name === name && s.name !== this.o.self.name);
        const expected = Buffer.from(proof(this.secret, nonce, name));
        const got = Buffer.from(String(msg.proof ?? ''));
        if (
          msg.t !== 'hello' ||
          !known ||
          expected.length !== got.length ||
          !timingSafeEqual(expected, got)
        ) {
          this.o.log.warn(
            { eventId: ROUTING_EVENTS.memberAuthFailed, server: name },
            `${name} failed to authenticate with its routing group master`,
          );
          socket.destroy();
          return;
        }
        clearTimeout(timeout);
        member = name;
        this.o.log.info(
          { eventId: ROUTING_EVENTS.memberAuthenticated, server: name },
          `${name} authenticated with its routing group master`,
        );
        this.members.get(name)?.destroy();
        this.members.set(name, socket);
        this.setServerState(name, 'up');
        sendLine(socket, { t: 'table', table: this.table });
        return;
      }
      if (msg.t === 'poll') sendLine(socket, { t: 'table', table: this.table });
      if (msg.t === 'foreign' && msg.table) this.learn(msg.table as LinkStateTable);
    });
    socket.on('close', () => {
      clearTimeout(timeout);
      if (member && this.members.get(member) === socket) {
        this.members.delete(member);
        if (!this.stopped) this.setServerState(member, 'down');
      }
    });
  }

  private setServerState(name: string, state: 'up' | 'down'): void {
    const g = this.own();
    if (!g || g.servers[name] === state) return;
    // A server coming and going is an up/down change (minor): routes depend on it.
    const next = bump({ ...g, servers: { ...g.servers, [name]: state } }, 'minor');
    this.publish(next);
  }

  private publish(g: GroupState): void {
    this.setTable({ groups: { ...this.table.groups, [g.name]: g } });
    for (const s of this.members.values()) sendLine(s, { t: 'table', table: this.table });
    void this.probe();
  }

  /** Tables learned from other routing groups (directly or through a member). */
  learn(incoming: LinkStateTable): void {
    // A master that restarted begins again at 1.0.0 while the organisation still holds a
    // later version of its group, which nobody would ever replace: continue from that
    // version (a user change: service start) so the other servers take this master's part.
    const mine = this.own();
    const heard = incoming.groups[this.o.group.name];
    if (
      this.isMaster &&
      mine &&
      heard &&
      (compareVersions(heard.version, mine.version) > 0 ||
        (compareVersions(heard.version, mine.version) === 0 && canonical(heard) !== canonical(mine)))
    ) {
      this.publish(bump({ ...mine, version: heard.version }, 'user'));
    }
    const { table, changed } = mergeTables(
      this.table,
      incoming,
      this.isMaster ? this.o.group.name : undefined,
    );
    if (!changed.length) return;
    this.setTable(table);
    if (this.isMaster) {
      for (const s of this.members.values()) sendLine(s, { t: 'table', table: this.table });
      void this.probe();
    } else {
      sendLine(this.memberSocket, { t: 'foreign', table: incoming });
    }
  }

  /** Probes every routing group connector of this group and exchanges tables over it. */
  private async probe(): Promise<void> {
    if (!this.isMaster || this.probing || this.stopped) return;
    this.probing = true;
    try {
      const servers = allServers(this.o.org).map((s) => s.server);
      const topology = buildTopology(this.o.org);
      const now = Date.now();
      const observed: Record<string, 'up' | 'down'> = {};
      let unanswered = false;
      for (const c of this.o.group.connectors) {
        if (c.type !== 'routingGroup') continue;
        let up = false;
        for (const name of c.remoteBridgeheads) {
          const target = servers.find((s) => s.name === name.split('/')[0]);
          if (!target) continue;
          if (await this.exchange(target)) {
            up = true;
            break;
          }
        }
        // The tables are exchanged either way, but "any local server can send mail over this
        // connector" and a leaf link with no alternate path are never marked down
        // [003:140, 1834-1844; SPEC §5; docs/config.md localBridgeheads].
        if (!up) unanswered = true;
        const view = topology.connectors.find((x) => x.name === c.name);
        const alwaysUp =
          c.localBridgeheads.length === 0 || (view !== undefined && leafKeepsUp(topology, view));
        observed[c.name] = up || alwaysUp ? 'up' : 'down';
      }
      const g = this.own();
      if (!g) return;
      const connectors = { ...g.connectors };
      let changed = false;
      for (const [name, state] of Object.entries(observed)) {
        const prior = g.connectors[name] ?? 'up';
        // Damping counts changes of what the probes see: the first probe only sets the
        // starting state, and a connector held up by damping while its bridgeheads stay
        // down is not changing (else it would stay up for as long as it is down).
        const before = this.observed.get(name);
        this.observed.set(name, state);
        const hist = (this.history.get(name) ?? []).filter((t) => now - t <= this.o.dampingWindowMs);
        if (before !== undefined && state !== before) hist.push(now);
        this.history.set(name, hist);
        // Oscillation damping: a connector that changed more than once in the window stays up.
        const next = state === 'down' ? dampedState('down', hist, now, this.o.dampingWindowMs) : 'up';
        if (next !== prior) {
          connectors[name] = next;
          changed = true;
          this.o.log.info({ connector: name, state: next }, 'link state: connector state changed');
        }
      }
      // A bridgehead that did not answer (often one still starting) is asked again soon, so
      // tables converge and a connector comes back without waiting a whole probe interval.
      if (unanswered && !this.stopped) {
        setTimeout(() => void this.probe(), Math.min(5000, this.o.probeIntervalMs)).unref();
      }
      if (changed) {
        this.probing = false;
        this.publish(bump({ ...g, connectors }, 'minor'));
      }
    } finally {
      this.probing = false;
    }
  }

  /** One SMTP session to a remote bridgehead: authenticate, compare digests, swap tables. */
  private async exchange(target: ServerConfig): Promise<boolean> {
    const client = new SmtpClient({
      host: target.address,
      port: outboundSettings(target).port,
      heloName: this.o.heloName,
      tls: 'opportunistic',
      verifyCertificate: false,
      ...(this.secret ? { auth: { username: this.o.self.name, password: this.secret } } : {}),
      timeoutMs: 5000,
      ...(this.sourceAddress ? { localAddress: this.sourceAddress } : {}),
    });
    try {
      await client.open();
      if (!client.extensions.has('X-LINK2STATE')) return true;
      const r = await client.command(`X-LINK2STATE DIGEST ${this.digest}`);
      if (r.code === 354) {
        const chunks = toChunks(this.table);
        for (const [i, chunk] of chunks.entries()) {
          const kind = i === chunks.length - 1 ? 'LAST' : i === 0 ? 'FIRST' : 'NEXT';
          const cr = await client.command(`X-LINK2STATE ${kind} CHUNK ${chunk}`);
          if (cr.code >= 400) break;
        }
      }
      if (r.code === 354 || r.code === 250) {
        const mine = this.digest;
        const theirs = r.lines[0]?.split(' ').pop();
        if (theirs !== mine) {
          const sr = await client.command('X-LINK2STATE SEND');
          if (sr.code === 250) {
            const chunks = sr.lines.map((l) => l.replace(/^(FIRST|NEXT|LAST) CHUNK ?/, ''));
            const t = fromChunks(chunks);
            if (t) this.learn(t);
          }
        }
      }
      return true;
    } catch {
      return false;
    } finally {
      await client.quit();
    }
  }

  // ---------------------------------------------------------------- member side

  private attach(): void {
    if (this.stopped) return;
    const master = allServers(this.o.org).find((s) => s.server.name === this.masterName)?.server;
    if (!master) {
      this.o.log.error(
        { eventId: ROUTING_EVENTS.masterGone, master: this.masterName },
        `the routing group master ${this.masterName} no longer exists`,
      );
      return;
    }
    const socket = net.connect({ host: master.address, port: master.linkStatePort });
    this.memberSocket = socket;
    socket.on('error', () => undefined);
    readLines(socket, (msg) => {
      if (msg.t === 'challenge') {
        sendLine(socket, {
          t: 'hello',
          server: this.o.self.name,
          proof: proof(this.secret, String(msg.nonce), this.o.self.name),
        });
      } else if (msg.t === 'table' && msg.table) {
        // The master's table is authoritative for the group; keep what we know of others
        // when it is newer.
        const t = msg.table as LinkStateTable;
        const merged = mergeTables(t, this.table);
        this.setTable(merged.table);
      }
    });
    socket.on('close', () => {
      if (this.memberSocket === socket) this.memberSocket = undefined;
      // Keep the last table; try the master again a little later.
      if (!this.stopped) setTimeout(() => this.attach(), Math.min(5000, this.o.pollIntervalMs)).unref();
    });
  }

  // ---------------------------------------------------------------- SMTP verb (receiving side)

  /** State of one X-LINK2STATE conversation inside an SMTP session. */
  session(): (args: string) => { code: number; status?: string; text: string | string[] } {
    let chunks: string[] = [];
    return (args: string) => {
      const [word = '', ...rest] = args.trim().split(/\s+/);
      const verb = word.toUpperCase();
      if (verb === 'DIGEST') {
        const theirs = rest[0] ?? '';
        chunks = [];
        return theirs === this.digest
          ? { code: 250, status: '2.0.0', text: `DONE ${this.digest}` }
          : { code: 354, text: `MORE ${this.digest}` };
      }
      if (verb === 'FIRST' || verb === 'NEXT' || verb === 'LAST') {
        if (verb === 'FIRST') chunks = [];
        chunks.push(rest.slice(1).join(''));
        if (chunks.length > 10_000) return { code: 552, status: '5.3.4', text: 'Link state table too large' };
        if (verb !== 'LAST') return { code: 354, text: 'MORE' };
        const t = fromChunks(chunks);
        chunks = [];
        if (!t) return { code: 501, status: '5.5.4', text: 'Link state table could not be read' };
        this.learn(t);
        return { code: 250, status: '2.0.0', text: `DONE ${this.digest}` };
      }
      if (verb === 'SEND') {
        const parts = toChunks(this.table);
        return {
          code: 250,
          text: parts.map(
            (c, i) => `${i === parts.length - 1 ? 'LAST' : i === 0 ? 'FIRST' : 'NEXT'} CHUNK ${c}`,
          ),
        };
      }
      return {
        code: 501,
        status: '5.5.4',
        text: 'Syntax: X-LINK2STATE DIGEST|FIRST CHUNK|NEXT CHUNK|LAST CHUNK|SEND',
      };
    };
  }

  /** Server and connector states as routing reads them. */
  serverUp(name: string): boolean {
    return serverUpIn(this.table, name);
  }

  connectorState(name: string): 'up' | 'down' | undefined {
    return connectorStateIn(this.table, name);
  }
}
