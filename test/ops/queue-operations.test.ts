// Operations, through the CLI only: a remote peer is down, mail waits in Retry, and the
// operator works the queue viewer as the guide's troubleshooting steps describe
// [003:6695-6800, 6942-7031]: list queues, find, freeze, show, export, delete with and
// without NDR, force connection once the peer is back, tracking, diagnostic logging
// levels, the view-only token, and the Prometheus counters.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, freePort, cleanup, type RunningServer } from '../helpers/server.js';
import {
  afterFirstHeader,
  bh,
  bhJson,
  bhToFile,
  compose,
  maildirFiles,
  send,
  startSmtpSink,
  waitFor,
  SMTP_SINK,
} from './ops.js';

const ADMIN_TOKEN = 'ops-admin-token';
const READ_TOKEN = 'ops-view-only-token';
const ALICE = 'alice@example.com';
const VS = 'Default SMTP Virtual Server';

let server: RunningServer;
let peerPort: number;
/** The remote queue: named after the smart host it connects to. */
let Q: string;
let api: string[];
let work: string;
const stamp = `${process.pid}.${Date.now()}`;

/** Admin CLI arguments for this server with the administrator's token. */
const A = (...args: string[]) => [...args, ...api];

interface QueueRow {
  name: string;
  state: string;
  messageCount: number;
  totalSize: number;
  nextRetry?: string;
  lastError?: string;
}
interface MessageRow {
  id: string;
  sender: string;
  state: string;
  frozen: boolean;
  queues: string[];
  messageId?: string;
  recipients: { address: string; queue: string; state: string; lastError?: string }[];
}

const queues = () => bhJson<QueueRow[]>(A('queue', 'list'));
const remoteQueue = async () => (await queues()).find((q) => q.name === Q);

/** Waits until the remote queue is in Retry holding `count` messages. */
const waitRetry = (count: number) =>
  waitFor(`${Q} in Retry with ${count} message(s)`, async () => {
    const q = await remoteQueue();
    return q && q.state === 'Retry' && q.messageCount === count ? q : undefined;
  });

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'bh-ops-'));
  peerPort = await freePort(); // nothing listens here: the peer is down
  Q = `[127.0.0.1]:${peerPort}`;
  server = await startServer({
    engine: true,
    mutate: (org) => {
      const s = org.routingGroups[0].servers[0];
      s.adminApi = { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, readOnlyToken: READ_TOKEN };
      const vs = s.virtualServers[0];
      vs.relay = { list: ['127.0.0.1'] };
      vs.delivery = {
        smartHost: Q,
        glitchRetryCount: 0,
        // Long enough that nothing retries on its own while the test looks at the queue.
        outbound: { first: '10m', second: '10m', third: '10m', subsequent: '15m' },
      };
    },
  });
  assert.ok(server.api, server.output());
  api = ['--api', server.api!, '--token', ADMIN_TOKEN];
});

after(async () => {
  await server?.stop();
  if (server) cleanup(server.dir);
  if (work) cleanup(work);
});

// ------------------------------------------------------------------ message 1: down peer

const msg1 = compose({
  from: ALICE,
  to: ['bob@remote.test'],
  subject: 'ops: peer is down',
  messageId: `<ops.one.${stamp}@client.test>`,
  body: 'Hello operator.\n.a line that starts with a dot\n..and one with two\n\nlast line\n',
});
let id1: string;

