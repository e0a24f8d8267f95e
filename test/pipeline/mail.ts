// Sending mail to a test server, reading its queue and tracking databases, and parsing
// DSNs with Python's email package (a real MIME parser that is not ours).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';
import { RawSmtp } from '../helpers/smtp.js';

export interface Outgoing {
  from: string;
  to: string[];
  /** Extra MAIL FROM parameters, e.g. "RET=HDRS ENVID=abc". */
  mailParams?: string;
  /** Extra RCPT TO parameters per recipient address, e.g. { "x@y": "NOTIFY=NEVER" }. */
  rcptParams?: Record<string, string>;
  subject?: string;
  body?: string;
}

let counter = 0;

/** An RFC 5322 message with CRLF line ends. */
export function compose(o: Outgoing): string {
  counter++;
  const body = (o.body ?? `Test body ${counter}.\r\n`).replace(/\r?\n/g, '\r\n');
  return (
    [
      `From: <${o.from || 'mailer-daemon@test.example'}>`,
      `To: ${o.to.map((t) => `<${t}>`).join(', ')}`,
      `Subject: ${o.subject ?? `pipeline test ${counter}`}`,
      `Message-ID: <pipeline.${process.pid}.${Date.now()}.${counter}@client.test>`,
      `Date: ${new Date().toUTCString()}`,
      '',
      '',
    ].join('\r\n') + body
  );
}

/** The DATA payload with dot-stuffing and the terminating dot. */
export function dataPayload(message: string): string {
  const stuffed = message.replace(/(^|\r\n)\./g, '$1..');
  return `${stuffed.endsWith('\r\n') ? stuffed : `${stuffed}\r\n`}.`;
}

/** One transaction on an open session; returns the queue id from "250 2.6.0 <id@host>". */
export async function transaction(c: RawSmtp, o: Outgoing): Promise<string> {
  const expect = async (line: string, code: RegExp) => {
    const r = await c.cmd(line);
    if (!code.test(r)) throw new Error(`${line.slice(0, 60)} -> ${r}`);
    return r;
  };
  await expect(`MAIL FROM:<${o.from}>${o.mailParams ? ` ${o.mailParams}` : ''}`, /^250 /);
  for (const t of o.to) {
    const p = o.rcptParams?.[t];
    await expect(`RCPT TO:<${t}>${p ? ` ${p}` : ''}`, /^250 /);
  }
  await expect('DATA', /^354 /);
  const done = await expect(dataPayload(compose(o)), /^250 2\.6\.0 /);
  const m = /^250 2\.6\.0 <([0-9A-Z]+)@/.exec(done);
  if (!m) throw new Error(`no queue id in ${done}`);
  return m[1]!;
}

/** Connects, sends one message and quits; returns its queue id. */
export async function sendMail(port: number, o: Outgoing): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    const ehlo = await c.cmd('EHLO client.test');
    if (!ehlo.startsWith('250')) throw new Error(`EHLO -> ${ehlo}`);
    const id = await transaction(c, o);
    await c.cmd('QUIT');
    return id;
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------ databases (read-only)

function withDb<T>(file: string, fn: (db: Database.Database) => T): T | undefined {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 2000');
    return fn(db);
  } catch (err) {
    // Not created yet, or mid-checkpoint while a server restarts: the caller polls again.
    if (/unable to open|no such table|SQLITE_BUSY|database is locked/i.test(String(err))) return undefined;
    throw err;
  } finally {
    db?.close();
  }
}

export interface QueueRow {
  message_id: string;
  address: string;
  original: string;
  queue: string;
  next_hop: string | null;
  state: string;
  outcome: string | null;
  status: string | null;
  route: string | null;
  last_error: string | null;
}

/** Recipient rows of the queue database (all, or of one message). */
export function queueRows(dataDir: string, messageId?: string): QueueRow[] | undefined {
  return withDb(path.join(dataDir, 'queue', 'queue.db'), (db) =>
    messageId
      ? (db.prepare('SELECT * FROM recipients WHERE message_id = ? ORDER BY id').all(messageId) as QueueRow[])
      : (db.prepare('SELECT * FROM recipients ORDER BY id').all() as QueueRow[]),
  );
}

/** Number of messages the queue database still holds (undefined when unreadable). */
export function queuedMessageCount(dataDir: string, messageId?: string): number | undefined {
  return withDb(path.join(dataDir, 'queue', 'queue.db'), (db) =>
    messageId
      ? (db.prepare('SELECT COUNT(*) AS n FROM messages WHERE id = ?').get(messageId) as { n: number }).n
      : (db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n,
  );
}

export interface TrackedEvent {
  event: string;
  source: string;
  internal_message_id: string;
  recipients: string;
  recipient_status: string | null;
  related_recipient: string | null;
  reference: string | null;
  message_info: string | null;
}

/** Tracking events of one internal message id (a prefix match with `prefix`). */
export function trackingEvents(dataDir: string, internalId: string, prefix = false): TrackedEvent[] {
  return (
    withDb(path.join(dataDir, 'tracking', 'tracking.db'), (db) =>
      prefix
        ? (db
            .prepare('SELECT * FROM events WHERE internal_message_id LIKE ? ORDER BY id')
            .all(`${internalId}%`) as TrackedEvent[])
        : (db
            .prepare('SELECT * FROM events WHERE internal_message_id = ? ORDER BY id')
            .all(internalId) as TrackedEvent[]),
    ) ?? []
  );
}

// ------------------------------------------------------------------ DSN parsing (Python)

export interface ParsedDsn {
  contentType: string;
  reportType: string | null;
  subject: string | null;
  to: string | null;
  parts: string[];
  text: string;
  perMessage: Record<string, string>;
  perRecipient: Record<string, string>[];
  returned: string | null;
  returnedPayload: string;
}

const PY_PARSE_DSN = `
import sys, json, email
from email import policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
out = {"contentType": msg.get_content_type(), "reportType": msg.get_param("report-type"),
       "subject": msg.get("Subject"), "to": msg.get("To"), "parts": [], "text": "",
       "perMessage": {}, "perRecipient": [], "returned": None, "returnedPayload": ""}
if msg.is_multipart():
    for i, part in enumerate(msg.get_payload()):
        ct = part.get_content_type()
        out["parts"].append(ct)
        if ct == "text/plain" and i == 0:
            out["text"] = part.get_payload(decode=True).decode("utf-8", "replace")
        elif ct == "message/delivery-status":
            blocks = part.get_payload()
            out["perMessage"] = {k: str(v) for k, v in blocks[0].items()}
            out["perRecipient"] = [{k: str(v) for k, v in b.items()} for b in blocks[1:]]
        elif i == 2:
            out["returned"] = ct
            p = part.get_payload()
            if isinstance(p, list):
                p = "".join(m.as_string() for m in p)
            out["returnedPayload"] = p
print(json.dumps(out))
`;

/** Parses a DSN (as found in a Maildir) with Python's email package. */
export function parseDsn(bytes: Buffer): ParsedDsn {
  const out = execFileSync('python3', ['-c', PY_PARSE_DSN], { input: bytes, timeout: 10_000 });
  return JSON.parse(out.toString('utf8')) as ParsedDsn;
}
