// Remote delivery for one next hop (a remote domain, a smart host or another server of the
// organisation): resolves where to connect, opens up to `connections` SMTP sessions and
// lets each carry message after message from a shared list (connection reuse). MX hosts
// and their addresses are tried in order; the first that greets us wins [003:787-1343].
//
// A session that runs out of work is kept for IDLE_MS (Postfix's connection cache, whose
// time limit is 2 s too) and the next run to the same next hop carries on over it: under
// a steady stream the queue is served in small rounds, and a new connection, greeting,
// EHLO and QUIT per round cost more than the messages themselves.
import type { Resolver } from 'node:dns/promises';
import type { Socket } from 'node:net';
import { SmtpClient, type ClientOptions, type RecipientResult } from '../../smtp/client/client.js';
import { TransportError } from '../../message/status.js';
import type { Envelope, RecipientEnvelope } from '../../queue/spool.js';
import { parseSmartHost, resolveMailHosts, hostAddresses } from './dns.js';

export type { Destination, OutboundOverrides } from './destination.js';
import type { Destination } from './destination.js';
import { mergeResults, overLimit } from './transactions.js';
import { withoutLoops, type Self } from './loop.js';

export interface DeliveryJob {
  envelope: Envelope;
  recipients: RecipientEnvelope[];
  load(): Promise<Buffer>;
  /** XEXCH50 properties for another server of the organisation. */
  properties?: Buffer;
  /**
   * Per-recipient replies, or one error for the whole message. `nextHop` marks a failure of
   * the next hop itself (no address, no connection, refused greeting or TLS): the queue's,
   * not the message's.
   */
  done(outcome: DeliveryOutcome): void;
}

export type DeliveryOutcome =
  | { results: RecipientResult[]; remoteMta: string; transactions?: number }
  /** `remoteMta`: the server that refused the message (MAIL, DATA), for the DSN. */
  | { error: TransportError; nextHop?: boolean; remoteMta?: string };

/**
 * One message over an open session, in as many transactions as the next hop's recipient
 * limit needs (452 to the rest: transactions.ts). A failure after the first transaction
 * keeps what was delivered; the others stay with their 452 (retried).
 */
async function sendInTransactions(
  client: SmtpClient,
  job: DeliveryJob,
  body: Buffer,
  properties: Buffer | undefined,
): Promise<{ results: RecipientResult[]; transactions: number }> {
  const rounds: RecipientResult[][] = [await client.send(job.envelope, job.recipients, body, properties)];
  let pending = overLimit(rounds[0]!);
  // Each round delivers at least one recipient, so there are never more than recipients.
  for (let i = 1; i < job.recipients.length && pending.length && client.usable; i++) {
    try {
      if (client.needsReset && !(await client.reset())) break;
      const results = await client.send(job.envelope, pending, body, properties);
      rounds.push(results);
      pending = overLimit(results);
    } catch {
      break;
    }
  }
  return { results: mergeResults(job.recipients, rounds), transactions: rounds.length };
}

export interface RemoteSettings {
  heloName: string;
  port: number;
  timeoutMs: number;
  heloOnly: boolean;
  tls: 'opportunistic' | 'required' | 'none';
  verifyCertificate: boolean;
  auth?: { username: string; password: string };
  resolver: Resolver;
  /** Messages one connection carries before it is closed and a fresh one opened. */
  maxMessagesPerConnection: number;
  /** The address connections come from (the virtual server's), if set. */
  localAddress?: string;
  protocolLog?: (session: string, event: string, data: string) => void;
  /** This server's listeners and names: a next hop that is one of them is a loop (5.3.5). */
  self?: () => Self;
}

interface Target {
  host: string;
  address: string;
  port: number;
  preference?: number;
}

let connectionCounter = 0;

/** How long an idle session waits for more mail to the same next hop. */
const IDLE_MS = 2000;

interface Connection {
  client: SmtpClient;
  target: Target;
  /** Messages carried so far, counted against maxMessagesPerConnection. */
  sent: number;
  /**
   * No refusal so far. Only such a session is kept idle: receivers count errors per
   * session and slow down or drop it (Postfix's smtpd_soft/hard_error_limit), and a
   * session reused across retries would carry every deferral's count.
   */
  clean: boolean;
}

export class RemoteDelivery {
  private readonly idle = new Map<string, (Connection & { timer: NodeJS.Timeout })[]>();
  private closed = false;