test('mail for a peer that is down waits in its remote queue in Retry, with next retry and last error', async () => {
  id1 = await send(server.port, ALICE, ['bob@remote.test'], msg1);
  const q = await waitRetry(1);
  assert.match(q.lastError ?? '', /^451 4\.4\.1 Cannot connect to 127\.0\.0\.1:\d+: ECONNREFUSED$/);
  const next = Date.parse(q.nextRetry ?? '');
  assert.ok(next > Date.now() + 8 * 60_000, `next retry ${q.nextRetry} follows the 10-minute schedule`);
  assert.ok(q.totalSize > msg1.length, 'size includes the Received header');

  // The table an operator reads.
  const table = await bh(A('queue', 'list'));
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^name\s+state\s+messages\s+size\s+oldest\s+nextRetry\s+lastError$/m);
  const line = table.stdout.split('\n').find((l) => l.startsWith(Q));
  assert.ok(line, table.stdout);
  assert.match(line!, /\sRetry\s+1\s+\d+\s+\S+Z\s+\S+Z\s+451 4\.4\.1 Cannot connect/);
  for (const name of [
    'Messages awaiting directory lookup',
    'Local delivery',
    'DSN messages pending submission',
  ])
    assert.match(table.stdout, new RegExp(`^${name}\\s+Ready\\s+0\\s+0$`, 'm'));

  // One queue with its messages.
  const show = await bh(A('queue', 'show', Q));
  assert.equal(show.code, 0, show.stderr);
  assert.match(
    show.stdout,
    new RegExp(
      `^\\[127\\.0\\.0\\.1\\]:${peerPort}: Retry, 1 message\\(s\\), \\d+ bytes, next retry \\S+Z$`,
      'm',
    ),
  );
  assert.match(show.stdout, /^last error: 451 4\.4\.1 Cannot connect/m);
  assert.match(show.stdout, new RegExp(`^${id1}\\s+Retry\\s+${ALICE}\\s+1\\s`, 'm'));

  // The queue length gauge shows the same queue.
  const metrics = await (
    await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  ).text();
  assert.ok(metrics.includes(`bridgehead_queue_length{queue="${Q}"} 1`), metrics);
});

test('queue find --sender finds the message; message freeze; message show says Frozen', async () => {
  const found = await bhJson<MessageRow[]>(A('queue', 'find', '--sender', ALICE));
  assert.deepEqual(
    found.map((m) => [m.id, m.state, m.queues]),
    [[id1, 'Retry', [Q]]],
  );
  const table = await bh(A('queue', 'find', '--sender', 'ALICE@EXAMPLE.COM'));
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`^${id1}\\s+Retry\\s+${ALICE}\\s+1\\s+\\d+\\s+\\S+Z\\s+\\[127`, 'm'));
  assert.deepEqual(await bhJson(A('queue', 'find', '--sender', 'nobody@remote.test')), []);

  const freeze = await bh(A('message', 'freeze', id1));
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.equal(freeze.stdout, `${id1}: frozen\n`);

  const show = await bh(A('message', 'show', id1));
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^state:\s+Frozen$/m);
  assert.match(show.stdout, new RegExp(`^sender:\\s+${ALICE}$`, 'm'));
  assert.match(show.stdout, /^subject:\s+ops: peer is down$/m);
  assert.match(
    show.stdout,
    new RegExp(`^messageId:\\s+<ops\\.one\\.${stamp.replace('.', '\\.')}@client\\.test>$`, 'm'),
  );
  // The status of the last attempt, then its error.
  assert.match(
    show.stdout,
    /^bob@remote\.test\s+\[127\.0\.0\.1\]:\d+\s+retry\s+4\.4\.1\s+451 4\.4\.1 Cannot connect/m,
  );
  const json = await bhJson<MessageRow>(A('message', 'show', id1));
  assert.equal(json.frozen, true);
  assert.equal(json.state, 'Frozen');
  // The state filter of Find Messages.
  assert.deepEqual(
    (await bhJson<MessageRow[]>(A('queue', 'find', '--state', 'Frozen'))).map((m) => m.id),
    [id1],
  );
});

test("message export ID > file gives the bytes that were sent, under Bridgehead's Received header", async () => {
  const file = path.join(work, `${id1}.eml`);
  const r = await bhToFile(A('message', 'export', id1), file);
  assert.equal(r.code, 0, r.stderr);
  const exported = readFileSync(file);
  assert.match(
    exported.toString('latin1'),
    new RegExp(
      `^Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\) by mail1\\.test\\.example with ESMTP\\r\\n\\tid ${id1}; `,
    ),
  );
  assert.ok(
    afterFirstHeader(exported).equals(msg1),
    'the export after the Received header equals the message sent',
  );
});

