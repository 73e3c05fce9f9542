/**
 * `remove: true` (and `k8s-ha node remove NAME`, the loader's Removal): what
 * validate refuses because the removal phases would, and what it resolves to.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { parseCluster } from '../../src/spec/index.js';

const SEED = readFileSync('examples/seed.yaml', 'utf8');
const GALERA = readFileSync('examples/ha-galera.yaml', 'utf8');

function withRemove(text: string, names: string[]): string {
  const doc = parseDocument(text);
  const hosts = doc.get('hosts') as { items: { get(k: string): unknown; set(k: string, v: unknown): void }[] };
  for (const h of hosts.items) if (names.includes(String(h.get('name')))) h.set('remove', true);
  return doc.toString();
}

const errors = (text: string, removal = {}) =>
  parseCluster(text, '/x/cluster.yaml', { HOME: '/root' }, removal).diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.path}: ${d.message}`);

test('a host with remove: true leaves the cluster\'s hosts for its removing list', () => {
  const r = parseCluster(withRemove(SEED, ['agent2', 'server2']), '/x/cluster.yaml', { HOME: '/root' });
  assert.ok(r.cluster, JSON.stringify(r.diagnostics));
  assert.deepEqual(r.cluster.hosts.map((h) => h.name), ['infra', 'server1', 'agent1', 'agent3']);
  assert.deepEqual(r.cluster.removing.map((h) => h.name), ['server2', 'agent2']);
  assert.equal(r.cluster.datastore.maxConnections, 151, 'the default follows the servers that stay');
  assert.ok(r.diagnostics.some((d) => d.severity === 'warning' && /only one server once server2 is removed/.test(d.message)));
});

test('validate refuses removing the last server, a load balancer or datastore host, and the Galera arbitrator', () => {
  assert.deepEqual(errors(withRemove(SEED, ['server1', 'server2'])), ['hosts: remove: true on server1, server2 would remove the last server: the cluster\'s API and every object in the datastore would have no server left']);
  assert.match(errors(withRemove(SEED, ['infra'])).join('\n'), /hosts\[0\]\.remove: host "infra" is a loadbalancer and datastore host; remove: true takes out k3s nodes \(servers and agents\) only$/m);
  assert.match(errors(withRemove(GALERA, ['w1'])).join('\n'), /hosts\[\d\]\.remove: host "w1" runs the Galera arbitrator/);
});

test('node remove NAME marks the host for one load, and names an unknown one; a host only the state file knows is added back to be removed', () => {
  assert.deepEqual(errors(SEED, { remove: ['agent9'] }), ['hosts: no host named "agent9" in the cluster file or the state file']);
  const r = parseCluster(SEED, '/x/cluster.yaml', { HOME: '/root' }, { remove: ['agent4'], vanished: [{ name: 'agent4', address: '192.168.0.164', roles: ['agent'] }] });
  assert.ok(r.cluster, JSON.stringify(r.diagnostics));
  assert.deepEqual(r.cluster.removing.map((h) => `${h.name} ${h.address} ${h.roles.join(',')} ${h.ssh.user}`), ['agent4 192.168.0.164 agent root']);
  assert.deepEqual(errors(SEED, { remove: ['server1', 'server2'] }).length, 1);
});
