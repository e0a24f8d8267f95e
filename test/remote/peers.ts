// Real peers on loopback for the remote-delivery tests: a DNS server (dnsmasq), a private
// Postfix instance, Postfix's smtp-sink and postgrey. Each runs from its own temp directory
// on 127.0.0.0/8 only and is stopped by the pid it was started with; every wait is bounded.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';

export const BIN = {
  dnsmasq: '/usr/sbin/dnsmasq',
  postfix: '/usr/sbin/postfix',
  smtpSink: '/usr/sbin/smtp-sink',
  postgrey: '/usr/sbin/postgrey',
};

/** Why a suite cannot run here (a skip reason), or false when it can. */
export function cannotRun(...bins: (keyof typeof BIN)[]): string | false {
  if (process.getuid?.() !== 0) return 'needs root (private Postfix, smtp-sink -u, postgrey --user)';
  const absent = bins.filter((b) => !existsSync(BIN[b])).map((b) => BIN[b]);
  return absent.length ? `not installed: ${absent.join(', ')} (see .ci/run)` : false;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it yields a value other than undefined/false; fails at the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after `timeoutMs`). */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function idOf(flag: '-u' | '-g', user: string): Promise<number> {
  const r = await run('id', [flag, user]);
  if (r.code !== 0) throw new Error(`no user ${user}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** True while `pid` is a live process (a zombie waiting to be reaped counts as gone). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Stops a process we started, by its pid: SIGTERM, then SIGKILL if it outlives `graceMs`. */
async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await sleep(25);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/** A foreground child process with its output kept for failure messages. */
export class Child {
  output = '';
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.stdout?.on('data', (d) => (this.output += d));
    proc.stderr?.on('data', (d) => (this.output += d));
    this.exited = new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.once('error', (err) => {
        this.output += `${name}: ${err.message}\n`;
        resolve();
      });
    });
  }

  static spawn(name: string, cmd: string, args: string[]): Child {
    return new Child(name, spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.running || this.proc.pid === undefined) return;
    this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), 5000)));
    const timedOut = await Promise.race([this.exited.then(() => false), late]);
    clearTimeout(timer);
    if (timedOut) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** True when nothing listens on host:port (TCP). */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * One TCP port free on every given loopback address: Bridgehead has a single outbound port,
 * so all receivers listen on it, each on its own 127.0.0.x.
 */
export async function sharedPort(hosts: string[]): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort(hosts[0]);
    let ok = true;
    for (const h of hosts.slice(1)) if (!(await portFree(h, port))) ok = false;
    if (ok) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(', ')}`);
}

/** Waits for an SMTP banner on host:port. */
export async function waitForBanner(host: string, port: number, timeoutMs = 10_000): Promise<string> {
  return waitFor(
    `an SMTP banner on ${host}:${port}`,
    async () => {
      try {
        const c = await RawSmtp.connect(port, host);
        try {
          const banner = await c.reply(2000);
          return banner.startsWith('220') ? banner : undefined;
        } finally {
          c.close();
        }
      } catch {
        return undefined;
      }
    },
    timeoutMs,
    100,
  );
}

// ---------------------------------------------------------------- dnsmasq

/**
 * dnsmasq as an authoritative-only server for *.test on 127.0.0.1:<port>: no upstream, no
 * /etc/hosts, no config file. Names under .test it does not know are NXDOMAIN.
 * `records` are dnsmasq options: --mx-host=..., --host-record=..., --address=...
 */
export class Dnsmasq {
  private child: Child | undefined;

  private constructor(
    readonly port: number,
    private readonly records: string[],
  ) {}

  /** "127.0.0.1:<port>", as delivery.externalDnsServers wants it. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.child?.output ?? '';
  }

  /** The main dnsmasq process (it forks a child per TCP connection). */
  get pid(): number | undefined {
    return this.child?.proc.pid;
  }

