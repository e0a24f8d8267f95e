// Durability: the server is killed with SIGKILL while several clients stream mail into it.
// After a restart on the same organisation file and data directory, every message that got
// a 250 is in the spool exactly once, and no partial file is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launch, cleanup, type RunningServer } from '../helpers/server.js';
import { RawSmtp } from '../helpers/smtp.js';
import { spooledMessages } from '../helpers/spool.js';
import { ehloSession, queueId, spoolFiles } from './util.js';

const TOTAL = 300;
const CONNECTIONS = 4;
const KILL_AFTER_ACKS = 120;
const TIME_LIMIT_MS = 30_000;

/** The message for sequence number n: mostly small, every 25th over the 256 KB spill size. */
function messageFor(n: number): string {
  const filler = n % 25 === 7 ? `${'s'.repeat(98)}\r\n`.repeat(3000) : `line of message ${n}\r\n`.repeat(20);
  return `Subject: crash ${n}\r\nX-Seq: ${n}\r\nMessage-ID: <crash-${n}@fourthcoffee.test>\r\n\r\n${filler}`;
}

test(
  'SIGKILL mid-stream loses no acknowledged message and leaves no partial file',
  { timeout: 90_000 },
  async (t) => {
    let srv: RunningServer = await startServer({
      mutate: (org) => {
        const vs = org.routingGroups[0].servers[0].virtualServers[0];
        vs.messages = { maxMessagesPerConnection: null, maxSessionSizeKb: null };
      },
    });
    const { dir, configFile, port, host } = srv;
    try {
      const acked = new Map<string, number>(); // queue id -> sequence number
      let next = 0;
      let killed = false;
      const deadline = Date.now() + TIME_LIMIT_MS;

      const worker = async () => {
        let c: RawSmtp | undefined;
        try {
          c = await ehloSession(port);
          while (next < TOTAL && Date.now() < deadline && !killed) {
            const n = next++;
            // The whole transaction pipelined, so the kill can land anywhere in it.
            c.write(
              `MAIL FROM:<kim@fourthcoffee.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n${messageFor(n)}.\r\n`,
            );
            const replies = [await c.reply(), await c.reply(), await c.reply(), await c.reply()];
            const id = queueId(replies[3]!);
            assert.ok(id, `message ${n}: ${replies.join(' | ')}`);
            acked.set(id, n);
          }
        } catch (err) {
          // After the kill, the connection breaks: that is the point of the test.
          if (!killed) throw err;
        } finally {
          c?.close();
        }
      };

      const killer = (async () => {
        while (acked.size < KILL_AFTER_ACKS && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 2));
        killed = true;
        await srv.kill9();
      })();
      await Promise.all([...Array.from({ length: CONNECTIONS }, worker), killer]);
      assert.ok(
        acked.size >= KILL_AFTER_ACKS,
        `only ${acked.size} messages acknowledged before the time limit`,
      );
      assert.ok(next < TOTAL, 'the server was killed while messages were still being sent');

      srv = await launch({ dir, configFile, port, host, hold: true });
      const recovery =
        /bridgehead: spool holds (\d+) message\(s\)(?:; removed (\d+) incomplete file\(s\))?/.exec(
          srv.output(),
        );
      assert.ok(recovery, srv.output());
      assert.doesNotMatch(srv.output(), /corrupt/);

      const spooled = await spooledMessages(srv.dataDir);
      t.diagnostic(
        `${acked.size} acknowledged of ${next} sent before the kill; ${recovery[0].replace('bridgehead: ', '')}`,
      );
      assert.equal(Number(recovery[1]), spooled.length, 'the recovery line counts the spooled messages');
      // Every file left is a complete message: spooledMessages skips incomplete ones.
      assert.deepEqual(
        spoolFiles(srv.dataDir),
        spooled.map((m) => m.file).sort(),
        'no partial or stray file in the spool',
      );

      const bySeq = new Map<number, number>();
      for (const m of spooled) {
        const seq = Number(/^X-Seq: (\d+)\r$/m.exec(m.message.toString())?.[1]);
        bySeq.set(seq, (bySeq.get(seq) ?? 0) + 1);
        // Whatever was kept is exactly what was sent.
        assert.ok(m.message.toString().endsWith(messageFor(seq)), `message ${seq} is intact`);
        assert.equal(m.envelope.subject, `crash ${seq}`);
      }
      const ids = new Map<string, number>();
      for (const m of spooled) ids.set(m.envelope.id, (ids.get(m.envelope.id) ?? 0) + 1);
      for (const [id, seq] of acked) {
        assert.equal(ids.get(id), 1, `acknowledged message ${seq} (${id}) is in the spool exactly once`);
        assert.equal(bySeq.get(seq), 1, `message ${seq} is stored once`);
      }
      // Messages that were on disk without their 250 reaching us: at most one per connection.
      assert.ok(
        spooled.length - acked.size <= CONNECTIONS,
        `${spooled.length} spooled, ${acked.size} acknowledged`,
      );

      // The restarted server takes mail again.
      const c = await ehloSession(port);
      c.write(
        `MAIL FROM:<kim@fourthcoffee.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n${messageFor(TOTAL)}.\r\n`,
      );
      await c.reply();
      await c.reply();
      await c.reply();
      assert.ok(queueId(await c.reply()));
      c.close();
    } finally {
      await srv.stop();
      cleanup(dir);
    }
  },
);
