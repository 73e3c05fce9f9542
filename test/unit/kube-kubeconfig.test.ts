import assert from 'node:assert/strict';
import { test } from 'node:test';
import { credentials, mergeKubeconfig, parseKubeconfig, renderKubeconfig, userKubeconfig } from '../../src/kube/kubeconfig.js';

// As k3s writes /etc/rancher/k3s/k3s.yaml (FACTS: server 127.0.0.1:6443, everything named "default").
const K3S_ADMIN = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`;

test('the admin kubeconfig is pointed at the LB URL and named after the cluster', () => {
  const k = userKubeconfig(parseKubeconfig(K3S_ADMIN), 'seed', 'https://192.168.0.156:6443');
  assert.deepEqual(k.clusters, [{ name: 'seed', cluster: { 'certificate-authority-data': 'Q0EtREFUQQ==', server: 'https://192.168.0.156:6443' } }]);
  assert.deepEqual(k.users, [{ name: 'seed', user: { 'client-certificate-data': 'Q0VSVA==', 'client-key-data': 'S0VZ' } }]);
  assert.deepEqual(k.contexts, [{ name: 'seed', context: { cluster: 'seed', user: 'seed' } }]);
  assert.equal(k['current-context'], 'seed');
  assert.doesNotMatch(renderKubeconfig(k), /127\.0\.0\.1|default/);
  const c = credentials(k);
  assert.equal(c.server, 'https://192.168.0.156:6443');
  assert.equal(c.ca.toString(), 'CA-DATA');
  assert.equal(c.cert.toString(), 'CERT');
  assert.equal(c.key.toString(), 'KEY');
});

const OTHER = `apiVersion: v1
kind: Config
clusters:
- {name: work, cluster: {server: 'https://work.example:6443', certificate-authority-data: V09SSw==}}
- {name: seed, cluster: {server: 'https://10.0.0.1:6443', certificate-authority-data: T0xE}}
users:
- {name: work, user: {token: abc}}
- {name: seed, user: {client-certificate-data: T0xE, client-key-data: T0xE}}
contexts:
- {name: work, context: {cluster: work, user: work, namespace: team}}
- {name: seed, context: {cluster: seed, user: seed}}
current-context: work
preferences: {colors: true}
extensions: [{name: x, extension: {a: 1}}]
`;

test('merging replaces only the entries of the cluster, in place, and leaves other contexts and fields as they were', () => {
  const existing = parseKubeconfig(OTHER);
  const incoming = userKubeconfig(parseKubeconfig(K3S_ADMIN), 'seed', 'https://192.168.0.156:6443');
  const m = mergeKubeconfig(existing, incoming);
  assert.deepEqual(m.clusters.map((c) => c.name), ['work', 'seed']);
  assert.deepEqual(m.clusters[0], existing.clusters[0]);
  assert.equal(m.clusters[1]!.cluster.server, 'https://192.168.0.156:6443');
  assert.deepEqual(m.users[0], { name: 'work', user: { token: 'abc' } });
  assert.equal(m.users[1]!.user['client-key-data'], 'S0VZ');
  assert.deepEqual(m.contexts[0], { name: 'work', context: { cluster: 'work', user: 'work', namespace: 'team' } });
  assert.equal(m['current-context'], 'seed');
  assert.deepEqual(m.preferences, { colors: true });
  assert.deepEqual(m.extensions, [{ name: 'x', extension: { a: 1 } }]);
  // Merging again gives the same file: nothing piles up.
  assert.equal(renderKubeconfig(mergeKubeconfig(m, incoming)), renderKubeconfig(m));
  // Keeping the current context when asked.
  assert.equal(mergeKubeconfig(existing, incoming, false)['current-context'], 'work');
});

test('merging into an empty or missing kubeconfig gives the cluster alone', () => {
  const incoming = userKubeconfig(parseKubeconfig(K3S_ADMIN), 'lab', 'https://10.1.0.10:6443');
  const m = mergeKubeconfig(parseKubeconfig(''), incoming);
  assert.deepEqual(m.contexts.map((c) => c.name), ['lab']);
  assert.equal(m['current-context'], 'lab');
});

test('a broken kubeconfig is named, not overwritten', () => {
  assert.throws(() => parseKubeconfig('clusters: {a: 1}\n', '/home/u/.kube/config'), /\/home\/u\/\.kube\/config: clusters is not a list/);
  assert.throws(() => parseKubeconfig('- a\n', 'x'), /x is not a kubeconfig/);
  assert.throws(() => userKubeconfig(parseKubeconfig('kind: Config\n'), 'a', 'https://x:6443'), /no cluster or no user: is k3s fully started/);
});
