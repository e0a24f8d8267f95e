// Bridgehead's side of the remote-delivery tests: submitting mail over SMTP, reading a local
// Maildir, the queue database (read-only), the send protocol log, and parsing DSNs with
// Python's email package (a MIME parser that is not ours).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { mailboxFolder } from '../../src/delivery/local/folder-names.js';
import Database from 'better-sqlite3';
import { RawSmtp } from '../helpers/smtp.js';
import { waitFor } from './peers.js';

export interface Submitted {
  /** Bridgehead's queue id, from "250 2.6.0 <id@host>". */
  id: string;
  messageId: string;
  subject: string;
}

let counter = 0;

/** Submits one message over SMTP (no AUTH: the test's client address may relay). */
export async function submit(
  srv: { port: number; host: string },
  o: { from: string; to: string[]; subject: string; body?: string },
): Promise<Submitted> {
  counter++;
  const messageId = `<remote.${process.pid}.${Date.now()}.${counter}@client.test>`;
  const c = await RawSmtp.connect(srv.port, srv.host);
  try {
    const expect = async (line: string | undefined, code: RegExp): Promise<string> => {
      const r = line === undefined ? await c.reply() : await c.cmd(line);
      if (!code.test(r)) throw new Error(`${(line ?? '(banner)').slice(0, 60)} -> ${r}`);
      return r;
    };
    await expect(undefined, /^220 /);
    await expect('EHLO client.test', /^250[ -]/);
    await expect(`MAIL FROM:<${o.from}>`, /^250 /);
    for (const t of o.to) await expect(`RCPT TO:<${t}>`, /^250 /);
    await expect('DATA', /^354 /);
    const message = [
      `From: <${o.from}>`,
      `To: ${o.to.map((t) => `<${t}>`).join(', ')}`,
      `Subject: ${o.subject}`,
      `Message-ID: ${messageId}`,
      `Date: ${new Date().toUTCString().replace(/GMT$/, '+0000')}`,
      '',
      (o.body ?? `Body of "${o.subject}".`).replace(/\r?\n/g, '\r\n'),
      '',
    ].join('\r\n');
    const done = await expect(`${message.replace(/(^|\r\n)\./g, '$1..')}.`, /^250 2\.6\.0 /);
    await c.cmd('QUIT').catch(() => undefined);
    const m = /^250 2\.6\.0 <([0-9A-Za-z]+)@/.exec(done);
    if (!m) throw new Error(`no queue id in ${done}`);
    return { id: m[1]!, messageId, subject: o.subject };
  } finally {
    c.close();
  }
}

/** Files in a local mailbox's new/ (name order) with their content. */
export function mailbox(dataDir: string, address: string): { name: string; content: string }[] {
  const dir = path.join(dataDir, 'mailboxes', 'Mailbox_Store', mailboxFolder(address), 'new');
  try {
    return readdirSync(dir)
      .sort()
      .map((name) => ({ name, content: readFileSync(path.join(dir, name), 'utf8') }));
  } catch {
    return [];
  }
}

export interface Dsn {
  subject: string;
  from: string;
  to: string;
  inReplyTo: string;
  contentType: string;
  reportType: string;
  /** The human-readable first part. */
  human: string;
  /** Per-message fields of the message/delivery-status part. */
  perMessage: Record<string, string>;
  /** Per-recipient field groups of the message/delivery-status part. */
  recipients: Record<string, string>[];
  /** Subject and Message-ID of the returned original (message/rfc822 or headers). */
  original: { subject?: string; messageId?: string } | null;
}

const PARSE_DSN = `
import email, json, sys
from email import policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
out = {'subject': msg.get('Subject', ''), 'from': msg.get('From', ''), 'to': msg.get('To', ''),
       'inReplyTo': msg.get('In-Reply-To', ''), 'contentType': msg.get_content_type(),
       'reportType': msg.get_param('report-type') or '', 'human': '', 'perMessage': {},
       'recipients': [], 'original': None}
if msg.is_multipart():
    for part in msg.get_payload():
        ct = part.get_content_type()
        if ct == 'text/plain' and not out['human']:
            out['human'] = part.get_payload(decode=True).decode('utf-8', 'replace')
        elif ct == 'message/delivery-status':
            blocks = part.get_payload()
            out['perMessage'] = dict(blocks[0].items())
            out['recipients'] = [dict(b.items()) for b in blocks[1:]]
        elif ct == 'message/rfc822':
            inner = part.get_payload()[0]
            out['original'] = {'subject': inner.get('Subject'), 'messageId': inner.get('Message-ID')}
        elif ct == 'text/rfc822-headers':
            inner = email.message_from_string(part.get_payload(decode=True).decode('utf-8', 'replace'))
            out['original'] = {'subject': inner.get('Subject'), 'messageId': inner.get('Message-ID')}
print(json.dumps(out))
`;

const parsed = new Map<string, Dsn>();

export function parseDsn(content: string): Dsn {
  const known = parsed.get(content);
  if (known) return known;
  const out = execFileSync('python3', ['-c', PARSE_DSN], { input: content, timeout: 10_000 });
  const dsn = JSON.parse(out.toString('utf8')) as Dsn;
  parsed.set(content, dsn);
  return dsn;
}

