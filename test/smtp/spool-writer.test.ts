// The spool writer as the receive path drives it when a client vanishes: abort() can arrive at
// any point of a spill or a commit, and must never leave a partial file behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { newMessageId, Spool, type Envelope } from '../../src/queue/spool.js';
import { cleanup } from '../helpers/server.js';

let dir: string;
let spools = 0;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bh-spool-'));
});
after(() => cleanup(dir));

/** A spool directory of its own for each test. */
async function freshSpool(): Promise<Spool> {
  const spool = new Spool(path.join(dir, `spool${++spools}`));
  await spool.init();
  return spool;
}

function envelope(): Envelope {
  return {
    id: newMessageId(),
    receivedAt: new Date().toISOString(),
    server: 'MAIL1',
    virtualServer: 'Default SMTP Virtual Server',
    client: { ip: '127.0.0.1', port: 1, helo: 'client.test', tls: false },
    sender: 'kim@fourthcoffee.test',
    body: '7BIT',
    smtputf8: false,
    recipients: [{ address: 'alice@example.com' }],
  };
}

const big = Buffer.alloc(300 * 1024, 'x'); // over the 256 KB spill threshold

test('abort while a spill is still opening its file leaves no file', async () => {
  const spool = await freshSpool();
  for (let i = 0; i < 20; i++) {
    const w = spool.createWriter(envelope());
    const writing = w.write(big); // starts the spill: the open is in flight
    await w.abort();
    await writing;
    await w.abort();
    assert.deepEqual(readdirSync(spool.dir), [], `iteration ${i}`);
  }
});

test('abort after a completed spill removes the file', async () => {
  const spool = await freshSpool();
  const w = spool.createWriter(envelope());
  await w.write(big);
  assert.equal(readdirSync(spool.dir).length, 1);
  await w.abort();
  assert.deepEqual(readdirSync(spool.dir), []);
});

test('abort racing a commit: either the message is complete on disk or there is no file', async () => {
  const spool = await freshSpool();
  for (const spill of [false, true]) {
    const env = envelope();
    const w = spool.createWriter(env);
    await w.write(spill ? big : Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    const committing = w.commit().then(
      () => true,
      () => false,
    );
    await w.abort();
    const committed = await committing;
    const files = readdirSync(spool.dir);
    if (committed) {
      assert.deepEqual(files, [`${env.id}.msg`]);
      const read = await Spool.readFile(spool.fileFor(env.id));
      assert.ok(read, 'a committed message is complete');
      assert.equal(read.message.length, w.size);
    } else {
      assert.deepEqual(files, []);
    }
    for (const f of files) unlinkSync(path.join(spool.dir, f));
  }
});

test('a finished file is written over by the next message: same inode, new content, no stray file', async () => {
  const spool = await freshSpool();
  const first = envelope();
  const w1 = spool.createWriter(first);
  await w1.write(Buffer.from(`Subject: first\r\n\r\n${'a'.repeat(4000)}\r\n`));
  await w1.commit();
  const inode = statSync(spool.fileFor(first.id)).ino;
  await spool.recycle(spool.fileFor(first.id));
  assert.deepEqual(readdirSync(spool.dir), [], 'the finished message left the spool');

  const second = envelope();
  const w2 = spool.createWriter(second);
  await w2.write(Buffer.from('Subject: second\r\n\r\nshort\r\n'));
  await w2.commit();
  assert.deepEqual(readdirSync(spool.dir), [`${second.id}.msg`]);
  assert.equal(statSync(spool.fileFor(second.id)).ino, inode, 'the same inode, written over');
  const read = await Spool.readFile(spool.fileFor(second.id));
  assert.ok(read, 'complete');
  assert.equal(read.envelope.id, second.id);
  assert.equal(read.message.toString(), 'Subject: second\r\n\r\nshort\r\n', 'nothing of the longer first');
  await spool.close();
});

test('recovery: a recycled file caught under a new name before it was written over is not delivered', async () => {
  const spool = await freshSpool();
  const old = envelope();
  const w = spool.createWriter(old);
  await w.write(Buffer.from('Subject: delivered long ago\r\n\r\nx\r\n'));
  await w.commit();
  // A crash between the rename into place and the write: the old message under a new id.
  const next = newMessageId();
  renameSync(spool.fileFor(old.id), spool.fileFor(next));
  const report = await spool.recover();
  assert.deepEqual(report.messages, []);
  assert.deepEqual(report.incomplete, [`${next}.msg`]);
  assert.deepEqual(readdirSync(spool.dir), []);
  await spool.close();
});

test('recovery: a complete file whose bytes do not match its CRC goes to corrupt/', async () => {
  const spool = await freshSpool();
  const env = envelope();
  const w = spool.createWriter(env);
  await w.write(Buffer.from('Subject: flipped\r\n\r\nhello\r\n'));
  await w.commit();
  const file = spool.fileFor(env.id);
  const bytes = readFileSync(file);
  const at = bytes.indexOf('hello');
  bytes[at] = 'j'.charCodeAt(0);
  writeFileSync(file, bytes);
  const report = await spool.recover();
  assert.deepEqual(report.messages, []);
  assert.deepEqual(report.corrupt, [`${env.id}.msg`]);
  assert.deepEqual(readdirSync(spool.dir), []);
  await spool.close();
});

test('recovery after an upgrade: a file in the earlier format (BHQ1) is still a message', async () => {
  const spool = await freshSpool();
  const env = envelope();
  const message = Buffer.from('Subject: queued before the upgrade\r\n\r\nhello\r\n');
  // "BHQ1 <envelope>\n<message>\nBHQ-END <12-digit length>\n", as earlier versions wrote it.
  writeFileSync(
    spool.fileFor(env.id),
    Buffer.concat([
      Buffer.from(`BHQ1 ${JSON.stringify(env)}\n`),
      message,
      Buffer.from(`\nBHQ-END ${String(message.length).padStart(12, '0')}\n`),
    ]),
  );
  const report = await spool.recover();
  assert.deepEqual(
    report.messages.map((m) => m.envelope.id),
    [env.id],
  );
  const read = await Spool.readFile(spool.fileFor(env.id));
  assert.deepEqual(read?.message, message);
  await spool.close();
});

test('a large message archived after its header was written keeps the mark through a restart', async () => {
  const spool = await freshSpool();
  const env = envelope();
  const w = spool.createWriter(env);
  await w.write(big); // spilled: the header on disk is written now, without the mark
  // The header From verdict comes at the end of DATA: accept without notifying, to badmail.
  w.envelope.archived = 'sender filter: header From kim@fourthcoffee.test';
  await w.commit();
  assert.deepEqual(readdirSync(spool.dir).sort(), [`${env.id}.msg`, `${env.id}.msg.archived`]);
  const report = await spool.recover();
  assert.equal(report.messages.length, 1);
  assert.equal(
    report.messages[0]!.envelope.archived,
    'sender filter: header From kim@fourthcoffee.test',
    'recovery knows it is archived, so it is never delivered',
  );
  await spool.close();
});
