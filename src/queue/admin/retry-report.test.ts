import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retryReport } from './retry-report.js';
import { SCHEDULE_NEVER_RUNS } from '../names.js';

const at = Date.parse('2026-11-26T14:00:00.000Z');

test('mail outside its schedule is reported held, with the time the schedule opens', () => {
  const r = retryReport(
    2,
    [{ reason: 'schedule', text: 'Connector schedule: outside its windows', recipients: 3, until: at }],
    false,
  );
  assert.deepEqual(r, {
    recipients: 2,
    frozen: false,
    held: [
      {
        reason: 'schedule',
        recipients: 3,
        detail: 'Connector schedule: outside its windows',
        opens: '2026-11-26T14:00:00.000Z',
      },
    ],
  });
});

test('a schedule that never runs and remote triggered delivery have no opening time', () => {
  const r = retryReport(
    0,
    [
      { reason: 'schedule', text: SCHEDULE_NEVER_RUNS, recipients: 1, until: at },
      { reason: 'remote-triggered', text: 'Remote triggered delivery: held', recipients: 4, until: at },
    ],
    true,
  );
  assert.equal(r.frozen, true);
  assert.deepEqual(
    r.held.map((h) => [h.reason, h.recipients, h.opens]),
    [
      ['schedule', 1, undefined],
      ['remote-triggered', 4, undefined],
    ],
  );
});

test('holds routing looks at again by itself (no route, link down) are not connector holds', () => {
  assert.deepEqual(
    retryReport(1, [{ reason: 'no-route', text: 'no route', recipients: 1, until: at }], false).held,
    [],
  );
});
