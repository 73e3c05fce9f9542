import assert from 'node:assert/strict';
import { test } from 'node:test';
import { degradations, formatBytes, formatStatus, poolSize, statusToJSON, type StatusSnapshot } from '../../src/status/model.js';

/** A healthy seed-like cluster with HAProxy and a virtual IP; tests break one thing each. */
function healthy(): StatusSnapshot {
  const node = (name: string, roles: string[] = []) => ({ name, ready: true, why: '', kubeletVersion: 'v1.31.4+k3s1', roles, simulated: false });
  return {
    cluster: 'seed',
    apiServerUrl: 'https://192.168.0.150:6443',
    at: '2026-01-01T00:00:00.000Z',
    ms: 1234,
    hosts: [
      { name: 'lb1', address: '192.168.0.151', roles: ['loadbalancer', 'datastore'], reachable: true },
      { name: 'lb2', address: '192.168.0.152', roles: ['loadbalancer'], reachable: true },
      { name: 'server1', address: '192.168.0.157', roles: ['server'], reachable: true },
      { name: 'server2', address: '192.168.0.158', roles: ['server'], reachable: true },
      { name: 'agent1', address: '192.168.0.161', roles: ['agent'], reachable: true },
    ],
    loadBalancers: ['lb1', 'lb2'].map((host) => ({
      host,
      kind: 'haproxy' as const,
      unit: 'haproxy',
      active: true,
      method: 'haproxy-admin-socket' as const,
      upstreams: [
        { name: 'server1', address: '192.168.0.157', state: 'up' as const, detail: 'UP, check L7OK 3' },
        { name: 'server2', address: '192.168.0.158', state: 'up' as const, detail: 'UP, check L7OK 2' },
      ],
    })),
    vip: { address: '192.168.0.150', holders: ['lb1'], unknown: [] },
    datastores: [{ host: 'lb1', active: true, reachable: true, version: '10.11.6-MariaDB', sizeBytes: 5_400_000, kineRows: 1834 }],
    kube: { via: 'server1', nodes: [node('agent1'), node('server1', ['control-plane']), node('server2', ['control-plane'])], expected: ['server1', 'server2', 'agent1'] },
    metallb: { pools: [{ name: 'default', size: 6, used: [{ service: 'web/shop', ip: '192.168.0.170' }] }], pending: [], outside: [] },
  };
}

test('a healthy cluster has no degradation and says so on the one screen', () => {
  const s = healthy();
  assert.deepEqual(degradations(s), []);
  const out = formatStatus(s);
  assert.match(out, /^Cluster seed \(API https:\/\/192\.168\.0\.150:6443\) at 2026-01-01T00:00:00\.000Z, collected in 1\.2 s/);
  assert.match(out, /lb1: haproxy, haproxy running; upstreams as HAProxy sees them \(admin socket\)\n {4}server1 +192\.168\.0\.157 +up  UP, check L7OK 3/);
  assert.match(out, /virtual IP 192\.168\.0\.150: held by lb1/);
  assert.match(out, /lb1: answering, MariaDB 10\.11\.6-MariaDB, 5\.1 MiB, 1834 kine rows/);
  assert.match(out, /server2 +Ready +v1\.31\.4\+k3s1 +control-plane/);
  assert.match(out, /pool default: 1\/6 used: web\/shop=192\.168\.0\.170/);
  assert.match(out, /Healthy: /);
  assert.equal(statusToJSON(s).healthy, true);
});

test('a stopped server is named as unreachable, as a DOWN upstream on each LB, and as a NotReady node', () => {
  const s = healthy();
  s.hosts[3] = { ...s.hosts[3]!, reachable: false, error: 'connect ECONNREFUSED 192.168.0.158:22' };
  for (const lb of s.loadBalancers) lb.upstreams[1] = { ...lb.upstreams[1]!, state: 'down', detail: 'DOWN, check L4CON' };
  s.kube.nodes[2] = { ...s.kube.nodes[2]!, ready: false, why: 'NodeStatusUnknown: Kubelet stopped posting node status.' };
  assert.deepEqual(degradations(s), [
    'host server2 (192.168.0.158) unreachable: connect ECONNREFUSED 192.168.0.158:22',
    'load balancer on lb1: upstream server2 is down (DOWN, check L4CON)',
    'load balancer on lb2: upstream server2 is down (DOWN, check L4CON)',
    'node server2 is not Ready (NodeStatusUnknown: Kubelet stopped posting node status.)',
  ]);
  assert.match(formatStatus(s), /DEGRADED \(4\):\n {2}- host server2/);
});

test('the VIP on the backup after the primary stopped is failover, not degradation; the primary itself is', () => {
  const s = healthy();
  s.hosts[0] = { ...s.hosts[0]!, reachable: false, error: 'timed out' };
  s.loadBalancers[0] = { ...s.loadBalancers[0]!, active: null, error: 'timed out', upstreams: s.loadBalancers[0]!.upstreams.map((u) => ({ ...u, state: 'unknown' as const, detail: '' })) };
  s.vip = { address: '192.168.0.150', holders: ['lb2'], unknown: ['lb1'] };
  const d = degradations(s);
  assert.deepEqual(d, ['host lb1 (192.168.0.151) unreachable: timed out']);
  assert.match(formatStatus(s), /virtual IP 192\.168\.0\.150: held by lb2 \(not asked: lb1\)/);
});

