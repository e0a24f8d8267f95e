// A full disk, as a client and an administrator see it. Each server's data directory is a
// small tmpfs of its own (tests run as root; without permission to mount, the file is
// skipped), filled with a filler file to leave as much free space as a case needs.
//   - below queueMinFreeKb, or a SIZE= that does not fit above it: 452 4.3.1 at MAIL;
//   - the spool cannot be written (ENOSPC) during DATA: 452 4.3.1, nothing queued;
//   - message tracking events of the full period are written once there is room again,
//     and beyond messageTracking.maxHeldEvents a GAP event says how many were lost;
//   - a Maildir store on a full file system: the mail waits in Local delivery (452 4.3.1).
// Loopback net 127.0.73.x, ports 47310-47319. RFC 3463 (4.3.1), RFC 5321 §4.2.2 (452),
// RFC 1870 §6.1; Postfix queue_minfree. Issue 12 (Faults).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, startServer, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { bhJson } from '../ops/ops.js';
import { connectFrom } from '../hygiene/support.js';
import { spoolFiles } from './util.js';

const HOST = '127.0.73.1';
const FROM = 'kim@fourthcoffee.test';
const TO = 'alice@example.com';
const FULL = '452 4.3.1 Insufficient system storage';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Free space is read at most once a second: wait that long after changing it. */
const settle = () => sleep(1200);

const mounted: string[] = [];

