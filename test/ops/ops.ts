// Helpers for the operations suite: run the `bridgehead` CLI as an operator would (a child
// process, its output and exit code), start servers of a multi-server organisation, send
// mail, start Postfix's smtp-sink. Every wait is bounded; every process is ended by its pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { mailboxFolder, storeFolder } from '../../src/delivery/local/folder-names.js';
import { CLI } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  raw: Buffer;
}

/** Runs `bridgehead ARGS`; resolves with its exit code and output (never rejects on exit code). */
export function bh(args: string[], o: { timeoutMs?: number; stdoutFd?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    // The operator's environment must not leak into what a test asserts.
    delete env.BRIDGEHEAD_API;
    delete env.BRIDGEHEAD_TOKEN;
    const child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['ignore', o.stdoutFd ?? 'pipe', 'pipe'],
      env,
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bridgehead ${args.join(' ')}: no exit within ${o.timeoutMs ?? 30_000} ms\n${err}`));
    }, o.timeoutMs ?? 30_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const raw = Buffer.concat(out);
      resolve({ code, stdout: raw.toString('utf8'), stderr: err, raw });
    });
  });
}

/** Runs `bridgehead ARGS > file`, as the shell would redirect it. */
export async function bhToFile(args: string[], file: string): Promise<CliResult> {
  const fd = openSync(file, 'w');
  try {
    return await bh(args, { stdoutFd: fd });
  } finally {
    closeSync(fd);
  }
}

/** Runs a command that must succeed with --json and returns the parsed output. */
export async function bhJson<T = any>(args: string[]): Promise<T> {
  const r = await bh([...args, '--json']);
  if (r.code !== 0) throw new Error(`bridgehead ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a truthy value; bounded in time and in attempts. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  o: { timeoutMs?: number; intervalMs?: number; maxTries?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (o.timeoutMs ?? 20_000);
  const maxTries = o.maxTries ?? 200;
  let last: unknown;
  for (let i = 0; i < maxTries && Date.now() < deadline; i++) {
    try {
      const v = await probe();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    await sleep(o.intervalMs ?? 200);
  }
  throw new Error(
    `timed out waiting for ${what} (last: ${last instanceof Error ? last.message : String(last)})`,
  );
}

// ------------------------------------------------------------------ servers

export interface OrgServer {
  name: string;
  proc: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/** `bridgehead serve --config FILE --server NAME`, ready once its virtual server listens. */
export async function serve(configFile: string, name: string, cwd: string): Promise<OrgServer> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', configFile, '--server', name], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  try {
    await waitFor(
      `${name} to listen`,
      () => {
        if (proc.exitCode !== null) throw new Error(`${name} exited early:\n${out}`);
        return /listening on/.test(out);
      },
      { timeoutMs: 30_000, intervalMs: 50, maxTries: 1000 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, proc, output: () => out, stop };
}

// ------------------------------------------------------------------ mail

/** An RFC 5322 message with CRLF line ends. */
export function compose(o: {
  from: string;
  to: string[];
  subject: string;
  messageId: string;
  body: string;
}): Buffer {
  const head = [
    `From: <${o.from}>`,
    `To: ${o.to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: ${o.subject}`,
    `Message-ID: ${o.messageId}`,
    `Date: ${new Date().toUTCString()}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
  ].join('\r\n');
  return Buffer.from(`${head}\r\n\r\n${o.body.replace(/\r?\n/g, '\r\n')}`, 'utf8');
}

/** Sends one message over SMTP; returns the queue id from "250 2.6.0 <id@host>". */
export async function send(port: number, from: string, to: string[], message: Buffer): Promise<string> {
  const c = await RawSmtp.connect(port);
  const expect = async (line: string, code: RegExp) => {
    const r = await c.cmd(line);
    if (!code.test(r)) throw new Error(`${line.slice(0, 60)} -> ${r}`);
    return r;
  };
  try {
    const banner = await c.reply();
    if (!banner.startsWith('220')) throw new Error(`banner ${banner}`);
    await expect('EHLO client.test', /^250/);
    await expect(`MAIL FROM:<${from}>`, /^250 /);
    for (const t of to) await expect(`RCPT TO:<${t}>`, /^250 /);
    await expect('DATA', /^354 /);
    const text = message.toString('utf8');
    const stuffed = text.replace(/(^|\r\n)\./g, '$1..');
    const done = await expect(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.`, /^250 2\.6\.0 /);
    await c.cmd('QUIT').catch(() => undefined);
    const m = /^250 2\.6\.0 <([0-9A-Za-z]+)@/.exec(done);
    if (!m) throw new Error(`no queue id in ${done}`);
    return m[1]!;
  } finally {
    c.close();
  }
}

/** The message with its first header field (Bridgehead's Received, folded lines included) cut off. */
export function afterFirstHeader(bytes: Buffer): Buffer {
  const text = bytes.toString('latin1');
  if (!/^Received:/i.test(text)) throw new Error(`no Received header on top: ${text.slice(0, 80)}`);
  const m = /\r\n(?![ \t])/.exec(text);
  if (!m) throw new Error('no end to the first header field');
  return bytes.subarray(m.index + 2);
}

/** Files delivered to a Maildir under a server's data directory. */
export function maildirFiles(dataDir: string, address: string, store = 'Mailbox Store'): string[] {
  const dir = path.join(dataDir, 'mailboxes', storeFolder(store), mailboxFolder(address), 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => path.join(dir, f)) : [];
}

// ------------------------------------------------------------------ Postfix smtp-sink

export const SMTP_SINK = ['/usr/sbin/smtp-sink', '/usr/lib/postfix/smtp-sink'].find((p) => existsSync(p));

/**
 * Postfix's smtp-sink on 127.0.0.1:port, appending every transaction to `dumpFile`
 * (the directory must be writable by the user it runs as).
 */
export async function startSmtpSink(port: number, dumpFile: string): Promise<{ stop: () => Promise<void> }> {
  if (!SMTP_SINK) throw new Error('smtp-sink is not installed');
  // As root smtp-sink must drop privileges (-u); as anyone else it runs as itself.
  const asRoot = process.getuid?.() === 0;
  const args = [...(asRoot ? ['-u', 'nobody'] : []), '-D', dumpFile, `127.0.0.1:${port}`, '10'];
  const proc = spawn(SMTP_SINK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  // Ready when it answers with a banner.
  try {
    await waitFor(
      'smtp-sink to answer',
      async () => {
        if (proc.exitCode !== null) throw new Error(`smtp-sink exited: ${err}`);
        const c = await RawSmtp.connect(port);
        try {
          return (await c.reply(2000)).startsWith('220');
        } finally {
          c.close();
        }
      },
      { timeoutMs: 10_000, intervalMs: 100, maxTries: 100 },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { stop };
}

/** A minimal CSV reader (quoted fields, doubled quotes) for the tracking export. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const cells: string[] = [];
    let cur = '';
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]!;
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') {
          cur += '"';
          i++;
        } else if (ch === '"') quoted = false;
        else cur += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === ',') {
        cells.push(cur);
        cur = '';
      } else cur += ch;
    }
    cells.push(cur);
    rows.push(cells);
  }
  return rows;
}
