// The spool writer as the receive path drives it when a client vanishes: abort() can arrive at
// any point of a spill or a commit, and must never leave a partial file behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, unlinkSync } from 'node:fs';
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