test('the VIP on no host, or on two at once, is named', () => {
  const s = healthy();
  s.vip = { address: '192.168.0.150', holders: [], unknown: [] };
  assert.deepEqual(degradations(s), ['virtual IP 192.168.0.150 is held by no load balancer']);
  s.vip = { address: '192.168.0.150', holders: ['lb1', 'lb2'], unknown: [] };
  assert.match(degradations(s)[0]!, /held by lb1 and lb2 at once \(split brain/);
});

test('the datastore stopped, the LB daemon stopped, and an unreadable admin socket are each named', () => {
  const s = healthy();
  s.datastores[0] = { host: 'lb1', active: false, reachable: false, version: null, sizeBytes: null, kineRows: null };
  s.loadBalancers[1] = { ...s.loadBalancers[1]!, active: false };
  s.loadBalancers[0] = { ...s.loadBalancers[0]!, error: 'reading /run/haproxy/admin.sock: no client for the HAProxy admin socket: install socat on this host' };
  assert.deepEqual(degradations(s), [
    'load balancer on lb1: reading /run/haproxy/admin.sock: no client for the HAProxy admin socket: install socat on this host',
    'load balancer on lb2: haproxy is not running',
    'datastore on lb1: mariadb is not running',
  ]);
});

test('the API answering nowhere, a node not joined, a full pool and an address outside the pools are degradations', () => {
  const s = healthy();
  s.kube.expected.push('agent2');
  s.metallb!.pools[0] = { name: 'default', size: 1, used: [{ service: 'web/shop', ip: '192.168.0.170' }] };
  s.metallb!.outside.push({ service: 'kube-system/traefik', ip: '192.168.0.157' });
  assert.deepEqual(degradations(s), [
    'node agent2 has not joined',
    'MetalLB pool default is full (1/1): new LoadBalancer Services get no address',
    'MetalLB: kube-system/traefik has 192.168.0.157, outside every pool (is servicelb or another controller running?)',
  ]);
  s.kube = { via: null, nodes: [], expected: ['server1'], error: 'server1: refused; server2: refused' };
  assert.equal(degradations(s)[0], 'Kubernetes API answers on no server (server1: refused; server2: refused)');
});

test('nginx upstreams say they were probed from the LB host, because nginx has no upstream state API', () => {
  const s = healthy();
  s.loadBalancers = [{ host: 'lb1', kind: 'nginx', unit: 'nginx', active: true, method: 'probe-from-lb', upstreams: [{ name: 'server1', address: '192.168.0.157', state: 'up', detail: '/ping: pong' }] }];
  assert.match(formatStatus(s), /lb1: nginx, nginx running; upstreams probed from the LB host \(nginx open source has no upstream state API\)/);
});

test('pool sizes and byte counts are computed for the screen', () => {
  assert.equal(poolSize(['192.168.0.170-192.168.0.175', '10.0.0.0/30']), 10);
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(5_400_000), '5.1 MiB');
});

/** The healthy cluster with Galera: lb1 and lb2 are data nodes, agent1 the arbitrator, lb1 the writer. */
function galera(): StatusSnapshot {
  const s = healthy();
  const node = (host: string) => ({ host, active: true, reachable: true, version: '10.11.6-MariaDB', sizeBytes: 5_400_000, kineRows: 1834, galera: { size: 3, state: 'Synced', clusterStatus: 'Primary', ready: true } });
  return { ...s, datastores: [node('lb1'), node('lb2')], galera: { expectedSize: 3, writers: [{ lb: 'lb1', writer: 'lb1' }, { lb: 'lb2', writer: 'lb1' }] } };
}

test('a healthy Galera datastore shows each node\'s state, the size and the writer, and is not degraded', () => {
  const s = galera();
  assert.deepEqual(degradations(s), []);
  const out = formatStatus(s);
  assert.match(out, /lb1: answering, .*Galera Synced Primary \(size 3\), the writer/);
  assert.match(out, /lb2: answering, .*Galera Synced Primary \(size 3\)\n/);
  assert.match(out, /Galera: 3 members expected; writer by load balancer: lb1 -> lb1, lb2 -> lb1/);
});

test('a lost Galera node degrades the cluster: the size is short and the node is named', () => {
  const s = galera();
  s.datastores = [{ ...s.datastores[0]!, galera: { size: 2, state: 'Synced', clusterStatus: 'Primary', ready: true } }, { host: 'lb2', active: false, reachable: false, version: null, sizeBytes: null, kineRows: null }];
  const d = degradations(s);
  assert.ok(d.includes('datastore on lb2: mariadb is not running'), d.join('\n'));
  assert.ok(d.some((x) => /Galera cluster has 2 of 3 members/.test(x)), d.join('\n'));
});

test('a lost quorum, a Donor node and two writers are each named', () => {
  const s = galera();
  s.datastores = s.datastores.map((d) => ({ ...d, galera: { size: 1, state: 'Initialized', clusterStatus: 'non-Primary', ready: false } }));
  assert.ok(degradations(s).some((x) => /no primary component \(quorum lost\)/.test(x)));
  const t = galera();
  t.datastores[1] = { ...t.datastores[1]!, galera: { size: 3, state: 'Donor/Desynced', clusterStatus: 'Primary', ready: true } };
  t.galera!.writers[1] = { lb: 'lb2', writer: 'lb2' };
  const d = degradations(t);
  assert.ok(d.includes('Galera node lb2 is Donor/Desynced, not Synced: it takes no writes'), d.join('\n'));
  assert.ok(d.some((x) => /different nodes \(lb1: lb1, lb2: lb2\): two writers/.test(x)), d.join('\n'));
});
