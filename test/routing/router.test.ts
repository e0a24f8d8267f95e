// Content restrictions and oversize schedules, through the Router a server uses, with the
// organisation file parsed as the server parses it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateOrganisation } from '../../src/config/load.js';
import { Router } from '../../src/routing/router.js';

function org(): ReturnType<typeof validateOrganisation>['org'] {
  return validateOrganisation(
    {
      routingGroups: [
        {
          name: 'RG',
          servers: [{ name: 'S1', fqdn: 's1.example.org', virtualServers: [{ name: 'VS', port: 2525 }] }],
          connectors: [
            {
              type: 'smtp',
              name: 'Net',
              addressSpaces: ['SMTP:*.net:20'],
              smartHosts: ['[192.0.2.1]'],
              contentRestrictions: { priorities: ['high', 'normal'], systemMessages: false, maxSizeKb: 100 },
            },
            {
              type: 'smtp',
              name: 'Internet',
              addressSpaces: ['SMTP:*:10'],
              smartHosts: ['[192.0.2.2]'],
              schedule: {
                mode: 'always',
                oversizeThresholdKb: 1000,
                oversizeWindows: [{ days: ['sun'], start: '00:00', end: '00:01' }],
              },
            },
          ],
        },
      ],
    },
    process.cwd(),
  ).org;
}

const facts = (kb: number, priority: 'high' | 'normal' | 'low' = 'normal', system = false) => ({
  size: kb * 1024,
  priority,
  system,
});
const remote = (domain: string) => ({ kind: 'remote' as const, domain });

test('a message within the content restrictions takes the *.net connector', () => {
  const hop = new Router(org(), 'S1').nextHop(remote('trey.net'), 'kim@example.com', facts(10));
  assert.ok('destination' in hop && hop.destination, JSON.stringify(hop));
  assert.equal(hop.queue, 'Net');
});

test('too large for *.net: 5.3.4 NDR, no fall back to *', () => {
  const hop = new Router(org(), 'S1').nextHop(remote('trey.net'), 'kim@example.com', facts(200));
  assert.deepEqual('fail' in hop && hop.fail.status, '5.3.4');
});

test('low priority and system messages excluded from *.net: 5.7.1, no fall back', () => {
  const router = new Router(org(), 'S1');
  const low = router.nextHop(remote('trey.net'), 'kim@example.com', facts(1, 'low'));
  assert.equal('fail' in low && low.fail.status, '5.7.1');
  const system = router.explain(remote('trey.net'), '', facts(1, 'normal', true));
  assert.equal('fail' in system.hop && system.hop.fail.status, '5.7.1');
  assert.ok(
    system.why.some((w) => w.includes('system message')),
    system.why.join('; '),
  );
});

test('an oversize message waits for the oversize window; a small one goes now', () => {
  const router = new Router(org(), 'S1');
  const small = router.nextHop(remote('contoso.com'), 'kim@example.com', facts(10));
  assert.equal('destination' in small && small.queue, 'Internet');
  const big = router.nextHop(remote('contoso.com'), 'kim@example.com', facts(5000));
  assert.ok(!('fail' in big) && !big.destination, JSON.stringify(big));
  assert.equal(big.queue, 'Internet');
  assert.match('reason' in big ? big.reason : '', /^Connector schedule: oversize/);
});