  constructor(private readonly s: RemoteSettings) {}

  /** An idle session to this next hop that is still open, if there is one. */
  private takeIdle(key: string): Connection | undefined {
    const list = this.idle.get(key);
    while (list?.length) {
      const c = list.pop()!;
      clearTimeout(c.timer);
      if (!list.length) this.idle.delete(key);
      if (c.client.usable) return { client: c.client, target: c.target, sent: c.sent, clean: c.clean };
      void c.client.quit();
    }
    return undefined;
  }

  private keepIdle(key: string, conn: Connection): void {
    if (this.closed || !conn.clean || !conn.client.usable || conn.sent >= this.s.maxMessagesPerConnection) {
      void conn.client.quit();
      return;
    }
    const list = this.idle.get(key) ?? [];
    this.idle.set(key, list);
    const entry = {
      ...conn,
      timer: setTimeout(() => {
        const i = list.indexOf(entry);
        if (i !== -1) list.splice(i, 1);
        if (!list.length && this.idle.get(key) === list) this.idle.delete(key);
        void conn.client.quit();
      }, IDLE_MS),
    };
    entry.timer.unref();
    list.push(entry);
  }

  /** Idle sessions held open, but for those to `except` (the next run to it reuses them). */
  idleSessions(except?: Destination): number {
    const skip = except ? JSON.stringify(except) : undefined;
    let n = 0;
    for (const [key, list] of this.idle) if (key !== skip) n += list.length;
    return n;
  }

  /** Ends every idle session (QUIT); sessions in use end with their run. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(
      all.map((c) => {
        clearTimeout(c.timer);
        return c.client.quit();
      }),
    );
  }

  /** Candidate (host, address, port) triples in the order they are tried; none is this server. */
  async targets(d: Destination): Promise<Target[]> {
    const found = await this.candidates(d);
    return this.s.self ? withoutLoops(found, this.s.self()) : found;
  }

  private async candidates(d: Destination): Promise<Target[]> {
    if (d.type === 'server') return [{ host: d.host, address: d.host, port: d.port }];
    if (d.type === 'smarthost') {
      const out: Target[] = [];
      let lastError: TransportError | undefined;
      for (const spec of d.hosts) {
        const sh = parseSmartHost(spec, this.s.port);
        if (sh.literal) {
          out.push({ host: sh.host, address: sh.host, port: sh.port });
          continue;
        }
        try {
          // A smart host name is looked up as an MX first, as the guide's virtual server does.
          const hosts = await resolveMailHosts(this.s.resolver, sh.host);
          for (const h of hosts)
            for (const a of h.addresses) out.push({ host: h.host, address: a, port: sh.port });
        } catch (err) {
          if (!(err instanceof TransportError)) throw err;
          lastError = err;
          const addrs = await hostAddresses(this.s.resolver, sh.host, () => undefined).catch(() => []);
          for (const a of addrs) out.push({ host: sh.host, address: a, port: sh.port });
        }
      }
      if (!out.length)
        throw lastError ?? new TransportError(451, '4.4.3', 'no smart host address could be found');
      return out;
    }
    const hosts = await resolveMailHosts(this.s.resolver, d.domain);
    return hosts.flatMap((h) =>
      h.addresses.map((a) => ({ host: h.host, address: a, port: this.s.port, preference: h.preference })),
    );
  }

  private async connect(targets: Target[], d: Destination): Promise<{ client: SmtpClient; target: Target }> {
    const auth = d.auth === null ? undefined : (d.auth ?? this.s.auth);
    let last: TransportError | undefined;
    for (const t of targets) {
      const session = `S${(++connectionCounter).toString(36).toUpperCase()}`;
      const opts: ClientOptions = {
        host: t.address,
        port: t.port,
        servername: t.host,
        heloName: this.s.heloName,
        heloOnly: d.heloOnly ?? this.s.heloOnly,
        tls: d.tls ?? this.s.tls,
        verifyCertificate: d.verifyCertificate ?? this.s.verifyCertificate,
        auth,
        timeoutMs: this.s.timeoutMs,
        log: this.s.protocolLog ? (e, d) => this.s.protocolLog!(session, e, d) : undefined,
        ...(this.s.localAddress ? { localAddress: this.s.localAddress } : {}),
      };
      const client = new SmtpClient(opts);
      try {
        await client.open();
        return { client, target: t };
      } catch (err) {
        await client.quit();
        if (!(err instanceof TransportError)) throw err;
        last = err;
        // A permanent refusal by an authenticating smart host will not change on the next host.
        if (err.permanent && auth && err.status.startsWith('5.7')) throw err;
      }
    }
    throw last ?? new TransportError(451, '4.4.1', 'no host to connect to');
  }

