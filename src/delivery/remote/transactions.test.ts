// A next hop's recipient limit (452 to the RCPTs beyond it) is a following transaction,
// never a failure; a 452 to everyone is an ordinary deferral.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeResults, overLimit } from './transactions.js';

const rcpt = (n: number) => ({ address: `u${n}@example.net` });
const reply = (code: number, text = '') => ({ code, text, lines: [text] });

test('the recipients refused with 452 after some were delivered go in a following transaction', () => {
  const all = [1, 2, 3, 4, 5].map(rcpt);
  const first = all.map((r, i) => ({
    recipient: r,
    reply: i < 3 ? reply(250, '2.0.0 Ok: queued') : reply(452, '4.5.3 Error: too many recipients'),
  }));
  assert.deepEqual(overLimit(first), [all[3], all[4]]);
  // Nobody delivered (452 to all, or the data refused): nothing more now.
  assert.deepEqual(overLimit(all.map((r) => ({ recipient: r, reply: reply(452) }))), []);
  // Other temporary and permanent refusals stay what they are.
  assert.deepEqual(
    overLimit([
      { recipient: all[0]!, reply: reply(250) },
      { recipient: all[1]!, reply: reply(450) },
      { recipient: all[2]!, reply: reply(550) },
    ]),
    [],
  );
});

test("merged results keep the job's order, each recipient with its last reply", () => {
  const all = [1, 2, 3].map(rcpt);
  const first = [
    { recipient: all[0]!, reply: reply(250) },
    { recipient: all[1]!, reply: reply(452) },
    { recipient: all[2]!, reply: reply(452) },
  ];
  const second = [
    { recipient: all[1]!, reply: reply(250) },
    { recipient: all[2]!, reply: reply(250) },
  ];
  assert.deepEqual(
    mergeResults(all, [first, second]).map((r) => [r.recipient.address, r.reply.code]),
    [
      ['u1@example.net', 250],
      ['u2@example.net', 250],
      ['u3@example.net', 250],
    ],
  );
});
