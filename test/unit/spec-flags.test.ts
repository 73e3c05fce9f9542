import { test } from 'node:test';
import assert from 'node:assert/strict';
import { K3S_AGENT_FLAGS, K3S_SERVER_FLAGS, MANAGED_AGENT_FLAGS, MANAGED_SERVER_FLAGS, suggestFlag } from '../../src/spec/index.js';

test('misspelled k3s flags are matched to the closest real flag', () => {
  const cases: [string, string][] = [
    ['tls-sans', 'tls-san'],
    ['kube-apiserver-args', 'kube-apiserver-arg'],
    ['kubelet-args', 'kubelet-arg'],
    ['disable-network-polcy', 'disable-network-policy'],
    ['flanel-backend', 'flannel-backend'],
    ['write-kubeconfig-mod', 'write-kubeconfig-mode'],
    ['node-lable', 'node-label'],
    ['--secrets-encryptoin', 'secrets-encryption'],
  ];
  for (const [typo, want] of cases) assert.equal(suggestFlag(typo, K3S_SERVER_FLAGS), want, typo);
});

test('a name far from every flag gets no suggestion', () => {
  assert.equal(suggestFlag('enable-magic', K3S_SERVER_FLAGS), undefined);
  assert.equal(suggestFlag('x', K3S_SERVER_FLAGS.filter((f) => f.length > 3)), undefined);
});

test('the server flag list covers k3s v1.31\'s server command, agent flags included', () => {
  assert.ok(K3S_SERVER_FLAGS.length >= 115, `${K3S_SERVER_FLAGS.length} server flags`);
  for (const f of ['datastore-endpoint', 'tls-san', 'kube-apiserver-arg', 'etcd-s3-bucket', 'egress-selector-mode', 'embedded-registry', 'kubelet-arg', 'node-ip', 'secrets-encryption-provider', 'supervisor-metrics']) {
    assert.ok(K3S_SERVER_FLAGS.includes(f), f);
  }
  assert.equal(new Set(K3S_SERVER_FLAGS).size, K3S_SERVER_FLAGS.length, 'no duplicates');
});

test('the agent flag list has the agent flags and none of the server-only ones', () => {
  for (const f of ['server', 'token', 'kubelet-arg', 'node-label', 'disable-apiserver-lb', 'lb-server-port']) assert.ok(K3S_AGENT_FLAGS.includes(f), f);
  for (const f of ['tls-san', 'datastore-endpoint', 'cluster-cidr', 'kube-apiserver-arg']) assert.ok(!K3S_AGENT_FLAGS.includes(f), f);
  assert.equal(new Set(K3S_AGENT_FLAGS).size, K3S_AGENT_FLAGS.length, 'no duplicates');
});

test('every flag k8s-ha manages is a real flag and says why it is managed', () => {
  for (const [table, list] of [[MANAGED_SERVER_FLAGS, K3S_SERVER_FLAGS], [MANAGED_AGENT_FLAGS, K3S_AGENT_FLAGS]] as const) {
    for (const [flag, m] of Object.entries(table)) {
      assert.ok(list.includes(flag), `${flag} is a k3s flag`);
      assert.ok(m.reason.length > 10, `${flag} has a reason`);
    }
  }
  assert.equal(MANAGED_SERVER_FLAGS['tls-san']?.field, 'k3s.tlsSan');
  assert.equal(MANAGED_SERVER_FLAGS['disable']?.field, 'k3s.disable');
  assert.equal(MANAGED_SERVER_FLAGS['node-taint']?.field, 'k3s.serverTaints');
});
