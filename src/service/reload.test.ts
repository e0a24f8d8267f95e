import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadDefaultConfig } from '../config/load.js';
import { reloadPlan } from './reload.js';

const fresh = () => structuredClone(loadDefaultConfig().org);

test('a connector or smart host change applies now; nothing waits for a restart', () => {
  const current = fresh();
  const next = fresh();
  next.routingGroups[0]!.servers[0]!.virtualServers[0]!.delivery.smartHost = '[127.0.0.9]';
  const self = current.routingGroups[0]!.servers[0]!;
  const plan = reloadPlan(current, self, next);
  assert.ok(plan.ok);
  assert.deepEqual(plan.ok && plan.later, []);
  assert.deepEqual(plan.ok && plan.notes, ['routing groups, connectors, costs and the smart host apply now']);
});

test('settings read at start are named: this server, directory, filters, organisation', () => {
  const current = fresh();
  const next = fresh();
  const nextServer = next.routingGroups[0]!.servers[0]!;
  nextServer.virtualServers[0]!.delivery.outboundPort = 2526;
  next.directory.users = [];
  next.organisation.maxRecipientsPerMessage = 7;
  const self = current.routingGroups[0]!.servers[0]!;
  const plan = reloadPlan(current, self, next);
  assert.ok(plan.ok);
  assert.deepEqual(plan.ok && plan.later, [
    `this server's settings (${self.name})`,
    'directory',
    'organisation settings (limits, secret, link state timers)',
  ]);
});

test('a server no longer in the file is refused', () => {
  const current = fresh();
  const next = fresh();
  next.routingGroups[0]!.servers[0]!.name = 'OTHER';
  const plan = reloadPlan(current, current.routingGroups[0]!.servers[0]!, next);
  assert.deepEqual(plan, {
    ok: false,
    error: `server ${current.routingGroups[0]!.servers[0]!.name} is no longer in the organisation file`,
  });
});