/** DSNs about `original` (by In-Reply-To) in the sender's local mailbox, oldest first. */
export function dsnsAbout(dataDir: string, sender: string, original: Submitted): Dsn[] {
  return mailbox(dataDir, sender)
    .filter((m) => m.content.includes(`In-Reply-To: ${original.messageId}`))
    .map((m) => parseDsn(m.content));
}

/** Waits for the `count`-th DSN about `original` in the sender's mailbox. */
export function waitForDsns(
  dataDir: string,
  sender: string,
  original: Submitted,
  count = 1,
  timeoutMs = 15_000,
): Promise<Dsn[]> {
  return waitFor(
    `${count} DSN(s) about "${original.subject}" in ${sender}'s mailbox`,
    () => {
      const found = dsnsAbout(dataDir, sender, original);
      return found.length >= count ? found : undefined;
    },
    timeoutMs,
    100,
  );
}

export interface QueueRow {
  address: string;
  queue: string;
  state: string;
  attempts: number;
  /** When the next attempt is due (ms since the epoch). */
  next_attempt: number;
  last_error: string | null;
  status: string | null;
  next_hop: string | null;
}

/** The queue rows of message `id` (gone once every recipient is final and reported). */
export function queueRows(dataDir: string, id: string): QueueRow[] {
  const file = path.join(dataDir, 'queue', 'queue.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT address, queue, state, attempts, next_attempt, last_error, status, next_hop FROM recipients
         WHERE message_id = ? ORDER BY id`,
      )
      .all(id) as QueueRow[];
  } finally {
    db.close();
  }
}

export interface ProtocolLine {
  time: string;
  session: string;
  event: string;
  data: string;
}

function splitCsv(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let v = '';
      i++;
      while (i < line.length) {
        if (line[i] === '"' && line[i + 1] === '"') {
          v += '"';
          i += 2;
        } else if (line[i] === '"') {
          i++;
          break;
        } else v += line[i++];
      }
      out.push(v);
      i++; // the comma
    } else {
      const end = line.indexOf(',', i);
      out.push(end === -1 ? line.slice(i) : line.slice(i, end));
      i = end === -1 ? line.length + 1 : end + 1;
    }
  }
  return out;
}

/** The send-side protocol log of a virtual server: every SEND*.log line, in file order. */
export function sendLog(dataDir: string, virtualServer = 'Default SMTP Virtual Server'): ProtocolLine[] {
  const dir = path.join(dataDir, 'logs', 'protocol', 'send', virtualServer.replace(/[^A-Za-z0-9._-]+/g, '_'));
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => /^SEND\d{8}\.log$/.test(n))
      .sort();
  } catch {
    return [];
  }
  return names.flatMap((n) =>
    readFileSync(path.join(dir, n), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const f = splitCsv(l);
        return { time: f[0] ?? '', session: f[2] ?? '', event: f[6] ?? '', data: f.slice(7).join(',') };
      }),
  );
}

/** The lines of each send session that mentions `text`, as "event data" strings. */
export function sessionsMentioning(lines: ProtocolLine[], text: string): string[][] {
  const ids = [...new Set(lines.filter((l) => l.data.includes(text)).map((l) => l.session))];
  return ids.map((id) => lines.filter((l) => l.session === id).map((l) => `${l.event} ${l.data}`.trimEnd()));
}

/**
 * The transaction of a session (connection caching carries several) that mentions `text`:
 * from the MAIL FROM before it up to the next MAIL FROM, the QUIT or the end.
 */
export function transactionMentioning(session: string[], text: string): string[] {
  const hit = session.findIndex((l) => l.includes(text));
  if (hit === -1) return [];
  let start = hit;
  while (start > 0 && !session[start]!.startsWith('> MAIL FROM:')) start--;
  let end = hit + 1;
  while (end < session.length && !/^> (MAIL FROM:|QUIT)/.test(session[end]!)) end++;
  return session.slice(start, end);
}

/**
 * The first virtual server's delivery settings for loopback tests: DNS only from `dns`,
 * receivers on `outboundPort`, one-second retries, and relaying for the test client.
 */
export function loopbackDelivery(
  org: Record<string, any>,
  o: { dns: string; outboundPort: number; delivery?: Record<string, any>; outbound?: Record<string, any> },
): void {
  const vs = org.routingGroups[0].servers[0].virtualServers[0];
  vs.relay = { list: ['127.0.0.1'] };
  vs.protocolLog = { enabled: true };
  vs.delivery = {
    externalDnsServers: [o.dns],
    outboundPort: o.outboundPort,
    outboundTimeout: '15s',
    glitchRetryInterval: '1s',
    glitchRetryCount: 3,
    ...o.delivery,
    outbound: {
      first: '1s',
      second: '1s',
      third: '1s',
      subsequent: '1s',
      delayNotification: '1h',
      expiration: '10m',
      ...o.outbound,
    },
  };
}

export interface TrackingRow {
  event: string;
  source: string;
  connector_id: string | null;
  server_ip: string | null;
  recipients: string | null;
  message_info: string | null;
  recipient_status: string | null;
}

/** Message tracking events of queue id `id`, oldest first (read-only). */
export function trackingEvents(dataDir: string, id: string): TrackingRow[] {
  const file = path.join(dataDir, 'tracking', 'tracking.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        `SELECT event, source, connector_id, server_ip, recipients, message_info, recipient_status FROM events
         WHERE internal_message_id = ? ORDER BY id`,
      )
      .all(id) as TrackingRow[];
  } finally {
    db.close();
  }
}