  /** ATRN / TURN: delivers `jobs` over a connection the remote side opened to us. */
  async runOnSocket(socket: Socket, jobs: DeliveryJob[]): Promise<void> {
    const session = `T${(++connectionCounter).toString(36).toUpperCase()}`;
    const peer = socket.remoteAddress ?? 'turn';
    const client = new SmtpClient({
      host: peer,
      port: socket.remotePort ?? 0,
      heloName: this.s.heloName,
      tls: 'none',
      timeoutMs: this.s.timeoutMs,
      log: this.s.protocolLog ? (e, d) => this.s.protocolLog!(session, e, d) : undefined,
    });
    try {
      await client.adopt(socket);
    } catch (err) {
      const error = err instanceof TransportError ? err : new TransportError(451, '4.4.2', String(err));
      for (const j of jobs) j.done({ error });
      await client.quit();
      return;
    }
    for (const job of jobs) {
      if (!client.usable) {
        job.done({ error: new TransportError(451, '4.4.2', `Connection to ${peer} lost`) });
        continue;
      }
      try {
        const sent = await sendInTransactions(client, job, await job.load(), undefined);
        job.done({ ...sent, remoteMta: `${peer} (ATRN)` });
      } catch (err) {
        job.done({
          error: err instanceof TransportError ? err : new TransportError(451, '4.3.0', String(err)),
        });
      }
    }
    await client.quit();
  }

  /** Delivers `jobs` over at most `connections` sessions; every job's done() is called once. */
  async run(d: Destination, jobs: DeliveryJob[], connections: number): Promise<void> {
    const key = JSON.stringify(d);
    // Resolved once, and only when a session has to be opened.
    let targets: Promise<Target[]> | undefined;
    const queue = [...jobs];
    // A job that met a cached session the peer had just closed goes once more, on a fresh one.
    const retried = new Set<DeliveryJob>();
    const worker = async () => {
      while (queue.length) {
        let conn = this.takeIdle(key);
        let reused = conn !== undefined;
        if (!conn) {
          let list: Target[];
          try {
            targets ??= this.targets(d);
            list = await targets;
          } catch (err) {
            const error =
              err instanceof TransportError ? err : new TransportError(451, '4.4.3', (err as Error).message);
            for (const j of queue.splice(0)) j.done({ error, nextHop: true });
            return;
          }
          try {
            conn = { ...(await this.connect(list, d)), sent: 0, clean: true };
          } catch (err) {
            const error = err instanceof TransportError ? err : new TransportError(451, '4.4.1', String(err));
            // Nobody can be reached: every job still waiting shares the verdict.
            for (const j of queue.splice(0)) j.done({ error, nextHop: true });
            return;
          }
        }
        while (queue.length && conn.client.usable && conn.sent < this.s.maxMessagesPerConnection) {
          const job = queue.shift()!;
          try {
            const body = await job.load();
            const sent = await sendInTransactions(
              conn.client,
              job,
              body,
              d.type === 'server' ? job.properties : undefined,
            );
            if (!sent.results.every((r) => r.reply.code >= 200 && r.reply.code < 300)) conn.clean = false;
            job.done({ ...sent, remoteMta: conn.target.host });
          } catch (err) {
            conn.clean = false;
            const stale =
              reused &&
              !retried.has(job) &&
              (!conn.client.usable || (err instanceof TransportError && err.code === 421));
            if (stale) {
              retried.add(job);
              queue.unshift(job);
              break;
            }
            const error = err instanceof TransportError ? err : new TransportError(451, '4.3.0', String(err));
            job.done({ error, remoteMta: conn.target.host });
          }
          reused = false;
          conn.sent++;
          // After a refusal the peer's idea of the transaction may differ from ours (Postfix
          // keeps MAIL after a 554 at end of data): RSET before the next one, as Postfix does.
          if (conn.client.needsReset && conn.client.usable && !(await conn.client.reset())) break;
        }
        if (queue.length) await conn.client.quit();
        else this.keepIdle(key, conn);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(connections, jobs.length)) }, worker));
  }
}
