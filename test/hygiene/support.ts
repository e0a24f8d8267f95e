// Shared pieces of the hygiene integration tests: a private dnsmasq serving block-list zones
// on loopback, SMTP clients bound to a chosen 127.0.0.x source address, swaks, and readers
// for the tracking database and /metrics. Loopback only; the system resolver is never used.
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { existsSync, mkdtempSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import Database from 'better-sqlite3';
import { adminAuth, cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { run } from '../smtp/util.js';

export const DNSMASQ = '/usr/sbin/dnsmasq';
export const SWAKS = '/usr/bin/swaks';

/** Block-list answers: client 127.0.0.N is listed with 127.0.0.N (N = 2, 3, 4, 6, 7). */
export const LISTED = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.6', '127.0.0.7'];

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A UDP port free on 127.0.0.1 at the time of asking. */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

export interface DnsServer {
  port: number;
  /** "127.0.0.1:port", for delivery.externalDnsServers. */
  address: string;
  /** Names asked for (A queries), in order, from dnsmasq's query log. */
  queries(): string[];
  /**
   * Asks a fresh name and waits until dnsmasq has logged it: every query before it is in
   * queries() by then (its log is written asynchronously, in order).
   */
  sync(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts dnsmasq on 127.0.0.1 with a free port. `zones` are answered locally only (a name
 * without a record is NXDOMAIN); `records` maps a name to its A record.
 */
export async function startDns(
  zones: string[],
  records: Record<string, string>,
  /** More dnsmasq options, for example `--server=/zone/ip#port` to forward a zone. */
  extraArgs: string[] = [],
): Promise<DnsServer> {
  let lastOutput = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freeUdpPort();
    const args = [
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      '--conf-file=/dev/null',
      '--pid-file=',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--log-queries',
      '--log-facility=-',
      ...zones.map((z) => `--local=/${z}/`),
      ...Object.entries(records).map(([name, ip]) => `--host-record=${name},${ip}`),
      ...extraArgs,
    ];
    const proc: ChildProcess = spawn(DNSMASQ, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.once('error', () => undefined);
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    };
    // Ready when it answers; a port taken over TCP makes it exit, and we try another.
    const probe = new Resolver({ timeout: 200, tries: 1 });
    probe.setServers([`127.0.0.1:${port}`]);
    let ready = false;
    for (let i = 0; i < 25 && !ready && proc.exitCode === null; i++) {
      try {
        await probe.resolve4(`ready.${zones[0]}`);
        ready = true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTFOUND' || code === 'ENODATA') ready = true;
        else await sleep(40);
      }
    }
    if (ready) {
      const queries = () => [...out.matchAll(/query\[A\] (\S+) from/g)].map((m) => m[1]!);
      let marks = 0;
      const sync = async () => {
        const name = `sync-${++marks}.${zones[0]}`;
        await probe.resolve4(name).catch(() => undefined);
        for (let i = 0; i < 100 && !queries().includes(name); i++) await sleep(20);
        if (!queries().includes(name)) throw new Error(`dnsmasq never logged ${name}:\n${out}`);
      };
      return { port, address: `127.0.0.1:${port}`, queries, sync, stop };
    }
    lastOutput = out;
    await stop();
  }
  throw new Error(`dnsmasq did not start:\n${lastOutput}`);
}

/**
 * Starts one server per organisation edit, in parallel. A start that fails (a port taken
 * between choosing and binding it, a slow start) is tried again, twice at most, with a new
 * port and directory; if one still fails, the others are stopped and removed before the
 * error is thrown, so nothing outlives the test file.
 */
export async function startServers(
  mutations: ((org: Record<string, any>) => void)[],
): Promise<RunningServer[]> {
  const started: RunningServer[] = [];
  const startOne = async (mutate: (org: Record<string, any>) => void): Promise<RunningServer> => {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-hygiene-'));
      try {
        const srv = await startServer({ mutate, dir });
        started.push(srv);
        return srv;
      } catch (err) {
        last = err;
        cleanup(dir);
      }
    }
    throw last;
  };
  const results = await Promise.allSettled(mutations.map(startOne));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stopServers(started);
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<RunningServer>).value);
}

/** Stops servers (SIGTERM, then SIGKILL after 10 s) and removes their directories. */
export async function stopServers(servers: (RunningServer | undefined)[]): Promise<void> {
  await Promise.all(
    servers.map(async (srv) => {
      if (!srv) return;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 10_000)));
      if ((await Promise.race([srv.stop(), late])) === 'late') await srv.kill9();
      clearTimeout(timer);
      cleanup(srv.dir);
    }),
  );
}