  static async start(records: string[]): Promise<Dnsmasq> {
    let last = '';
    for (let attempt = 0; attempt < 5; attempt++) {
      const d = new Dnsmasq(await freePort(), records);
      try {
        await d.launch();
        return d;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    throw new Error(`dnsmasq did not start: ${last}`);
  }

  /** Starts (again) on the same port. */
  async launch(): Promise<void> {
    const child = Child.spawn('dnsmasq', BIN.dnsmasq, [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--no-poll',
      '--bind-interfaces',
      '--listen-address=127.0.0.1',
      `--port=${this.port}`,
      '--pid-file=',
      '--user=nobody',
      '--cache-size=0',
      '--log-queries',
      '--log-facility=-',
      '--local=/test/',
      '--host-record=dns-ready.test,127.0.0.1',
      ...this.records,
    ]);
    this.child = child;
    const r = new Resolver({ timeout: 300, tries: 1 });
    r.setServers([this.server]);
    try {
      await waitFor(
        `dnsmasq on ${this.server}`,
        async () => {
          if (!child.running) throw new Error(`dnsmasq exited:\n${child.output}`);
          return (await r.resolve4('dns-ready.test').catch(() => [])).length > 0;
        },
        5000,
      );
    } catch (err) {
      await child.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.child?.stop();
  }
}

// ---------------------------------------------------------------- Postfix

export interface PostfixOptions {
  /** Temp directory for config, queue, data, log and the delivered mailboxes. */
  dir: string;
  /** 127.0.0.x address and port smtpd listens on. */
  ip: string;
  port: number;
  hostname: string;
  /** Domains this Postfix delivers to (virtual mailbox domains). */
  domains: string[];
  /** Addresses with a mailbox; any other address of `domains` is 550 5.1.1 user unknown. */
  mailboxes: string[];
  /** check_recipient_access at RCPT: address or domain → action ("450 4.2.0 ...", a class). */
  rcptAccess?: Record<string, string>;
  /** check_recipient_access at end of data (single-recipient transactions). */
  endOfDataAccess?: Record<string, string>;
  /** smtpd_restriction_classes: name → restrictions, for rcptAccess values. */
  restrictionClasses?: Record<string, string>;
  /** More main.cf lines, e.g. "smtpd_recipient_limit = 3". */
  mainCf?: string[];
}

/**
 * A private Postfix instance: its own config_directory, queue_directory and data_directory,
 * one smtpd on ip:port, accepted mail delivered by virtual(8) into Maildirs under <dir>/vmail.
 */
export class PostfixPeer {
  readonly conf: string;
  readonly queue: string;
  readonly vmail: string;
  private masterPid: number | undefined;

  private constructor(readonly o: PostfixOptions) {
    this.conf = path.join(o.dir, 'conf');
    this.queue = path.join(o.dir, 'queue');
    this.vmail = path.join(o.dir, 'vmail');
  }

  private postfix(...args: string[]): Promise<RunResult> {
    return run(BIN.postfix, ['-c', this.conf, ...args]);
  }

  maillog(): string {
    try {
      return readFileSync(path.join(this.o.dir, 'maillog'), 'utf8');
    } catch {
      return '';
    }
  }

  private writeMap(name: string, map: Record<string, string>): string {
    const file = path.join(this.conf, name);
    writeFileSync(
      file,
      Object.entries(map)
        .map(([k, v]) => `${k} ${v}\n`)
        .join(''),
    );
    return `texthash:${file}`;
  }

  static async start(o: PostfixOptions): Promise<PostfixPeer> {
    const p = new PostfixPeer(o);
    await p.configure();
    const check = await p.postfix('check');
    if (check.code !== 0) throw new Error(`postfix check failed:\n${check.stderr}\n${p.maillog()}`);
    const start = await p.postfix('start');
    if (start.code !== 0) throw new Error(`postfix start failed:\n${start.stderr}\n${p.maillog()}`);
    try {
      p.masterPid = await waitFor('the Postfix master pid file', () => {
        try {
          const pid = Number(readFileSync(path.join(p.queue, 'pid', 'master.pid'), 'utf8').trim());
          return pid > 0 ? pid : undefined;
        } catch {
          return undefined;
        }
      });
      await waitForBanner(o.ip, o.port);
    } catch (err) {
      // Started but not answering: it is not left running.
      await p.stop().catch(() => undefined);
      throw new Error(`${(err as Error).message}\n${p.maillog()}`);
    }
    return p;
  }

  private async configure(): Promise<void> {
    const o = this.o;
    const data = path.join(o.dir, 'data');
    for (const d of [this.conf, this.queue, data, this.vmail]) mkdirSync(d, { recursive: true, mode: 0o755 });
    chownSync(data, await idOf('-u', 'postfix'), await idOf('-g', 'postfix'));
    // virtual(8) writes the Maildirs as nobody.
    const nobody = await idOf('-u', 'nobody');
    const nogroup = await idOf('-g', 'nobody');
    chownSync(this.vmail, nobody, nogroup);
    const mailboxMap = this.writeMap(
      'vmailbox',
      Object.fromEntries(
        o.mailboxes.map((a) => {
          const [local, domain] = a.split('@') as [string, string];
          return [a, `${domain}/${local}/`];
        }),
      ),
    );
    const rcptAccess = this.writeMap('rcpt_access', o.rcptAccess ?? {});
    const eodAccess = this.writeMap('eod_access', o.endOfDataAccess ?? {});
    const classes = o.restrictionClasses ?? {};
    writeFileSync(
      path.join(this.conf, 'main.cf'),
      [
        'compatibility_level = 3.6',
        `queue_directory = ${this.queue}`,
        `data_directory = ${data}`,
        'mail_owner = postfix',
        'setgid_group = postdrop',
        `myhostname = ${o.hostname}`,
        'mydestination =',
        // The smtpd address is named in master.cf; inet_interfaces only has to be local.
        'inet_interfaces = 127.0.0.1',
        'inet_protocols = ipv4',
        'mynetworks = 127.0.0.0/8',
        'smtp_dns_support_level = disabled',
        // This peer only receives: nothing it holds is ever sent anywhere.
        'default_transport = error:this test peer does not send mail',
        'relay_transport = error:this test peer does not send mail',
        'notify_classes =',
        'alias_maps =',
        'alias_database =',
        'local_recipient_maps =',
        `virtual_mailbox_domains = ${o.domains.join(', ')}`,
        `virtual_mailbox_base = ${this.vmail}`,
        `virtual_mailbox_maps = ${mailboxMap}`,
        `virtual_uid_maps = static:${nobody}`,
        `virtual_gid_maps = static:${nogroup}`,
        'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
        `smtpd_recipient_restrictions = reject_unlisted_recipient, check_recipient_access ${rcptAccess}, permit_mynetworks, reject`,
        `smtpd_end_of_data_restrictions = check_recipient_access ${eodAccess}`,
        `smtpd_restriction_classes = ${Object.keys(classes).join(', ')}`,
        ...Object.entries(classes).map(([k, v]) => `${k} = ${v}`),
        `maillog_file = ${path.join(o.dir, 'maillog')}`,
        `maillog_file_prefixes = ${o.dir}`,
        'queue_run_delay = 1s',
        'biff = no',
        ...(o.mainCf ?? []),
        '',
      ].join('\n'),
    );
    // No chroot: the private queue directory has none of the files a chroot jail needs.
    writeFileSync(
      path.join(this.conf, 'master.cf'),
      [
        `${o.ip}:${o.port} inet n - n - - smtpd`,
        'pickup    unix  n - n 60  1 pickup',
        'cleanup   unix  n - n -   0 cleanup',
        'qmgr      unix  n - n 300 1 qmgr',
        'rewrite   unix  - - n -   - trivial-rewrite',
        'bounce    unix  - - n -   0 bounce',
        'defer     unix  - - n -   0 bounce',
        'trace     unix  - - n -   0 bounce',
        'verify    unix  - - n -   1 verify',
        'proxymap  unix  - - n -   - proxymap',
        'showq     unix  n - n -   - showq',
        'error     unix  - - n -   - error',
        'retry     unix  - - n -   - error',
        'discard   unix  - - n -   - discard',
        'virtual   unix  - n n -   - virtual',
        'anvil     unix  - - n -   1 anvil',
        'scache    unix  - - n -   1 scache',
        'postlog   unix-dgram n - n - 1 postlogd',
        '',
      ].join('\n'),
    );
  }

  /** Replaces the RCPT access map and reloads, as an administrator would. */
  async setRecipientAccess(map: Record<string, string>): Promise<void> {
    this.writeMap('rcpt_access', map);
    const r = await this.postfix('reload');
    if (r.code !== 0) throw new Error(`postfix reload failed:\n${r.stderr}\n${this.maillog()}`);
  }

  /** Messages delivered to `address` (files in its Maildir new/), oldest name first. */
  delivered(address: string): string[] {
    const [local, domain] = address.split('@') as [string, string];
    const dir = path.join(this.vmail, domain, local, 'new');
    try {
      return readdirSync(dir)
        .sort()
        .map((n) => readFileSync(path.join(dir, n), 'utf8'));
    } catch {
      return [];
    }
  }

  async stop(): Promise<void> {
    await this.postfix('stop');
    const pid = this.masterPid;
    if (pid === undefined) return;
    await waitFor('the Postfix master to exit', () => !alive(pid), 10_000).catch(async () => {
      // Ours, by the pid it wrote: a master that did not stop is not left running.
      await stopPid(pid);
    });
  }
}

// ---------------------------------------------------------------- smtp-sink

/** Postfix's smtp-sink on ip:port, dumping every transaction into <dir>/dump. */
export class SmtpSink {
  private constructor(
    private readonly child: Child,
    readonly dumpDir: string,
  ) {}

  get output(): string {
    return this.child.output;
  }

  /** `extra` are smtp-sink options, e.g. ['-r', '.', '-B', '554 Permanent scan failure']. */
  static async start(dir: string, ip: string, port: number, extra: string[] = []): Promise<SmtpSink> {
    const dumpDir = path.join(dir, 'dump');
    mkdirSync(dumpDir, { recursive: true, mode: 0o755 });
    chownSync(dumpDir, await idOf('-u', 'nobody'), await idOf('-g', 'nobody'));
    const child = Child.spawn('smtp-sink', BIN.smtpSink, [
      '-u',
      'nobody',
      '-4',
      '-h',
      `sink-${ip}.test`,
      '-d',
      `${dumpDir}/msg.`,
      ...extra,
      `${ip}:${port}`,
      '100',
    ]);
    const sink = new SmtpSink(child, dumpDir);
    try {
      await waitForBanner(ip, port);
    } catch (err) {
      await child.stop();
      throw new Error(`${(err as Error).message}\n${child.output}`);
    }
    return sink;
  }

  /** Dumped transactions (smtp-sink headers, then the message as received). */
  messages(): string[] {
    try {
      return readdirSync(this.dumpDir)
        .sort()
        .map((n) => readFileSync(path.join(this.dumpDir, n), 'utf8'));
    } catch {
      return [];
    }
  }

  async stop(): Promise<void> {
    await this.child.stop();
  }
}

// ---------------------------------------------------------------- postgrey

/** postgrey as a Postfix policy service on 127.0.0.1:<port>, greylisting for `delay` seconds. */
export class Postgrey {
  private constructor(
    private readonly child: Child,
    readonly port: number,
  ) {}

  get output(): string {
    return this.child.output;
  }

  static async start(dir: string, delaySeconds: number): Promise<Postgrey> {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const db = path.join(dir, 'db');
    mkdirSync(db, { mode: 0o700 });
    chownSync(db, await idOf('-u', 'postgrey'), await idOf('-g', 'postgrey'));
    // Empty whitelists: nothing of the system's /etc/postgrey applies.
    const empty = path.join(dir, 'whitelist');
    writeFileSync(empty, '');
    const port = await freePort();
    const child = Child.spawn('postgrey', BIN.postgrey, [
      `--inet=127.0.0.1:${port}`,
      `--delay=${delaySeconds}`,
      `--dbdir=${db}`,
      `--whitelist-clients=${empty}`,
      `--whitelist-recipients=${empty}`,
      '--auto-whitelist-clients=0',
      '--hostname=greylist.test',
    ]);
    try {
      await waitFor(
        `postgrey on 127.0.0.1:${port}`,
        () =>
          new Promise<boolean>((resolve) => {
            if (!child.running) return resolve(false);
            const s = net.connect(port, '127.0.0.1', () => {
              s.destroy();
              resolve(true);
            });
            s.once('error', () => resolve(false));
          }),
        15_000,
        100,
      );
    } catch (err) {
      await child.stop();
      throw new Error(`${(err as Error).message}\n${child.output}`);
    }
    return new Postgrey(child, port);
  }

  async stop(): Promise<void> {
    await this.child.stop();
  }
}
