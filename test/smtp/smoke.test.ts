import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { spooledMessages } from '../helpers/spool.js';

let srv: RunningServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
  cleanup(srv.dir);
});

test('a message to a local recipient is queued with the spec reply texts', async () => {
  const c = await RawSmtp.connect(srv.port);
  assert.match(await c.reply(), /^220 mail1\.test\.example /);
  assert.match(await c.cmd('EHLO client.test'), /^250-mail1\.test\.example Hello \[127\.0\.0\.1\]/);
  assert.equal(
    await c.cmd('MAIL FROM:<kim@fourthcoffee.test>'),
    '250 2.1.0 kim@fourthcoffee.test....Sender OK',
  );
  assert.equal(await c.cmd('RCPT TO:<alice@example.com>'), '250 2.1.5 alice@example.com');
  assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
  const done = await c.cmd('Subject: hi\r\n\r\nbody\r\n.');
  const m = /^250 2\.6\.0 <([0-9A-Z]+)@mail1\.test\.example> Queued mail for delivery$/.exec(done);
  assert.ok(m, done);
  assert.match(await c.cmd('QUIT'), /^221 2\.0\.0 /);
  const spooled = await spooledMessages(srv.dataDir);
  const msg = spooled.find((s) => s.envelope.id === m[1]);
  assert.ok(msg);
  assert.deepEqual(msg.envelope.recipients, [{ address: 'alice@example.com' }]);
  assert.match(
    msg.message.toString(),
    /^Received: from client\.test \(\[127\.0\.0\.1\]\) by mail1\.test\.example/,
  );
  assert.match(msg.message.toString(), /\r\n\r\nbody\r\n$/);
});
