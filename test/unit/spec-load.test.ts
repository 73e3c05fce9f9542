import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  clusterSecrets,
  datastoreEndpointHost,
  hostByName,
  hostsWithRole,
  loadClusterFile,
  parseCluster,
  type Cluster,
} from '../../src/spec/index.js';
import { Secret } from '../../src/util/secret.js';

const SEED = 'examples/seed.yaml';
const VALID = 'test/fixtures/spec/valid';

function load(path: string, env: Record<string, string> = {}): Cluster {
  const r = loadClusterFile(path, { HOME: '/home/op', ...env });
  const errors = r.diagnostics.filter((d) => d.severity === 'error');
  assert.deepEqual(errors, [], `unexpected errors in ${path}`);
  assert.ok(r.cluster);
  return r.cluster;
}

test('the seed example is valid, with no warnings', () => {
  const r = loadClusterFile(SEED, { HOME: '/home/op' });
  assert.deepEqual(r.diagnostics, []);
  assert.ok(r.cluster);
});

test('the seed normalizes to one infrastructure host, two servers, three agents and the MetalLB pool', () => {
  const c = load(SEED);
  assert.equal(c.name, 'seed');
  assert.deepEqual(
    c.hosts.map((h) => [h.name, h.address, h.roles.join('+')]),
    [
      ['infra', '192.168.0.156', 'loadbalancer+datastore'],
      ['server1', '192.168.0.157', 'server'],
      ['server2', '192.168.0.158', 'server'],
      ['agent1', '192.168.0.161', 'agent'],
      ['agent2', '192.168.0.162', 'agent'],
      ['agent3', '192.168.0.163', 'agent'],
    ],
  );
  assert.deepEqual(hostsWithRole(c, 'server').map((h) => h.name), ['server1', 'server2']);
  assert.deepEqual(hostsWithRole(c, 'agent').map((h) => h.name), ['agent1', 'agent2', 'agent3']);
  assert.equal(datastoreEndpointHost(c)?.name, 'infra');
  assert.equal(c.apiAddress, '192.168.0.156');
  assert.equal(c.apiServerUrl, 'https://192.168.0.156:6443');
  assert.deepEqual(c.loadBalancer, {
    kind: 'nginx',
    port: 6443,
    deploy: 'package',
    timeouts: { connectMs: 1000, idleMs: 3_600_000 },
    nginx: { maxFails: 1, failTimeoutMs: 10_000, activeCheck: true },
    healthCheck: { path: '/ping', intervalMs: 500, fall: 2, rise: 2 },
  });
  assert.deepEqual(c.datastore, {
    kind: 'mariadb',
    port: 3306,
    database: 'k3s',
    user: 'k3s',
    password: { source: 'generate' },
    tls: { enabled: false },
    maxConnections: 250,
  });
  assert.equal(c.k3s.version, 'v1.37.2+k3s1');
  assert.equal(c.k3s.channel, undefined);
  assert.deepEqual(c.k3s.token, { source: 'generate' });
  assert.deepEqual(c.k3s.disable, ['servicelb', 'traefik']);
  assert.deepEqual(c.k3s.tlsSan, ['192.168.0.156']);
  assert.equal(c.k3s.clusterCidr, '10.42.0.0/16');
  assert.equal(c.k3s.serviceCidr, '10.43.0.0/16');
  assert.equal(c.k3s.clusterDns, '10.43.0.10');
  assert.deepEqual(c.metallb, {
    version: 'v0.14.9',
    pools: [{ name: 'default', addresses: ['192.168.0.170-192.168.0.175'], autoAssign: true }],
    l2Advertisement: true,
  });
});

test('every host of the seed gets the top-level SSH settings, with ~ expanded', () => {
  const c = load(SEED);
  for (const h of c.hosts) {
    assert.deepEqual(h.ssh, { user: 'root', port: 22, keyFile: '/home/op/.ssh/id_ed25519', agent: false, connectTimeoutMs: 10_000 });
    assert.deepEqual(h.sudo, { enabled: false });
  }
});

