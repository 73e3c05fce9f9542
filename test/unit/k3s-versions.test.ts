import assert from 'node:assert/strict';
import { test } from 'node:test';
import { agentBatchSize, compareVersions, parseK3sVersion, upgradeProblems } from '../../src/phases/k3s-versions.js';

test('k3s versions parse from the release name and from `k3s --version`, and compare by minor, patch and build', () => {
  assert.deepEqual(parseK3sVersion('k3s version v1.31.4+k3s1 (labk3s)'), { major: 1, minor: 31, patch: 4, build: 1, text: 'v1.31.4+k3s1' });
  assert.equal(parseK3sVersion('not a version'), null);
  const v = (s: string) => parseK3sVersion(s)!;
  assert.ok(compareVersions(v('v1.31.4+k3s2'), v('v1.31.4+k3s1')) > 0);
  assert.ok(compareVersions(v('v1.31.10+k3s1'), v('v1.31.9+k3s1')) > 0);
  assert.ok(compareVersions(v('v1.30.9+k3s1'), v('v1.31.0+k3s1')) < 0);
});

test('a patch or one minor up is allowed; a new node (nothing installed) and an unpinned version are not checked', () => {
  const nodes = [
    { name: 's1', role: 'server' as const, version: parseK3sVersion('v1.31.4+k3s1'), path: 'hosts[0]' },
    { name: 'a1', role: 'agent' as const, version: null, path: 'hosts[1]' },
  ];
  assert.deepEqual(upgradeProblems('v1.31.9+k3s1', nodes), []);
  assert.deepEqual(upgradeProblems('v1.32.0+k3s1', nodes), []);
  assert.deepEqual(upgradeProblems(undefined, nodes), []);
  assert.equal(upgradeProblems('v1.34.0+k3s1', nodes)[0]!.message, 's1 runs k3s v1.31.4+k3s1, and the cluster file says v1.34.0+k3s1: that skips 2 minor versions, and Kubernetes upgrades one minor version at a time');
});

test('upgrade.agentBatch: a count, or a percentage of the agents rounded down, at least one', () => {
  assert.equal(agentBatchSize(1, 10), 1);
  assert.equal(agentBatchSize(3, 10), 3);
  assert.equal(agentBatchSize('25%', 10), 2);
  assert.equal(agentBatchSize('10%', 3), 1);
  assert.equal(agentBatchSize('100%', 7), 7);
});