test('message delete needs --ndr or --no-ndr; delete --ndr returns an NDR to the local sender', async () => {
  const bare = await bh(A('message', 'delete', id1));
  assert.equal(bare.code, 2);
  assert.equal(bare.stderr, 'bridgehead: say --ndr or --no-ndr\n');

  const del = await bh(A('message', 'delete', id1, '--ndr'));
  assert.equal(del.code, 0, del.stderr);
  assert.equal(del.stdout, `${id1}: deleted with NDR\n`);

  const ndrFile = await waitFor("the NDR in Alice's Maildir", () =>
    maildirFiles(server.dataDir, ALICE).find((f) => path.basename(f).startsWith(`${id1}N1.`)),
  );
  const ndr = readFileSync(ndrFile, 'utf8');
  assert.match(ndr, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
  assert.match(ndr, /^Final-Recipient: rfc822; ?bob@remote\.test$/im);
  assert.match(ndr, /^Action: failed$/m);
  assert.match(ndr, /^Status: 5\.0\.0$/m);
  assert.match(ndr, /deleted by an administrator/);
  assert.ok(ndr.includes(`<ops.one.${stamp}@client.test>`), 'the NDR names or carries the original');

  const gone = await bh(A('message', 'show', id1));
  assert.equal(gone.code, 2);
  assert.match(gone.stderr, new RegExp(`no message ${id1} in the queues \\(HTTP 404\\)`));
  assert.equal((await remoteQueue())?.messageCount ?? 0, 0);

  const events = await bhJson<
    { event: string; source: string; recipientStatus?: string[]; messageInfo?: string }[]
  >(A('track', '--id', id1));
  assert.deepEqual(
    events.map((e) => e.event),
    ['RECEIVE', 'SUBMIT', 'DEFER', 'FAIL'],
  );
  assert.equal(events[3]!.source, 'ADMIN');
  assert.equal(events[3]!.messageInfo, 'deleted by administrator with NDR');
  assert.deepEqual(events[3]!.recipientStatus, ['5.0.0'], 'the status its NDR reports');
});

// ------------------------------------------------------------------ a DSN in the queue

let dsnId: string;

test('delete with NDR is refused for a DSN, one by one and in bulk, with a readable reason', async () => {
  // An unknown recipient in the authoritative domain: the NDR goes back to a remote sender,
  // through the same smart host, and waits in the same remote queue.
  const orig = await send(
    server.port,
    'kim@remote.test',
    ['nobody@example.com'],
    compose({
      from: 'kim@remote.test',
      to: ['nobody@example.com'],
      subject: 'to nobody',
      messageId: `<ops.dsn.${stamp}@client.test>`,
      body: 'Is anyone there?\n',
    }),
  );
  await waitRetry(1);
  const [dsn] = await bhJson<MessageRow[]>(A('queue', 'find', '--queue', Q));
  assert.equal(dsn!.sender, '');
  assert.equal(dsn!.id, `${orig}N1`);
  dsnId = dsn!.id;
  assert.deepEqual(
    dsn!.recipients.map((r) => [r.address, r.state]),
    [['kim@remote.test', 'retry']],
  );

  const one = await bh(A('message', 'delete', dsnId, '--ndr'));
  assert.equal(one.code, 2);
  assert.equal(one.stdout, '');
  assert.match(
    one.stderr,
    /^bridgehead: \S+: a delivery status notification cannot be deleted with an NDR \(HTTP 409\)\n$/,
  );

  const bulk = await bh(A('queue', 'delete', '--queue', Q, '--ndr'));
  assert.notEqual(bulk.code, 0, 'a refused deletion is a failure the exit status reports');
  assert.match(bulk.stdout, /^deleted 0 of 1 message\(s\) with NDR$/m);
  assert.match(bulk.stdout, new RegExp(`^  not deleted ${dsnId}: .*cannot be deleted with an NDR`, 'm'));

  const still = await bhJson<MessageRow>(A('message', 'show', dsnId));
  assert.equal(still.state, 'Retry');
});

test('queue delete --queue NAME --no-ndr clears the queue in bulk and tells nobody', async () => {
  const id3 = await send(
    server.port,
    ALICE,
    ['dora@remote.test'],
    compose({
      from: ALICE,
      to: ['dora@remote.test'],
      subject: 'ops: clean-up',
      messageId: `<ops.three.${stamp}@client.test>`,
      body: 'To be cleaned up.\n',
    }),
  );
  await waitRetry(2);
  const ndrsBefore = maildirFiles(server.dataDir, ALICE).length;

  const r = await bh(A('queue', 'delete', '--queue', Q, '--no-ndr'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'deleted 2 of 2 message(s) without NDR\n');
  assert.equal((await remoteQueue())?.messageCount ?? 0, 0);
  assert.deepEqual(await bhJson(A('queue', 'find', '--queue', Q)), []);

  const events = await bhJson<{ event: string; recipientStatus?: string[]; messageInfo?: string }[]>(
    A('track', '--id', id3),
  );
  assert.deepEqual(
    events.map((e) => e.event),
    ['RECEIVE', 'SUBMIT', 'DEFER', 'FAIL'],
  );
  assert.equal(events[3]!.messageInfo, 'deleted by administrator without NDR');
  assert.equal(events[3]!.recipientStatus, undefined, "nobody was NDR'd");
  assert.deepEqual(await bhJson(A('track', '--event', 'DSN', '--sender', ALICE)), []);
  assert.equal(maildirFiles(server.dataDir, ALICE).length, ndrsBefore, 'no NDR for a deletion without NDR');
});

// ------------------------------------------------------------------ the peer comes back

test(
  'force connection: once a receiver listens, queue retry NAME delivers and tracking shows SEND',
  { skip: !SMTP_SINK && 'Postfix smtp-sink is not installed' },
  async () => {
    const msg2 = compose({
      from: ALICE,
      to: ['carl@remote.test'],
      subject: 'ops: force connection',
      messageId: `<ops.two.${stamp}@client.test>`,
      body: 'Deliver me when the peer is back.\n',
    });
    const id2 = await send(server.port, ALICE, ['carl@remote.test'], msg2);
    await waitRetry(1);

    // smtp-sink writes as the user it drops to: a directory that user can reach and write.
    const sinkDir = mkdtempSync(path.join(os.tmpdir(), 'bh-ops-sink-'));
    chmodSync(sinkDir, 0o777);
    const dump = path.join(sinkDir, 'dump');
    const sink = await startSmtpSink(peerPort, dump);
    try {
      const retry = await bh(A('queue', 'retry', Q));
      assert.equal(retry.code, 0, retry.stderr);
      assert.equal(retry.stdout, `${Q}: 1 recipient(s) retried now\n`);

      const sent = await waitFor('a SEND event for the message', async () => {
        const rows = await bhJson<
          { internalMessageId: string; recipients: string[]; connectorId?: string; messageId?: string }[]
        >(A('track', '--event', 'SEND'));
        return rows.find((e) => e.internalMessageId === id2);
      });
      assert.deepEqual(sent.recipients, ['carl@remote.test']);
      assert.equal(sent.connectorId, Q);
      assert.equal(sent.messageId, `<ops.two.${stamp}@client.test>`);

      const table = await bh(A('track', '--event', 'SEND'));
      assert.match(
        table.stdout,
        new RegExp(
          `^\\S+Z\\s+mail1\\.test\\.example\\s+SEND\\s+SMTP\\s+${id2}\\s+${ALICE}\\s+carl@remote\\.test`,
          'm',
        ),
      );

      // The receiver has it, as sent.
      const got = await waitFor('the message in the smtp-sink dump', () =>
        existsSync(dump) && readFileSync(dump, 'utf8').includes(`<ops.two.${stamp}@client.test>`)
          ? readFileSync(dump, 'utf8')
          : undefined,
      );
      assert.match(got, /^X-Mail-Args: <alice@example\.com>/m);
      assert.match(got, /^X-Rcpt-Args: <carl@remote\.test>/m);
      assert.ok(got.includes('Deliver me when the peer is back.'), got);

      await waitFor('the queue to empty', async () => ((await remoteQueue())?.messageCount ?? 0) === 0);
      const gone = await bh(A('message', 'show', id2));
      assert.equal(gone.code, 2);
    } finally {
      await sink.stop();
      cleanup(sinkDir);
    }
  },
);

// ------------------------------------------------------------------ roles, logging, counters

test('the view-only token lists but gets 403 on a change; no token gets 401', async () => {
  const view = ['--api', server.api!, '--token', READ_TOKEN];
  const list = await bh(['queue', 'list', ...view]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^Local delivery\s+Ready\s+0\s+0$/m);

  const freeze = await bh(['queue', 'freeze', 'Local delivery', ...view]);
  assert.equal(freeze.code, 2);
  assert.equal(freeze.stdout, '');
  assert.match(freeze.stderr, /this token is read-only \(view-only administrator\) \(HTTP 403\)/);
  const local = (await queues()).find((q) => q.name === 'Local delivery')!;
  assert.equal(local.state, 'Ready', 'the refused freeze changed nothing');

  const anonymous = await bh(['queue', 'list', '--api', server.api!]);
  assert.equal(anonymous.code, 2);
  assert.match(anonymous.stderr, /a valid bearer token is required \(HTTP 401\)/);
});

test('log level Categorizer maximum, then log show', async () => {
  const before = await bhJson<Record<string, string>>(A('log', 'show'));
  assert.equal(before.Categorizer, 'minimum');

  const set = await bh(A('log', 'level', 'Categorizer', 'maximum'));
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout, 'Categorizer: maximum\n');

  const show = await bh(A('log', 'show'));
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^category\s+level$/m);
  assert.match(show.stdout, /^Categorizer\s+maximum$/m);
  assert.match(show.stdout, /^SMTP Protocol\s+minimum$/m);

  const wrong = await bh(A('log', 'level', 'Categoriser', 'maximum'));
  assert.equal(wrong.code, 2);
  assert.match(
    wrong.stderr,
    /no logging category "Categoriser" \(Routing Engine, Categorizer, .*SMTP Protocol/,
  );
});

test('/metrics serves the queue lengths and the receive, send, NDR and DSN counters', async () => {
  const res401 = await fetch(`${server.api}/metrics`);
  assert.equal(res401.status, 401, 'metrics need a token when the API has one');
  const res = await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  const value = (series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  assert.match(text, /^# TYPE bridgehead_queue_length gauge$/m);
  assert.match(text, /^# TYPE bridgehead_smtp_receive_messages_total counter$/m);
  assert.equal(value('bridgehead_queue_length{queue="Local delivery"}'), 0);
  assert.equal(value('bridgehead_queue_length{queue="Messages awaiting directory lookup"}'), 0);
  const sentOk = Boolean(SMTP_SINK);
  // Received over SMTP: messages 1, the one to nobody, 3 and (with smtp-sink) 2.
  assert.equal(value(`bridgehead_smtp_receive_messages_total{virtual_server="${VS}"}`), sentOk ? 4 : 3);
  assert.equal(value('bridgehead_smtp_send_recipients_total'), sentOk ? 1 : 0);
  assert.equal(value('bridgehead_recipients_ndr_total{status="5.1.1"}'), 1);
  // Message 1 was deleted with NDR: its recipient was NDR'd by the administrator.
  assert.equal(value('bridgehead_recipients_ndr_total{status="5.0.0"}'), 1);
  assert.equal(value('bridgehead_dsn_generated_total'), 2);
  assert.equal(value('bridgehead_store_driver_delivered_total'), 1, 'the NDR to Alice');
  assert.ok((value('bridgehead_recipients_deferred_total') ?? 0) >= (sentOk ? 4 : 3));
});