test('two HAProxy load balancers with a virtual IP resolve the API address to the virtual IP', () => {
  const c = load(join(VALID, 'vip-haproxy.yaml'), { VRRP_PASS: 'vrrp-pw', DB_PASSWORD: 'db-pw', DB_SUDO_PASSWORD: 'sudo-pw' });
  assert.equal(c.apiAddress, '10.0.0.10');
  assert.equal(c.loadBalancer.kind, 'haproxy');
  assert.deepEqual(c.loadBalancer.healthCheck, { path: '/ping', intervalMs: 300, fall: 3, rise: 2 });
  const vip = c.loadBalancer.virtualIP;
  assert.ok(vip);
  assert.equal(vip.routerId, 42);
  assert.equal(vip.priority, 150);
  assert.equal(vip.advertIntervalMs, 1000);
  assert.equal(vip.unicast, true);
  assert.ok(vip.authPass instanceof Secret);
  assert.equal(vip.authPass.reveal(), 'vrrp-pw');
  assert.deepEqual(c.k3s.tlsSan, ['10.0.0.10', 'k8s.lab.example']);
  assert.deepEqual(hostsWithRole(c, 'loadbalancer').map((h) => h.name), ['lb1', 'lb2']);
  assert.deepEqual(c.k3s.serverTaints, ['CriticalAddonsOnly=true:NoExecute']);
  assert.deepEqual(c.k3s.serverArgs['kube-apiserver-arg'], ['audit-log-maxage=30']);
  assert.equal(c.metallb?.pools.length, 2);
});

test('a host overrides only the SSH settings it names, and a non-root user means sudo', () => {
  const c = load(join(VALID, 'vip-haproxy.yaml'), { VRRP_PASS: 'x', DB_PASSWORD: 'y', DB_SUDO_PASSWORD: 'sudo-pw' });
  const lb2 = hostByName(c, 'lb2')!;
  assert.deepEqual(lb2.ssh, { user: 'admin', port: 2222, keyFile: '/home/op/.ssh/lab', agent: false, connectTimeoutMs: 10_000 });
  assert.equal(lb2.sudo.enabled, true);
  const db = hostByName(c, 'db')!;
  assert.equal(db.sudo.passwordEnv, 'DB_SUDO_PASSWORD');
  assert.equal(db.sudo.password?.reveal(), 'sudo-pw');
  assert.equal(hostByName(c, 'w2')!.nodeIP, '10.0.0.42');
  assert.deepEqual(hostByName(c, 'w1')!.labels, { 'node-role.kubernetes.io/worker': 'true' });
});

test('a load balancer run as a container, with a channel instead of a version, is valid with a warning', () => {
  const r = loadClusterFile(join(VALID, 'docker-lb.yaml'), {});
  assert.ok(r.cluster);
  assert.equal(r.cluster.loadBalancer.deploy, 'docker');
  assert.deepEqual(r.cluster.loadBalancer.timeouts, { connectMs: 2000, idleMs: 1_800_000 });
  assert.equal(r.cluster.k3s.channel, 'v1.31');
  assert.equal(r.cluster.metallb, undefined);
  assert.equal(r.cluster.hosts[0]!.ssh.agent, true, 'no key file: the SSH agent is used');
  assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.path]), [['warning', 'k3s.version']]);
});

test('a TLS datastore with secrets in files resolves the files against the cluster file directory', () => {
  const c = load(join(VALID, 'tls-datastore.yaml'));
  const abs = (p: string) => join(process.cwd(), 'test/fixtures/spec/files', p);
  assert.equal(c.datastore.tls.enabled, true);
  assert.equal(c.datastore.port, 3307);
  assert.equal(c.datastore.maxConnections, 400);
  assert.deepEqual(c.datastore.password, { source: 'file', path: abs('db-password') });
  assert.deepEqual(c.k3s.token, { source: 'file', path: abs('k3s-token') });
  assert.deepEqual(c.k3s.agentToken, { source: 'generate' });
  assert.deepEqual(c.k3s.install, { source: 'local', path: abs('k3s') });
  assert.equal(c.metallb?.manifest?.file, abs('metallb-native.yaml'));
  assert.equal(c.metallb?.version, 'v0.14.9', 'the default MetalLB version');
});

test('a datastore password from the environment becomes a Secret that never prints', () => {
  const c = load(join(VALID, 'env-password.yaml'), { K3S_DB_PASSWORD: 'hunter2hunter2', K3S_TOKEN: 'tok-123456' });
  const pw = c.datastore.password;
  assert.equal(pw.source, 'env');
  assert.ok(pw.source === 'env' && pw.name === 'K3S_DB_PASSWORD' && pw.value.reveal() === 'hunter2hunter2');
  const printed = JSON.stringify(c) + inspect(c, { depth: 10 }) + String(c.k3s.token.source === 'env' ? c.k3s.token.value : '');
  assert.ok(!printed.includes('hunter2hunter2'));
  assert.ok(!printed.includes('tok-123456'));
  assert.deepEqual(clusterSecrets(c).map((s) => s.reveal()).sort(), ['hunter2hunter2', 'tok-123456']);
});