/** Block-list zone records: every client in LISTED is listed with its own address. */
export function listedRecords(suffix: string, clients = LISTED): Record<string, string> {
  return Object.fromEntries(clients.map((ip) => [`${ip.split('.').reverse().join('.')}.${suffix}`, ip]));
}

/** Connects to the server from `localAddress` (any 127.0.0.0/8 address). */
export function connectFrom(port: number, localAddress: string, host = '127.0.0.1'): Promise<RawSmtp> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, localAddress }, () => {
      s.off('error', reject);
      // RawSmtp only exposes connect(); wrap the bound socket with its constructor.
      const Raw = RawSmtp as unknown as new (socket: net.Socket) => RawSmtp;
      resolve(new Raw(s));
    });
    s.once('error', reject);
  });
}

/** Banner and EHLO from `localAddress`; the client is ready for MAIL. */
export async function sessionFrom(
  port: number,
  localAddress: string,
  helo = 'client.test',
  host = '127.0.0.1',
): Promise<RawSmtp> {
  const c = await connectFrom(port, localAddress, host);
  const banner = await c.reply();
  if (!banner.startsWith('220 ')) throw new Error(`unexpected banner: ${banner}`);
  const ehlo = await c.cmd(`EHLO ${helo}`);
  if (!ehlo.startsWith('250')) throw new Error(`unexpected EHLO reply: ${ehlo}`);
  return c;
}

/** One MAIL + RCPT from `localAddress`; returns both replies and closes the session. */
export async function mailRcpt(
  port: number,
  localAddress: string,
  from: string,
  to: string,
): Promise<{ mail: string; rcpt: string }> {
  const c = await sessionFrom(port, localAddress);
  try {
    const mail = await c.cmd(`MAIL FROM:<${from}>`);
    const rcpt = await c.cmd(`RCPT TO:<${to}>`);
    await c.cmd('QUIT').catch(() => undefined);
    return { mail, rcpt };
  } finally {
    c.close();
  }
}

/** Runs swaks against the server (20 s limit); returns exit code and the whole transcript. */
export async function swaks(port: number, args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await run(
    SWAKS,
    ['--server', '127.0.0.1', '--port', String(port), '--ehlo', 'swaks.test', ...args],
    {
      timeoutMs: 20_000,
    },
  );
  return { code: r.code, out: r.stdout + r.stderr };
}

/**
 * The server's reply to the first command of the transcript that starts with `verb`
 * (swaks writes " -> " / " ~> " for what it sends, "<- " / "<** " / "<~ " / "<~* " for replies).
 */
export function replyTo(out: string, verb: string): string | undefined {
  const lines = out.split('\n').map((l) => l.replace(/\r$/, ''));
  const sent = lines.findIndex((l) => /^ ?[-~]> /.test(l) && l.replace(/^ ?[-~]> /, '').startsWith(verb));
  if (sent === -1) return undefined;
  const replies: string[] = [];
  for (const l of lines.slice(sent + 1)) {
    const m = /^<(?:-|\*\*|~|~\*) +(.*)$/.exec(l);
    if (!m) break;
    replies.push(m[1]!);
  }
  return replies.length ? replies.join('\n') : undefined;
}

export interface FilterEvent {
  event: string;
  source: string;
  sender: string | null;
  recipients: string;
  recipient_status: string | null;
  client_ip: string | null;
  connector_id: string | null;
  message_info: string | null;
}

/** Tracking events with source FILTER (and BADMAIL from filters), oldest first. */
export function filterEvents(dataDir: string): FilterEvent[] {
  const file = path.join(dataDir, 'tracking', 'tracking.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT event, source, sender, recipients, recipient_status, client_ip, connector_id, message_info
         FROM events WHERE source = 'FILTER' ORDER BY id`,
      )
      .all() as FilterEvent[];
  } finally {
    db.close();
  }
}

/** Waits (bounded) until a FILTER event matching `pred` is in the tracking database. */
export async function waitForFilterEvent(
  dataDir: string,
  pred: (e: FilterEvent) => boolean,
  timeoutMs = 5000,
): Promise<FilterEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = filterEvents(dataDir).find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) {
      throw new Error(`no matching FILTER event; have:\n${JSON.stringify(filterEvents(dataDir), null, 1)}`);
    }
    await sleep(50);
  }
}

/** bridgehead_filter_rejections_total by filter label, from the admin API's /metrics. */
export async function filterRejections(srv: {
  api?: string;
  dataDir: string;
}): Promise<Record<string, number>> {
  if (!srv.api) throw new Error('the server reported no admin API URL');
  const res = await fetch(`${srv.api}/metrics`, {
    headers: adminAuth(srv.dataDir),
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^bridgehead_filter_rejections_total\{filter="([^"]*)"\} (\S+)$/gm)) {
    counts[m[1]!] = Number(m[2]);
  }
  return counts;
}
