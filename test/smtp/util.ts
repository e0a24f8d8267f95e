// Shared helpers for the SMTP integration tests: external programs with a hard time limit,
// raw sockets from a chosen loopback address, and queue-id handling.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import path from 'node:path';
import { CLI } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { spooledMessages } from '../helpers/spool.js';

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; it is killed (by its pid) if it outlives `timeoutMs`. */
export function run(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** A stored password (SCRAM-SHA-256 verifier) made the way an administrator makes one: `bridgehead user hash-password`. */
export async function hashPasswordWithCli(password: string): Promise<string> {
  const r = await run(process.execPath, [CLI, 'user', 'hash-password'], { input: `${password}\n` });
  if (r.code !== 0) throw new Error(`hash-password failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** The queue id from `250 2.6.0 <ID@fqdn> Queued mail for delivery`, or undefined. */
export function queueId(reply: string, fqdn = 'mail1.test.example'): string | undefined {
  const escaped = fqdn.replace(/\./g, '\\.');
  const m = new RegExp(`^250 2\\.6\\.0 <([0-9A-Z]+)@${escaped}> Queued mail for delivery$`).exec(reply);
  return m?.[1];
}

/** Lookup of one spooled message by queue id. */
export async function spooledById(dataDir: string, id: string) {
  return (await spooledMessages(dataDir)).find((m) => m.envelope.id === id);
}

/** Every file in the spool directory, complete or not (spooledMessages shows complete ones only). */
export function spoolFiles(dataDir: string): string[] {
  try {
    return readdirSync(path.join(dataDir, 'spool')).sort();
  } catch {
    return [];
  }
}

/** Connects, reads the banner and says EHLO; returns the client ready for MAIL. */
export async function ehloSession(port: number, helo = 'client.test', host = '127.0.0.1'): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, host);
  const banner = await c.reply();
  if (!banner.startsWith('220 ')) throw new Error(`unexpected banner: ${banner}`);
  const ehlo = await c.cmd(`EHLO ${helo}`);
  if (!ehlo.startsWith('250')) throw new Error(`unexpected EHLO reply: ${ehlo}`);
  return c;
}

/**
 * Connects from `localAddress` and reports what the server does first: the bytes of its first
 * reply, or that it closed the connection without a word.
 */
export function probeFrom(
  port: number,
  localAddress: string,
  host = '127.0.0.1',
  timeoutMs = 5000,
): Promise<{ received: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    let received = '';
    let done = false;
    const s = net.connect({ port, host, localAddress });
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ received, closedByServer });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      received += d;
      if (received.includes('\r\n')) finish(false);
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      // A reset is the server dropping us too.
      if (err.code === 'ECONNRESET') return finish(true);
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    s.on('close', () => finish(true));
  });
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Completes a TLS handshake on a session that just got `220` to STARTTLS and returns a raw
 * client on the encrypted stream (the server's certificate is self-signed: not verified).
 */
export async function upgradeToTls(c: RawSmtp): Promise<RawSmtp> {
  const secure = tls.connect({ socket: c.socket, rejectUnauthorized: false });
  await once(secure, 'secureConnect');
  // RawSmtp only exposes connect(); a TLS socket is a net.Socket, so build one around it.
  const Raw = RawSmtp as unknown as new (socket: net.Socket) => RawSmtp;
  return new Raw(secure);
}