test('a missing environment variable for a secret is an error at the secret\'s path', () => {
  const r = loadClusterFile(join(VALID, 'env-password.yaml'), { K3S_TOKEN: 'x' });
  assert.equal(r.cluster, undefined);
  assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.path, d.message]), [
    ['error', 'datastore.password', 'environment variable K3S_DB_PASSWORD is not set'],
  ]);
});

test('a literal datastore password is accepted with a warning', () => {
  const text = readFileSync(SEED, 'utf8').replace('password: generate', 'password: s3cret-pass');
  const r = parseCluster(text, SEED, {});
  assert.ok(r.cluster);
  assert.equal(r.cluster.datastore.password.source, 'literal');
  assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.path]), [['warning', 'datastore.password']]);
});

test('the computed max_connections grows with the number of servers', () => {
  const text = readFileSync(SEED, 'utf8').replace('roles: [agent]', 'roles: [server]');
  const c = parseCluster(text, SEED, {}).cluster!;
  assert.equal(hostsWithRole(c, 'server').length, 3);
  assert.equal(c.datastore.maxConnections, 350);
});

test('a disabled MetalLB section leaves the cluster without MetalLB', () => {
  const text = readFileSync(SEED, 'utf8').replace('metallb:\n', 'metallb:\n  enabled: false\n');
  const c = parseCluster(text, SEED, {}).cluster!;
  assert.equal(c.metallb, undefined);
});

test('a missing cluster file is one error that says so', () => {
  const r = loadClusterFile('test/fixtures/spec/nope.yaml', {});
  assert.equal(r.diagnostics.length, 1);
  assert.match(r.diagnostics[0]!.message, /cannot read .*nope\.yaml: no such file/);
});

test('a secret file that does not exist is an error at its path', () => {
  const r = loadClusterFile('test/fixtures/spec/invalid/missing-secret-file.yaml', {});
  assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.path]), [['error', 'k3s.token.file']]);
  assert.match(r.diagnostics[0]!.message, /secret file .*no-such-token does not exist/);
});

test('every example in examples/ loads without an error or a warning', () => {
  const files = readdirSync('examples').filter((f) => f.endsWith('.yaml'));
  assert.ok(files.includes('seed.yaml'));
  for (const f of files) {
    const r = loadClusterFile(join('examples', f), { HOME: '/home/op' });
    assert.deepEqual(r.diagnostics, [], f);
  }
});

test('a VRRP password with a sub-second advert interval is warned about: VRRP v3 has none', () => {
  const text = readFileSync(join(VALID, 'vip-haproxy.yaml'), 'utf8').replace('    advertInterval: 1s\n', '');
  const r = parseCluster(text, join(VALID, 'vip-haproxy.yaml'), { VRRP_PASS: 'vrrp-pw', DB_PASSWORD: 'db-pw', DB_SUDO_PASSWORD: 'sudo-pw' });
  assert.ok(r.cluster);
  assert.equal(r.cluster.loadBalancer.virtualIP?.advertIntervalMs, 500);
  const w = r.diagnostics.find((d) => d.path === 'loadBalancer.virtualIP.authPass');
  assert.equal(w?.severity, 'warning');
  assert.match(w.message, /VRRP v3, which has no password/);
});

test('verify.image names the test web server; absent, verify uses its default; a reference with spaces is refused at its path', () => {
  const seed = readFileSync(SEED, 'utf8');
  assert.deepEqual(parseCluster(seed, SEED, {}).cluster!.verify, {});
  const c = parseCluster(`${seed}\nverify: {image: localhost/k8s-ha-lab/httpd:busybox-1.35.0}\n`, SEED, {}).cluster!;
  assert.deepEqual(c.verify, { image: 'localhost/k8s-ha-lab/httpd:busybox-1.35.0' });
  const bad = parseCluster(`${seed}\nverify: {image: 'nginx latest'}\n`, SEED, {});
  assert.equal(bad.cluster, undefined);
  assert.ok(bad.diagnostics.some((d) => d.path === 'verify.image' && /not an image reference/.test(d.message)), JSON.stringify(bad.diagnostics));
});
