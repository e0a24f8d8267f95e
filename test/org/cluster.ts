// Whole organisations as separate `bridgehead serve` processes on loopback (issue 4): one
// organisation file, one process per server on its own 127.0.x.y address, SMTP, link state
// and admin API ports chosen free, a data directory per server under one temp directory.
// Processes are started with node directly (no shell) and stopped by the pid they were
// started with; every wait is bounded.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { mailboxFolder, storeFolder } from '../../src/delivery/local/folder-names.js';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { adminAuth } from '../helpers/server.js';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it yields something other than undefined/false; fails at the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`,
      );
    await sleep(intervalMs);
  }
}

/** A free TCP port on `host`, not one of `taken`. */
export async function freePort(host: string, taken: Set<number> = new Set()): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, host, () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free port on ${host}`);
}

// ------------------------------------------------------------------ organisation spec

export interface ServerSpec {
  name: string;
  /** Loopback address of the server (SMTP and link state listen on it). */
  address: string;
}

export interface GroupSpec {
  name: string;
  master?: string;
  servers: ServerSpec[];
  /** Connectors as the organisation file writes them. */
  connectors?: Record<string, any>[];
}

export interface OrgSpec {
  name?: string;
  secret?: string;
  linkState?: { pollInterval?: string; probeInterval?: string; dampingWindow?: string };
  groups: GroupSpec[];
  recipientPolicies?: Record<string, any>[];
  directory?: Record<string, any>;
  /** Last edits to the plain organisation object before it is written. */
  mutate?: (org: Record<string, any>) => void;
}

export interface ServerInfo {
  name: string;
  group: string;
  address: string;
  smtpPort: number;
  linkStatePort: number;
  adminPort: number;
  dataDir: string;
  /** http://127.0.0.1:adminPort */
  api: string;
}

/**
 * A routing group connector pair, both directions, cost `cost`; the remote bridgehead is the
 * other group's first server. The local bridgeheads are named (every server of the group):
 * a connector with "any local server" is never marked down [003:140, 1834-1844], so only a
 * connector with named bridgeheads fails over as in the guide's example [003:130-140].
 */
export function link(from: GroupSpec, to: GroupSpec, cost: number, anyLocalServer = false): void {
  const one = (a: GroupSpec, b: GroupSpec) =>
    (a.connectors ??= []).push({
      type: 'routingGroup',
      name: `${a.name}To${b.name}`,
      to: b.name,
      cost,
      localBridgeheads: anyLocalServer ? [] : a.servers.map((s) => s.name),
      remoteBridgeheads: [b.servers[0]!.name],
    });
  one(from, to);
  one(to, from);
}

/** Running server processes, by name. */
interface Running {
  proc: ChildProcess;
  pid: number;
  output: string;
  exited: Promise<void>;
}

const everyPid = new Set<number>();
// A test that dies half-way must not leave servers behind: kill what we started, by pid.
process.once('exit', () => {
  for (const pid of everyPid) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export class Organisation {
  readonly servers = new Map<string, ServerInfo>();
  private readonly running = new Map<string, Running>();
  org: Record<string, any> = {};

  private constructor(
    readonly dir: string,
    readonly configFile: string,
  ) {}

  /** Writes the organisation file (free ports for every server); starts nothing. */
  static async create(spec: OrgSpec): Promise<Organisation> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-org-'));
    const o = new Organisation(dir, path.join(dir, 'organisation.yaml'));
    try {
      await o.build(spec);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return o;
  }

  private async build(spec: OrgSpec): Promise<void> {
    const taken = new Map<string, Set<number>>();
    const groups = [];
    for (const g of spec.groups) {
      const servers = [];
      for (const s of g.servers) {
        const used = taken.get(s.address) ?? new Set<number>();
        taken.set(s.address, used);
        // The admin API stays on 127.0.0.1: the config check asks for a token on any other address.
        const apiPorts = taken.get('127.0.0.1') ?? new Set<number>();
        taken.set('127.0.0.1', apiPorts);
        const info: ServerInfo = {
          name: s.name,
          group: g.name,
          address: s.address,
          smtpPort: await freePort(s.address, used),
          linkStatePort: await freePort(s.address, used),
          adminPort: await freePort('127.0.0.1', apiPorts),
          dataDir: path.join(this.dir, s.name.toLowerCase()),
          api: '',
        };
        info.api = `http://127.0.0.1:${info.adminPort}`;
        this.servers.set(s.name, info);
        servers.push({
          name: s.name,
          fqdn: `${s.name.toLowerCase()}.org.test`,
          address: s.address,
          dataDir: info.dataDir,
          linkStatePort: info.linkStatePort,
          adminApi: { host: '127.0.0.1', port: info.adminPort },
          virtualServers: [
            {
              name: 'Default SMTP Virtual Server',
              ip: s.address,
              port: info.smtpPort,
              protocolLog: { enabled: true },
              // Mail between servers must not wait minutes on a glitch in these tests.
              delivery: {
                glitchRetryInterval: '1s',
                outbound: { first: '2s', second: '2s', third: '2s', subsequent: '2s' },
                outboundTimeout: '10s',
              },
            },
          ],
        });
      }
      groups.push({
        name: g.name,
        ...(g.master ? { master: g.master } : {}),
        servers,
        connectors: g.connectors ?? [],
      });
    }
    this.org = {
      organisation: {
        name: spec.name ?? 'Contoso',
        secret: spec.secret ?? 'test-organisation-secret',
        linkState: {
          pollInterval: '2s',
          probeInterval: '1s',
          dampingWindow: '3s',
          ...(spec.linkState ?? {}),
        },
      },
      routingGroups: groups,
      recipientPolicies: spec.recipientPolicies ?? [
        { name: 'Default Policy', addresses: [{ address: '@example.com', authoritative: true }] },
      ],
      directory: spec.directory ?? { users: [] },
    };
    spec.mutate?.(this.org);
    this.write();
  }

  /** Writes the organisation file as it is now (after editing `org`). */
  write(): void {
    writeFileSync(this.configFile, YAML.stringify(this.org));
  }

  info(name: string): ServerInfo {
    const s = this.servers.get(name);
    if (!s) throw new Error(`no server ${name}`);
    return s;
  }

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  pid(name: string): number | undefined {
    return this.running.get(name)?.pid;
  }

  output(name: string): string {
    return this.running.get(name)?.output ?? '';
  }

  /** Starts one server process and waits for its SMTP listener and admin API. */
  async start(name: string, timeoutMs = 30_000): Promise<void> {
    if (this.running.has(name)) throw new Error(`${name} is already running`);
    this.info(name);
    const proc = spawn(process.execPath, [CLI, 'serve', '--config', this.configFile, '--server', name], {
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (proc.pid === undefined) throw new Error(`${name} could not be started`);
    everyPid.add(proc.pid);
    const r: Running = {
      proc,
      pid: proc.pid,
      output: '',
      exited: new Promise((resolve) => proc.once('exit', () => resolve())),
    };
    proc.stdout!.on('data', (d) => (r.output += d));
    proc.stderr!.on('data', (d) => (r.output += d));
    void r.exited.then(() => everyPid.delete(r.pid));
    this.running.set(name, r);
    const deadline = Date.now() + timeoutMs;
    while (!(/listening on/.test(r.output) && /admin API on http/.test(r.output))) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        this.running.delete(name);
        throw new Error(`${name} exited early:\n${r.output}`);
      }
      if (Date.now() > deadline) {
        await this.stop(name);
        throw new Error(`${name} did not start within ${timeoutMs} ms:\n${r.output}`);
      }
      await sleep(25);
    }
  }

  /** Sends `signal` (SIGHUP: reload the organisation file) to the process we started for `name`. */
  signal(name: string, signal: NodeJS.Signals): void {
    const r = this.running.get(name);
    if (!r) throw new Error(`${name} is not running`);
    process.kill(r.pid, signal);
  }

  /** SIGHUP to every running server; waits until each has said it reloaded the file. */
  async reload(timeoutMs = 10_000): Promise<void> {
    const names = [...this.running.keys()];
    const before = new Map(names.map((n) => [n, (this.output(n).match(/reloaded /g) ?? []).length]));
    for (const n of names) this.signal(n, 'SIGHUP');
    await waitFor(
      'every server to reload the organisation file',
      () => names.every((n) => (this.output(n).match(/reloaded /g) ?? []).length > before.get(n)!),
      timeoutMs,
    );
  }

  async startAll(names = [...this.servers.keys()]): Promise<void> {
    const results = await Promise.allSettled(names.map((n) => this.start(n)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** SIGTERM to the pid we started (SIGKILL after `graceMs`), and waits for it to exit. */
  async stop(name: string, graceMs = 8000): Promise<void> {
    const r = this.running.get(name);
    if (!r) return;
    this.running.delete(name);
    if (r.proc.exitCode === null && r.proc.signalCode === null) {
      try {
        process.kill(r.pid, 'SIGTERM');
      } catch {
        // gone already
      }
      const killed = await Promise.race([r.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!killed) {
        try {
          process.kill(r.pid, 'SIGKILL');
        } catch {
          // gone already
        }
        await Promise.race([r.exited, sleep(5000)]);
      }
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((n) => this.stop(n)));
  }

  /** Stops every process and removes the temp directory. */
  async destroy(): Promise<void> {
    await this.stopAll();
    if (!process.env.BH_KEEP_TEST_DIRS) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---------------------------------------------------------------- observation

  async api<T = any>(name: string, urlPath: string): Promise<T> {
    const res = await fetch(`${this.info(name).api}${urlPath}`, {
      headers: adminAuth(this.info(name).dataDir),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`${name} ${urlPath}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  linkState(name: string): Promise<LinkStateView> {
    return this.api<LinkStateView>(name, '/api/v1/linkstate');
  }

  /** Digest of every running server (or of `names`). */
  async digests(names = [...this.running.keys()]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    await Promise.all(
      names.map(async (n) => {
        out.set(n, (await this.linkState(n)).digest);
      }),
    );
    return out;
  }

  /** Waits until every running server (or `names`) reports the same digest; returns it. */
  async converged(names = [...this.running.keys()], timeoutMs = 20_000): Promise<string> {
    let last = new Map<string, string>();
    try {
      return await waitFor(
        `equal link state digests on ${names.join(', ')}`,
        async () => {
          last = await this.digests(names);
          const set = new Set(last.values());
          return set.size === 1 ? [...set][0]! : undefined;
        },
        timeoutMs,
        100,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(Object.fromEntries(last))}`);
    }
  }

  /** Runs the bridgehead CLI to completion (killed after `timeoutMs`). */
  cli(args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, ...args],
        { cwd: this.dir, timeout: timeoutMs, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /**
   * `bridgehead track --config FILE --message-id ID --json`: organisation-wide tracking events.
   * With servers stopped on purpose the answer is partial: exit 1, the silent ones named.
   */
  async track(messageId: string): Promise<TrackEvent[]> {
    const r = await this.cli(['track', '--config', this.configFile, '--message-id', messageId, '--json']);
    const partial = r.code === 1 && /^bridgehead: \d+ of \d+ server\(s\) did not answer /m.test(r.stderr);
    if (r.code !== 0 && !partial) throw new Error(`track failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as TrackEvent[];
  }

  /** `--api URL --data-dir DIR`: a server's admin API, with the token file its CLI user reads. */
  apiArgs(server: string): string[] {
    return ['--api', this.info(server).api, '--data-dir', this.info(server).dataDir];
  }

  /** Files in a mailbox's Maildir new/ on a server. */
  mailbox(server: string, address: string, store = 'Mailbox Store'): { name: string; content: string }[] {
    const dir = path.join(
      this.info(server).dataDir,
      'mailboxes',
      storeFolder(store),
      mailboxFolder(address),
      'new',
    );
    let names: string[] = [];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return [];
    }
    return names.map((name) => ({ name, content: readFileSync(path.join(dir, name), 'utf8') }));
  }

  /** Sends one message to `server` over SMTP; returns the queue id and the Message-ID. */
  async send(
    server: string,
    o: { from: string; to: string[]; subject?: string },
  ): Promise<{ queueId: string; messageId: string }> {
    const s = this.info(server);
    return sendMail(s.address, s.smtpPort, o);
  }
}

export interface LinkStateView {
  master: string;
  isMaster: boolean;
  port: number;
  digest: string;
  table: {
    groups: Record<
      string,
      {
        name: string;
        master: string;
        version: { major: number; minor: number; user: number };
        servers: Record<string, 'up' | 'down'>;
        connectors: Record<string, 'up' | 'down'>;
      }
    >;
  };
}

export interface TrackEvent {
  dateTime: string;
  serverHostname: string;
  event: string;
  source: string;
  internalMessageId: string;
  messageId?: string;
  sender?: string;
  recipients?: string[];
  recipientStatus?: string[];
  connectorId?: string;
  messageInfo?: string;
  clientIp?: string;
  serverIp?: string;
  directionality?: 'Incoming' | 'Originating';
}

// ------------------------------------------------------------------ SMTP

/** A line-oriented SMTP client session for tests. */
export class SmtpSession {
  private buffer = '';
  private waiters: (() => void)[] = [];
  closed = false;
  socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.wire(socket);
  }

  private wire(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on('error', () => undefined);
  }

  /** STARTTLS (the servers' self-signed certificates are accepted), then EHLO again. */
  async startTls(helo = 'client.test'): Promise<void> {
    const r = await this.cmd('STARTTLS');
    if (!r.startsWith('220')) throw new Error(`STARTTLS -> ${r}`);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const t = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve(t));
      t.once('error', reject);
    });
    this.socket = secure;
    this.wire(secure);
    const e = await this.cmd(`EHLO ${helo}`);
    if (!e.startsWith('250')) throw new Error(`EHLO after STARTTLS -> ${e}`);
  }

  static connect(host: string, port: number): Promise<SmtpSession> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => resolve(new SmtpSession(s)));
      s.once('error', reject);
      s.setTimeout(30_000, () => s.destroy());
    });
  }

  async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(?:\d{3}-.*\r\n)*\d{3}(?: .*)?\r\n/.exec(this.buffer);
      if (m) {
        this.buffer = this.buffer.slice(m[0].length);
        return m[0].replace(/\r\n$/, '');
      }
      if (this.closed) throw new Error(`connection closed; pending: ${JSON.stringify(this.buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply; pending: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  close(): void {
    this.socket.destroy();
  }
}

let counter = 0;

export async function sendMail(
  host: string,
  port: number,
  o: { from: string; to: string[]; subject?: string },
): Promise<{ queueId: string; messageId: string }> {
  counter++;
  const messageId = `org.${process.pid}.${Date.now()}.${counter}@client.test`;
  const c = await SmtpSession.connect(host, port);
  const expect = async (line: string, code: RegExp) => {
    const r = await c.cmd(line);
    if (!code.test(r)) throw new Error(`${line.slice(0, 60)} -> ${r}`);
    return r;
  };
  try {
    const banner = await c.reply();
    if (!banner.startsWith('220')) throw new Error(`banner ${banner}`);
    await expect('EHLO client.test', /^250/);
    await expect(`MAIL FROM:<${o.from}>`, /^250 /);
    for (const t of o.to) await expect(`RCPT TO:<${t}>`, /^250 /);
    await expect('DATA', /^354 /);
    const message = [
      `From: <${o.from}>`,
      `To: ${o.to.map((t) => `<${t}>`).join(', ')}`,
      `Subject: ${o.subject ?? `organisation test ${counter}`}`,
      `Message-ID: <${messageId}>`,
      `Date: ${new Date().toUTCString()}`,
      '',
      `Body of organisation test ${counter}.`,
      '.',
    ].join('\r\n');
    const done = await expect(message, /^250 2\.6\.0 /);
    const m = /^250 2\.6\.0 <([0-9A-Za-z]+)@/.exec(done);
    if (!m) throw new Error(`no queue id in ${done}`);
    await c.cmd('QUIT').catch(() => undefined);
    return { queueId: m[1]!, messageId };
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------ receivers

export interface Received {
  from: string;
  to: string[];
  data: string;
  helo: string;
}

/**
 * A small SMTP receiver (a smart host for connectors): accepts everything and keeps the
 * envelopes it got. Runs in the test process on a loopback address.
 */
export class Receiver {
  private constructor(
    private readonly server: net.Server,
    private readonly sockets: Set<net.Socket>,
    readonly messages: Received[],
    readonly host: string,
    readonly port: number,
  ) {}

  /** "[host]:port", as a connector's smart host. */
  get smartHost(): string {
    return `[${this.host}]:${this.port}`;
  }

  static async start(host: string): Promise<Receiver> {
    const sockets = new Set<net.Socket>();
    const messages: Received[] = [];
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.setEncoding('utf8');
      let buf = '';
      let inData = false;
      let data = '';
      let cur: Received = { from: '', to: [], data: '', helo: '' };
      const say = (s: string) => socket.write(`${s}\r\n`);
      say('220 receiver.test ESMTP test receiver');
      socket.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\r\n')) !== -1) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 2);
          if (inData) {
            if (line === '.') {
              inData = false;
              messages.push({ ...cur, data });
              cur = { from: '', to: [], data: '', helo: cur.helo };
              say('250 2.6.0 queued');
            } else data += `${line.startsWith('..') ? line.slice(1) : line}\r\n`;
            continue;
          }
          const verb = line.slice(0, 4).toUpperCase();
          if (verb === 'EHLO') {
            cur.helo = line.slice(5);
            say('250-receiver.test');
            say('250 8BITMIME');
          } else if (verb === 'HELO') {
            cur.helo = line.slice(5);
            say('250 receiver.test');
          } else if (verb === 'MAIL') {
            cur.from = /<([^>]*)>/.exec(line)?.[1] ?? '';
            say('250 2.1.0 ok');
          } else if (verb === 'RCPT') {
            cur.to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
            say('250 2.1.5 ok');
          } else if (verb === 'DATA') {
            inData = true;
            data = '';
            say('354 go ahead');
          } else if (verb === 'RSET') {
            cur = { from: '', to: [], data: '', helo: cur.helo };
            say('250 2.0.0 ok');
          } else if (verb === 'QUIT') {
            say('221 2.0.0 bye');
            socket.end();
          } else if (verb === 'NOOP') say('250 2.0.0 ok');
          else say('502 5.5.2 not implemented');
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    return new Receiver(server, sockets, messages, host, (server.address() as net.AddressInfo).port);
  }

  /** Envelopes that carried `rcpt`. */
  for(rcpt: string): Received[] {
    return this.messages.filter((m) => m.to.some((t) => t.toLowerCase() === rcpt.toLowerCase()));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
