import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPlan } from '../../src/cli/output/plan.js';
import type { Plan } from '../../src/engine/engine.js';

const refusal = { severity: 'error' as const, path: 'datastore', message: 'auto_increment_increment is 2', hint: 'set it to 1' };

test('a plan with a preflight error never also says "No changes", and says apply would refuse', () => {
  const plan: Plan = { steps: [], problems: [refusal], empty: true, rollouts: [], observed: new Map() };
  const text = formatPlan(plan);
  assert.doesNotMatch(text, /No changes/);
  assert.match(text, /error datastore: auto_increment_increment is 2/);
  assert.match(text, /apply would refuse to start: 1 preflight error above/);
});

test('a plan with changes and a preflight error lists the changes, then the refusal', () => {
  const change = { action: 'create' as const, target: { host: 'infra', file: '/etc/x' }, summary: 'create /etc/x', apply: async () => {} };
  const text = formatPlan({ steps: [{ phase: 'lb', title: 'Load balancer', host: 'infra', changes: [change] }], problems: [refusal], empty: false, rollouts: [], observed: new Map() });
  assert.match(text, /Plan: 1 change on 1 host \(.*\)\.\napply would refuse to start/);
});

test('a plan with only warnings and no changes still says "No changes"', () => {
  assert.match(formatPlan({ steps: [], problems: [{ ...refusal, severity: 'warning' }], empty: true, rollouts: [], observed: new Map() }), /No changes/);
});