/** Mounts a tmpfs of `size` at a new directory; a reason when that is not permitted. */
function mountTmpfs(dir: string, size: string): string | undefined {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
    mounted.push(dir);
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (needs root and mount permission): ${(err as Error).message.split('\n')[0]}`;
  }
}

/** Unmounts a tmpfs this file mounted (lazily: a server that was killed may hold files). */
function unmount(dir: string): void {
  const i = mounted.indexOf(dir);
  if (i === -1) return;
  mounted.splice(i, 1);
  execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
}

const probeDir = mkdtempSync(path.join(os.tmpdir(), 'bh-diskfull-probe-'));
const skip = mountTmpfs(probeDir, '64k');
if (!skip) unmount(probeDir);
rmSync(probeDir, { recursive: true, force: true });

const free = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/** Fills `dir` (a tmpfs) so that about `leave` bytes stay free; 0 fills it to the brim. */
function fillTo(dir: string, leave: number): void {
  const file = path.join(dir, 'filler');
  rmSync(file, { force: true });
  const fd = openSync(file, 'w');
  try {
    let todo = free(dir) - leave;
    for (const chunk of [1024 * 1024, 64 * 1024, 4096]) {
      const block = Buffer.alloc(chunk, 0x5a);
      // Bounded: at most todo/chunk writes of each size.
      for (let i = 0; todo >= chunk && i < 10_000; i++) {
        try {
          todo -= writeSync(fd, block);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

function emptyFiller(dir: string): void {
  rmSync(path.join(dir, 'filler'), { force: true });
}

/** A server whose data directory is a tmpfs of `size`. */
async function serverOnTmpfs(
  port: number,
  size: string,
  edit: (server: Record<string, any>) => void,
): Promise<RunningServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-diskfull-'));
  const refusal = mountTmpfs(path.join(dir, 'data'), size);
  if (refusal) throw new Error(refusal);
  return startServer({
    dir,
    host: HOST,
    port,
    mutate: (org) => {
      const server = org.routingGroups[0].servers[0];
      server.virtualServers[0].messages = { maxMessageSizeKb: 10240, maxSessionSizeKb: 40960 };
      edit(server);
    },
  }).catch((err) => {
    unmount(path.join(dir, 'data'));
    cleanup(dir);
    throw err;
  });
}

async function ehlo(port: number): Promise<RawSmtp> {
  const c = await connectFrom(port, '127.0.73.2', HOST);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.cmd('EHLO client.test'), /^250/);
  return c;
}

/** A message of about `bytes` bytes, lines of 76 characters. */
function body(bytes: number): string {
  const line = 'x'.repeat(76) + '\r\n';
  return `Subject: disk full\r\n\r\n${line.repeat(Math.ceil(bytes / line.length))}.\r\n`;
}

async function sendMessage(port: number, bytes: number): Promise<string> {
  const c = await ehlo(port);
  try {
    assert.equal(await c.cmd(`MAIL FROM:<${FROM}>`), `250 2.1.0 ${FROM}....Sender OK`);
    assert.equal(await c.cmd(`RCPT TO:<${TO}>`), `250 2.1.5 ${TO}`);
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    c.write(body(bytes));
    const reply = await c.reply(20_000);
    // The session goes on after the refusal.
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
    return reply;
  } finally {
    c.close();
  }
}

after(() => {
  for (const dir of [...mounted]) unmount(dir);
});

describe('disk full: 452 4.3.1 at MAIL below queueMinFreeKb', { skip }, () => {
  let server: RunningServer;

  before(async () => {
    server = await serverOnTmpfs(47310, '8m', (s) => (s.queueMinFreeKb = 1024));
  });

  after(async () => {
    await server?.stop();
    if (server) {
      unmount(server.dataDir);
      cleanup(server.dir);
    }
  });

  test('SIZE= larger than the free space above the reserve: 452 4.3.1; a SIZE that fits: 250', async () => {
    fillTo(server.dataDir, 3 * 1024 * 1024);
    await settle();
    const c = await ehlo(server.port);
    try {
      // About 3 MB free, 1 MB reserved: 2.5 MB does not fit, 1 MB does.
      assert.equal(await c.cmd(`MAIL FROM:<${FROM}> SIZE=2500000`), FULL);
      assert.equal(await c.cmd(`MAIL FROM:<${FROM}> SIZE=1000000`), `250 2.1.0 ${FROM}....Sender OK`);
      assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
    } finally {
      c.close();
    }
  });

  test('free space below the reserve: every MAIL gets 452 4.3.1, and MAIL works again once there is room', async () => {
    fillTo(server.dataDir, 512 * 1024);
    await settle();
    const c = await ehlo(server.port);
    try {
      assert.equal(await c.cmd(`MAIL FROM:<${FROM}>`), FULL);
      assert.equal(await c.cmd('MAIL FROM:<>'), FULL);
    } finally {
      c.close();
    }
    emptyFiller(server.dataDir);
    await settle();
    const again = await ehlo(server.port);
    try {
      assert.equal(await again.cmd(`MAIL FROM:<${FROM}>`), `250 2.1.0 ${FROM}....Sender OK`);
    } finally {
      again.close();
    }
  });
});

describe('disk full: the spool cannot be written, tracking holds its events', { skip }, () => {
  let server: RunningServer;
  const api = () => ['--api', server.api!, '--data-dir', server.dataDir];

  before(async () => {
    server = await serverOnTmpfs(47311, '4m', (s) => {
      // No reserve: the disk is allowed to fill up, so DATA meets ENOSPC.
      s.queueMinFreeKb = 0;
      s.messageTracking = { maxHeldEvents: 3 };
      // Connections from .9 are dropped at connect: a tracking event (FAIL, FILTER) each.
      s.virtualServers[0].connectionControl = { mode: 'allExcept', list: ['127.0.73.9'] };
    });
  });

  after(async () => {
    await server?.stop();
    if (server) {
      unmount(server.dataDir);
      cleanup(server.dir);
    }
  });

  /** Connects from the refused address `n` times; each connection is dropped. */
  async function refusedConnections(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const c = await connectFrom(server.port, '127.0.73.9', HOST);
      await c.waitClosed(5000);
      c.close();
    }
  }

  const failEvents = async () =>
    (await bhJson<{ clientIp?: string }[]>(['track', '--event', 'FAIL', ...api()])).filter(
      (e) => e.clientIp === '127.0.73.9',
    );

  test('ENOSPC during DATA: 452 4.3.1, never acknowledged, nothing queued', async () => {
    fillTo(server.dataDir, 0);
    await settle();
    // A message small enough to be written whole at the end, and one that spills while it arrives.
    assert.equal(await sendMessage(server.port, 100 * 1024), FULL);
    assert.equal(await sendMessage(server.port, 1024 * 1024), FULL);
    // BDAT: the chunk that meets the full disk is refused, and so is the transaction.
    const c = await ehlo(server.port);
    try {
      assert.equal(await c.cmd(`MAIL FROM:<${FROM}>`), `250 2.1.0 ${FROM}....Sender OK`);
      assert.equal(await c.cmd(`RCPT TO:<${TO}>`), `250 2.1.5 ${TO}`);
      const chunk = Buffer.alloc(512 * 1024, 0x61);
      c.write(`BDAT ${chunk.length}\r\n`);
      c.write(chunk);
      assert.equal(await c.reply(20_000), FULL);
      assert.equal(await c.cmd('BDAT 0 LAST'), '503 5.5.1 Previous BDAT failed; send RSET');
    } finally {
      c.close();
    }
    assert.deepEqual(
      spoolFiles(server.dataDir).filter((f) => f.endsWith('.msg')),
      [],
    );
    assert.deepEqual(await bhJson(['queue', 'find', ...api()]), []);
    assert.match(server.output(), /cannot write message to the spool/);
  });

  test('tracking events of the full period are written once there is room again', async () => {
    fillTo(server.dataDir, 0);
    await refusedConnections(2);
    await sleep(300);
    emptyFiller(server.dataDir);
    // Held events are tried again every second.
    const deadline = Date.now() + 10_000;
    let events = await failEvents();
    while (events.length < 2 && Date.now() < deadline) {
      await sleep(200);
      events = await failEvents();
    }
    assert.equal(events.length, 2, JSON.stringify(events));
  });

  test('beyond maxHeldEvents the events are lost, and a GAP event says how many and when', async () => {
    const before = (await failEvents()).length;
    fillTo(server.dataDir, 0);
    const started = new Date();
    await refusedConnections(6);
    await sleep(300);
    emptyFiller(server.dataDir);
    const deadline = Date.now() + 10_000;
    let gaps: { event: string; source: string; messageInfo?: string; dateTime: string }[] = [];
    while (!gaps.length && Date.now() < deadline) {
      await sleep(200);
      gaps = await bhJson(['track', '--event', 'GAP', ...api()]);
    }
    assert.equal(gaps.length, 1, JSON.stringify(gaps));
    assert.equal(gaps[0]!.source, 'TRACKING');
    assert.match(gaps[0]!.messageInfo ?? '', /^3 event\(s\) not recorded between \S+ and \S+: /);
    assert.ok(new Date(gaps[0]!.dateTime) >= new Date(started.getTime() - 1000), gaps[0]!.dateTime);
    // The three held ones were written.
    assert.equal((await failEvents()).length, before + 3);
    assert.match(server.output(), /message tracking/i);
  });
});

describe('disk full: the Maildir store cannot be written', { skip }, () => {
  let server: RunningServer;
  let mailboxes: string;
  const api = () => ['--api', server.api!, '--data-dir', server.dataDir];

  before(async () => {
    // The spool has room; only the mailboxes' file system (a tmpfs of its own) is full.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bh-diskfull-'));
    mailboxes = path.join(dir, 'data', 'mailboxes');
    const refusal = mountTmpfs(mailboxes, '1m');
    if (refusal) throw new Error(refusal);
    fillTo(mailboxes, 0);
    server = await startServer({ dir, host: HOST, port: 47312, engine: true });
  });

  after(async () => {
    await server?.stop();
    if (server) {
      unmount(mailboxes);
      cleanup(server.dir);
    }
  });

  test('local delivery on a full disk waits in Local delivery with 452 4.3.1, and delivers once there is room', async () => {
    assert.match(await sendMessage(server.port, 8 * 1024), /^250 /);
    type Queue = { name: string; state: string; messageCount: number; lastError?: string };
    const local = async () =>
      (await bhJson<Queue[]>(['queue', 'list', ...api()])).find((q) => q.name === 'Local delivery');
    const deadline = Date.now() + 15_000;
    let queue = await local();
    while (!queue?.lastError && Date.now() < deadline) {
      await sleep(200);
      queue = await local();
    }
    assert.equal(queue?.state, 'Retry', JSON.stringify(queue));
    assert.match(queue?.lastError ?? '', /^452 4\.3\.1 Store driver error for alice@example\.com: ENOSPC/);
    emptyFiller(mailboxes);
    await bhJson(['queue', 'retry', 'Local delivery', ...api()]).catch(() => undefined);
    const newDir = path.join(mailboxes, 'Mailbox_Store', 'alice@example.com', 'new');
    const until = Date.now() + 15_000;
    let files: string[] = [];
    while (!files.length && Date.now() < until) {
      await sleep(200);
      try {
        files = readdirSync(newDir);
      } catch {
        files = [];
      }
    }
    assert.equal(files.length, 1);
  });
});
