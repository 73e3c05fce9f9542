/**
 * Values the schema's types let through but a renderer, a daemon or ssh2
 * would refuse or misread: each case is the seed with one such value, and
 * `validate` must name it (path, line, fix) instead of `plan` failing on a
 * host, or hanging. The last tests hold the rules against the renderers
 * themselves, so the two cannot drift apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseCluster } from '../../src/spec/index.js';
import { HEALTH_PATH, labelKeyProblem, labelValueProblem } from '../../src/spec/checks-values.js';
import { renderHaproxyCfg } from '../../src/render/haproxy.js';
import { renderLbCheckScript } from '../../src/render/lbcheck.js';
import { renderLbAliveScript } from '../../src/render/lb-alive.js';
import { renderK3sConfig } from '../../src/render/k3s.js';
import { Secret } from '../../src/util/secret.js';
import { checkDiagnostics, seedVariant, type Expect, type SeedEdit } from '../support/spec-cases.js';

const SEED = readFileSync('examples/seed.yaml', 'utf8');
const lb2 = { add: ['hosts'], item: { name: 'lb2', address: '192.168.0.155', roles: ['loadbalancer'] } };
const vip = (extra: Record<string, unknown> = {}): SeedEdit => ({ set: ['loadBalancer', 'virtualIP'], to: { address: '192.168.0.150', interface: 'eth0', ...extra } });

const CASES: { name: string; edits: SeedEdit[]; expect: Expect[]; env?: Record<string, string> }[] = [
  // --- durations: zero means "forever" to ssh2, and the renderers refuse 0 and weeks
  {
    name: 'an SSH connect timeout of 0 is refused: ssh2 would wait forever on a frozen host',
    edits: [{ set: ['ssh', 'connectTimeout'], to: '0s' }],
    expect: [['error', 'ssh.connectTimeout', /0s: an SSH connect timeout must be from 100ms to 5m \(0 would make ssh2 wait forever/]],
  },
  {
    name: 'a host\'s own SSH connect timeout of an hour is refused at that host',
    edits: [{ set: ['hosts', 2, 'ssh'], to: { connectTimeout: '1h' } }],
    expect: [['error', 'hosts[2].ssh.connectTimeout', /1h: an SSH connect timeout must be from 100ms to 5m/]],
  },
  {
    name: 'a load-balancer connect timeout of 0 is refused (nginx and HAProxy take none)',
    edits: [{ set: ['loadBalancer', 'timeouts'], to: { connect: '0ms' } }],
    expect: [['error', 'loadBalancer.timeouts.connect', /0ms: the load balancer's connect timeout must be from 10ms to 1m/]],
  },
  {
    name: 'an idle timeout of 30 days is refused',
    edits: [{ set: ['loadBalancer', 'timeouts'], to: { idle: '720h' } }],
    expect: [['error', 'loadBalancer.timeouts.idle', /720h: the idle timeout must be from 1s to 7 days/]],
  },
  {
    name: 'a health-check interval of 0 is refused',
    edits: [{ set: ['loadBalancer', 'healthCheck'], to: { interval: '0s' } }],
    expect: [['error', 'loadBalancer.healthCheck.interval', /the health-check interval must be from 100ms to 1m/]],
  },
  {
    name: 'an nginx fail_timeout of 0 is refused',
    edits: [{ set: ['loadBalancer', 'nginx'], to: { failTimeout: '0s' } }],
    expect: [['error', 'loadBalancer.nginx.failTimeout', /nginx fail_timeout must be from 100ms to 1h/]],
  },
  {
    name: 'an advert interval keepalived cannot express (1.234 s) is refused',
    edits: [lb2, vip({ advertInterval: '1234ms' })],
    expect: [['error', 'loadBalancer.virtualIP.advertInterval', /keepalived takes an advert interval of 10ms to 40\.95s in steps of 10ms/]],
  },
  {
    name: 'an advert interval of 300 s is refused (VRRP v2 counts up to 255)',
    edits: [lb2, vip({ advertInterval: '300s' })],
    expect: [['error', 'loadBalancer.virtualIP.advertInterval', /whole seconds up to 255s/]],
  },
  // --- what config formats cannot carry
  {
    name: 'a health-check path with a space or a quote is refused: HAProxy takes it as one word',
    edits: [{ set: ['loadBalancer', 'kind'], to: 'haproxy' }, { set: ['loadBalancer', 'healthCheck'], to: { path: '/ping "x"' } }],
    expect: [['error', 'loadBalancer.healthCheck.path', /cannot be carried by HAProxy's check/]],
  },
  {
    name: 'a health-check path with a query string is refused for nginx\'s checker (HAProxy would take it)',
    edits: [{ set: ['loadBalancer', 'healthCheck'], to: { path: '/readyz?verbose=1' } }],
    expect: [['error', 'loadBalancer.healthCheck.path', /cannot be carried by nginx's checker \(k8s-ha-lbcheck\).*no query string/]],
  },
  {
    name: 'with a virtual IP a query string is refused for HAProxy too: keepalived\'s track script requests the path',
    edits: [lb2, vip(), { set: ['loadBalancer', 'kind'], to: 'haproxy' }, { set: ['loadBalancer', 'healthCheck'], to: { path: '/readyz?verbose' } }],
    expect: [['error', 'loadBalancer.healthCheck.path', /cannot be carried by keepalived's track script \(k8s-ha-lb-alive\)/]],
  },
  {
    name: 'a virtual-IP interface with a space or a newline is refused',
    edits: [lb2, vip({ interface: 'eth0 ; reboot' })],
    expect: [['error', 'loadBalancer.virtualIP.interface', /"eth0 ; reboot" is not a Linux interface name/]],
  },
  {
    name: 'an interface name longer than Linux allows (15) is refused',
    edits: [lb2, vip({ interface: 'a-very-long-interface0' })],
    expect: [['error', 'loadBalancer.virtualIP.interface', /is not a Linux interface name/]],
  },
  {
    name: 'a VRRP password with a blank or # is refused (keepalived splits and comments on them)',
    edits: [lb2, vip({ advertInterval: '1s', authPass: 'a b#c' })],
    expect: [['error', 'loadBalancer.virtualIP.authPass', /can hold only letters, digits/]],
  },
  {
    name: 'an SSH user with a newline or a shell metacharacter is refused',
    edits: [{ set: ['ssh', 'user'], to: 'root\nid' }],
    expect: [['error', 'ssh.user', /is not a user name/]],
  },
  {
    name: 'a k3s flag value with a newline is refused (config.yaml would get a second line)',
    edits: [{ set: ['k3s', 'serverArgs'], to: { 'kube-apiserver-arg': ['v=2\nfoo: bar'] } }],
    expect: [['error', 'k3s.serverArgs.kube-apiserver-arg', /holds a newline, tab or other control character/]],
  },
  {
    name: 'a datastore password from the environment holding a newline is refused, naming the variable',
    edits: [{ set: ['datastore', 'password'], to: '${env:DB_PASS}' }],
    env: { DB_PASS: 'line1\nline2' },
    expect: [['error', 'datastore.password', /environment variable DB_PASS holds a newline/]],
  },
  {
    name: 'a sudo password with a line break is refused: sudo reads one line',
    edits: [{ set: ['hosts', 1, 'sudo'], to: { passwordEnv: 'SUDO_PW' } }],
    env: { SUDO_PW: 'pw\nmore' },
    expect: [['error', 'hosts[1].sudo.passwordEnv', /holds a line break: sudo reads one line/]],
  },
  {
    name: 'a database name starting with a digit is refused (the DSN and the SQL take it unquoted)',
    edits: [{ set: ['datastore', 'database'], to: '3k' }],
    expect: [['error', 'datastore.database', /"3k" starts with a digit/]],
  },
  // --- Kubernetes labels and taints
  {
    name: 'a label key with two slashes, and a value of 64 characters, are refused',
    edits: [{ set: ['hosts', 3, 'labels'], to: { 'a/b/c': 'x', tier: 'v'.repeat(64) } }],
    expect: [
      ['error', 'hosts[3].labels["a/b/c"]', /label key "a\/b\/c" is refused: its prefix "a\/b" is not a DNS subdomain/],
      ['error', 'hosts[3].labels.tier', /label value "v{64}" is refused/],
    ],
  },
  {
    name: 'a node-role.kubernetes.io label is refused: the kubelet will not start with it',
    edits: [{ set: ['hosts', 3, 'labels'], to: { 'node-role.kubernetes.io/worker': 'true' } }],
    expect: [['error', 'hosts[3].labels["node-role.kubernetes.io/worker"]', /the kubelet will not start with a --node-labels key in the kubernetes\.io/]],
  },
  {
    name: 'a taint key of 70 characters is refused',
    edits: [{ set: ['hosts', 3, 'taints'], to: [`${'k'.repeat(70)}=v:NoSchedule`] }],
    expect: [['error', 'hosts[3].taints[0]', /taint .* is refused: its name/]],
  },
  // --- ports and addresses one host would hold twice
  {
    name: 'the LB port equal to the LB host\'s SSH port is refused',
    edits: [{ set: ['hosts', 0, 'ssh'], to: { port: 6443 } }],
    expect: [['error', 'loadBalancer.port', /host "infra" \(hosts\[0\]\) already uses port 6443 for SSH, so the load balancer cannot listen on it/]],
  },
  {
    name: 'a nodeIP that is another host\'s address is refused',
    edits: [{ set: ['hosts', 3, 'nodeIP'], to: '192.168.0.162' }],
    expect: [['error', 'hosts[3].nodeIP', /node IP 192\.168\.0\.162 is the address of host "agent2" \(hosts\[4\]\)/]],
  },
  {
    name: 'two nodes with one nodeIP are refused at the second',
    edits: [{ set: ['hosts', 3, 'nodeIP'], to: '10.9.0.5' }, { set: ['hosts', 4, 'nodeIP'], to: '10.9.0.5' }],
    expect: [['error', 'hosts[4].nodeIP', /node IP 10\.9\.0\.5 is also the node IP of host "agent1"/]],
  },
  {
    name: 'a server given by host name is refused: the datastore allows servers by address',
    edits: [{ set: ['hosts', 1, 'address'], to: 'server1.lan' }],
    expect: [['error', 'hosts[1].address', /"server1\.lan" is a host name, but the datastore allows each k3s server by its address/]],
  },
];

for (const c of CASES) {
  test(c.name, () => {
    const r = parseCluster(seedVariant(SEED, c.edits), 'cluster.yaml', c.env ?? {});
    checkDiagnostics(r.diagnostics, c.expect);
    assert.equal(r.cluster, undefined, 'no cluster when there is an error');
  });
}

test('the health-check paths validate accepts are exactly those HAProxy\'s, nginx\'s checker\'s and the track script\'s renderers take', () => {
  const servers = [{ name: 's1', address: '10.0.0.1', port: 6443 }];
  const paths = ['/ping', '/readyz', '/readyz?verbose', '/a%20b', '/a b', '/"x"', '/x#y', '/x;reboot', '/x\ny', '/~u/./-_', '/x&y=1', '/$(id)', '/x\\y'];
  for (const path of paths) {
    let haproxy = true;
    try {
      renderHaproxyCfg({ listenPort: 6443, servers, connectTimeoutMs: 1000, idleTimeoutMs: 3_600_000, healthCheck: { path, intervalMs: 500, fall: 2, rise: 2 } });
    } catch {
      haproxy = false;
    }
    assert.equal(HEALTH_PATH.haproxy.test(path), haproxy, `HAProxy and validate agree on ${JSON.stringify(path)}`);
    let nginx = true;
    try {
      renderLbCheckScript({ servers, maxFails: 1, failTimeoutMs: 10_000, path, intervalMs: 500, fall: 2, rise: 2 });
    } catch {
      nginx = false;
    }
    assert.equal(HEALTH_PATH.nginx.test(path), nginx, `the checker and validate agree on ${JSON.stringify(path)}`);
    let alive = true;
    try {
      renderLbAliveScript({ listenPort: 6443, path, servers, timeoutMs: 500 });
    } catch {
      alive = false;
    }
    assert.equal(HEALTH_PATH.nginx.test(path), alive, `the track script and validate agree on ${JSON.stringify(path)}`);
  }
});

test('every label validate accepts, the k3s config renderer takes too', () => {
  const keys = ['role', 'example.com/role', 'a.b-c/d_e.f', 'x'.repeat(63), `${'p'.repeat(60)}.io/n`, 'node.kubernetes.io/pool', 'topology.kubernetes.io/zone'];
  const values = ['', 'v', 'a-b_c.d', 'v'.repeat(63)];
  for (const key of keys) {
    assert.equal(labelKeyProblem(key), null, key);
    for (const value of values) {
      assert.equal(labelValueProblem(value), null, value);
      const input = { role: 'agent' as const, nodeName: 'n1', nodeLabels: [`${key}=${value}`], token: new Secret('t'), server: { host: '10.0.0.9', port: 6443 } };
      assert.doesNotThrow(() => renderK3sConfig(input), `${key}=${value}`);
    }
  }
  for (const bad of ['-a', 'a/', '/a', 'A.b/c', 'a/b/c', 'x'.repeat(64), 'kubernetes.io/role', 'node-role.kubernetes.io/worker', 'k8s.io/x']) assert.notEqual(labelKeyProblem(bad), null, bad);
});
