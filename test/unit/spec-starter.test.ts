import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostsWithRole, parseCluster, starterClusterFile } from '../../src/spec/index.js';

test('the starter file for the seed\'s answers loads without a problem and matches the seed\'s shape', () => {
  const text = starterClusterFile({
    name: 'seed',
    lbAddress: '192.168.0.156',
    servers: ['192.168.0.157', '192.168.0.158'],
    agents: ['192.168.0.161', '192.168.0.162', '192.168.0.163'],
    poolRange: '192.168.0.170-192.168.0.175',
    schemaRef: '../schema/cluster.schema.json',
  });
  assert.ok(text.startsWith('# yaml-language-server: $schema=../schema/cluster.schema.json\n'));
  const r = parseCluster(text, 'cluster.yaml', {});
  assert.deepEqual(r.diagnostics, []);
  const c = r.cluster!;
  assert.deepEqual(c.hosts.map((h) => `${h.name}:${h.roles.join('+')}`), [
    'infra:loadbalancer+datastore',
    'server1:server',
    'server2:server',
    'agent1:agent',
    'agent2:agent',
    'agent3:agent',
  ]);
  assert.equal(c.k3s.version, 'v1.37.2+k3s1');
  assert.deepEqual(c.metallb?.pools[0]?.addresses, ['192.168.0.170-192.168.0.175']);
  assert.deepEqual(c.k3s.disable, ['servicelb', 'traefik']);
});

test('the starter file explains itself in comments', () => {
  const text = starterClusterFile({ name: 'x', lbAddress: '10.0.0.5', servers: ['10.0.0.6', '10.0.0.7'], agents: [] });
  const comments = text.split('\n').filter((l) => l.trimStart().startsWith('#'));
  assert.ok(comments.length >= 15, `${comments.length} comment lines`);
  assert.match(text, /never to be changed on a running cluster/);
});

test('a starter without a pool has no MetalLB, and a separate datastore host gets its own entry', () => {
  const text = starterClusterFile({
    name: 'small',
    lbAddress: '10.0.0.5',
    datastoreAddress: '10.0.0.9',
    servers: ['10.0.0.6', '10.0.0.7'],
    agents: ['10.0.0.8'],
    sshUser: 'ops',
    keyFile: '~/.ssh/ops',
  });
  const r = parseCluster(text, 'cluster.yaml', { HOME: '/home/ops' });
  assert.deepEqual(r.diagnostics, []);
  const c = r.cluster!;
  assert.equal(c.metallb, undefined);
  assert.deepEqual(hostsWithRole(c, 'datastore').map((h) => h.address), ['10.0.0.9']);
  assert.equal(c.hosts[0]!.ssh.user, 'ops');
  assert.equal(c.hosts[0]!.ssh.keyFile, '/home/ops/.ssh/ops');
  assert.equal(c.hosts[0]!.sudo.enabled, true);
});

test('a starter with one server is valid, with the not-HA warning', () => {
  const text = starterClusterFile({ name: 'one', lbAddress: '10.0.0.5', servers: ['10.0.0.6'], agents: ['10.0.0.7'], poolRange: '10.0.0.100/30' });
  const r = parseCluster(text, 'cluster.yaml', {});
  assert.ok(r.cluster);
  assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.path]), [['warning', 'hosts']]);
});

test('host names in the starter file are quoted when YAML would misread them', () => {
  const text = starterClusterFile({ name: 'q', lbAddress: 'lb.example', servers: ['s1.example', 's2.example'], agents: [], k3sVersion: 'v1.30.8+k3s1' });
  const r = parseCluster(text, 'cluster.yaml', {});
  assert.deepEqual(r.diagnostics, []);
  assert.equal(r.cluster!.apiAddress, 'lb.example');
  assert.equal(r.cluster!.k3s.version, 'v1.30.8+k3s1');
});
