/**
 * Invalid cluster files: each case is the seed with one thing broken (or a
 * fixture file), and names every error it must produce by path and message.
 * The error paths must match exactly, so a problem is reported once and does
 * not cascade; warnings are checked only where a case names them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCluster, type Severity } from '../../src/spec/index.js';
import { checkDiagnostics, seedVariant, type Expect, type SeedEdit } from '../support/spec-cases.js';

const SEED_TEXT = readFileSync('examples/seed.yaml', 'utf8');
const FIXTURES = 'test/fixtures/spec/invalid';

type Edit = SeedEdit;

interface Case {
  name: string;
  edits: Edit[];
  expect: Expect[];
  env?: Record<string, string>;
}

const variant = (edits: Edit[]): string => seedVariant(SEED_TEXT, edits);

const host = (name: string, address: string, roles: string[]) => ({ name, address, roles });
const lb2 = { add: ['hosts'], item: host('lb2', '192.168.0.155', ['loadbalancer']) };
const vip = (address = '192.168.0.150', extra: Record<string, unknown> = {}) => ({
  set: ['loadBalancer', 'virtualIP'],
  to: { address, interface: 'eth0', ...extra },
});

const CASES: Case[] = [
  // --- the schema: one field at a time
  {
    name: 'an address that is neither IPv4 nor a host name is refused at the host\'s address',
    edits: [{ set: ['hosts', 2, 'address'], to: '192.168.0.1x' }],
    expect: [['error', 'hosts[2].address', /^"192\.168\.0\.1x" is not an IPv4 address or host name$/]],
  },
  {
    name: 'an address with an octet above 255 is refused',
    edits: [{ set: ['hosts', 1, 'address'], to: '192.168.0.256' }],
    expect: [['error', 'hosts[1].address', /is not an IPv4 address or host name/]],
  },
  {
    name: 'a cluster name that is not a DNS label is refused',
    edits: [{ set: ['name'], to: 'My_Cluster' }],
    expect: [['error', 'name', /"My_Cluster" is not a DNS label/]],
  },
  {
    name: 'an unknown apiVersion is refused',
    edits: [{ set: ['apiVersion'], to: 'k8s-ha/v2' }],
    expect: [['error', 'apiVersion', /"k8s-ha\/v2" is not "k8s-ha\/v1"/]],
  },
  {
    name: 'a misspelled field is refused with the closest field suggested',
    edits: [{ text: ['    address: 192.168.0.156', '    adress: 192.168.0.156'] }],
    expect: [
      ['error', 'hosts[0].adress', /^unknown field "adress" \(did you mean "address"\?\)$/],
      ['error', 'hosts[0].address', /^address is required$/],
    ],
  },
  {
    name: 'a host without an address is refused at the missing field',
    edits: [{ del: ['hosts', 1, 'address'] }],
    expect: [['error', 'hosts[1].address', /^address is required$/]],
  },
  {
    name: 'an unknown role is refused with the closest role suggested',
    edits: [{ set: ['hosts', 1, 'roles'], to: ['srever'] }],
    expect: [['error', 'hosts[1].roles[0]', /"srever" is not one of loadbalancer, datastore, server, agent \(did you mean "server"\?\)/]],
  },
  {
    name: 'a host with no roles is refused',
    edits: [{ set: ['hosts', 1, 'roles'], to: [] }],
    expect: [['error', 'hosts[1].roles', /needs at least 1 entry/]],
  },
  {
    name: 'a role listed twice is refused',
    edits: [{ set: ['hosts', 1, 'roles'], to: ['server', 'server'] }],
    expect: [['error', 'hosts[1].roles', /more than once/]],
  },
  {
    name: 'a load balancer kind that does not exist is refused with a suggestion',
    edits: [{ set: ['loadBalancer', 'kind'], to: 'nginz' }],
    expect: [['error', 'loadBalancer.kind', /"nginz" is not one of nginx, haproxy \(did you mean "nginx"\?\)/]],
  },
  {
    name: 'a timeout without a unit is refused as not a duration',
    edits: [{ set: ['loadBalancer', 'timeouts'], to: { connect: '3' } }],
    expect: [['error', 'loadBalancer.timeouts.connect', /"3" is not a duration/]],
  },
  {
    name: 'an SSH port written as text is refused',
    edits: [{ text: ['  port: 22', '  port: "22"'] }],
    expect: [['error', 'ssh.port', /expected a whole number, got the text "22"/]],
  },
  {
    name: 'an empty section is refused as empty, not as a wrong type',
    edits: [{ text: ['ssh:\n  user: root\n  port: 22\n  keyFile: ~/.ssh/id_ed25519\n', 'ssh:\n'] }],
    expect: [['error', 'ssh', /^ssh is empty$/]],
  },
  {
    name: 'a literal k3s token is refused: only generate, an env reference or a file',
    edits: [{ set: ['k3s', 'token'], to: 'K10abcdef::server:secret' }],
    expect: [['error', 'k3s.token', /is not "generate", "\$\{env:NAME\}" or \{file: PATH\}/]],
  },
  {
    name: 'a k3s version not of the form vX.Y.Z+k3sN is refused',
    edits: [{ set: ['k3s', 'version'], to: '1.31.4' }],
    expect: [['error', 'k3s.version', /"1\.31\.4" is not a k3s version/]],
  },
  {
    name: 'a MetalLB version that is not v0.x.y is refused',
    edits: [{ set: ['metallb', 'version'], to: 'v1.0.0' }],
    expect: [['error', 'metallb.version', /"v1\.0\.0" is not a MetalLB version/]],
  },
  {
    name: 'a virtual IP router id outside 1..255 is refused',
    edits: [lb2, vip('192.168.0.150', { routerId: 0 })],
    expect: [['error', 'loadBalancer.virtualIP.routerId', /0 is below the minimum 1/]],
  },
  {
    name: 'a virtual IP without an interface is refused',
    edits: [lb2, { set: ['loadBalancer', 'virtualIP'], to: { address: '192.168.0.150' } }],
    expect: [['error', 'loadBalancer.virtualIP.interface', /interface is required/]],
  },
  {
    name: 'a server taint without an effect is refused',
    edits: [{ set: ['k3s', 'serverTaints'], to: ['CriticalAddonsOnly=true'] }],
    expect: [['error', 'k3s.serverTaints[0]', /"CriticalAddonsOnly=true" is not a taint/]],
  },
  {
    name: 'a MetalLB pool entry that is neither a range nor a CIDR is refused',
    edits: [{ set: ['metallb', 'pools', 0, 'addresses'], to: ['192.168.0.170-'] }],
    expect: [['error', 'metallb.pools[0].addresses[0]', /is not an address range or CIDR/]],
  },

  // --- hosts and roles
  {
    name: 'two hosts with the same name are refused at the second one',
    edits: [{ set: ['hosts', 2, 'name'], to: 'server1' }],
    expect: [['error', 'hosts[2].name', /host name "server1" is already used by hosts\[1\]/]],
  },
  {
    name: 'two hosts with the same address are refused at the second one',
    edits: [{ set: ['hosts', 2, 'address'], to: '192.168.0.157' }],
    expect: [['error', 'hosts[2].address', /address 192\.168\.0\.157 is already used by hosts\[1\] \("server1"\)/]],
  },
  {
    name: 'a cluster without a server is refused, naming the agents left without one',
    edits: [{ set: ['hosts', 1, 'roles'], to: ['agent'] }, { set: ['hosts', 2, 'roles'], to: ['agent'] }],
    expect: [['error', 'hosts', /no host has the server role \(the 5 agents have nothing to join\)/]],
  },
  {
    name: 'a cluster with one server is accepted with a warning that it is not highly available',
    edits: [{ set: ['hosts', 2, 'roles'], to: ['agent'] }],
    expect: [['warning', 'hosts', /only one server: the Kubernetes API is not highly available/]],
  },
  {
    name: 'a host that is both server and agent is refused',
    edits: [{ set: ['hosts', 1, 'roles'], to: ['server', 'agent'] }],
    expect: [['error', 'hosts[1].roles', /host "server1" is both a server and an agent/]],
  },
  {
    name: 'a sudo password variable that is not set is a warning at validate time',
    edits: [{ set: ['hosts', 1, 'sudo'], to: { passwordEnv: 'SERVER1_SUDO' } }],
    expect: [['warning', 'hosts[1].sudo.passwordEnv', /environment variable SERVER1_SUDO is not set/]],
  },

  // --- the load balancer and the virtual IP
  {
    name: 'a cluster without a load-balancer host is refused',
    edits: [{ set: ['hosts', 0, 'roles'], to: ['datastore'] }],
    expect: [['error', 'hosts', /no host has the loadbalancer role/]],
  },
  {
    name: 'a third load-balancer host is refused at its roles',
    edits: [lb2, { add: ['hosts'], item: host('lb3', '192.168.0.154', ['loadbalancer']) }, vip()],
    expect: [['error', 'hosts[7].roles', /host "lb3" is a third load-balancer host/]],
  },
  {
    name: 'two load-balancer hosts without a virtual IP are refused: clients need one address',
    edits: [lb2],
    expect: [['error', 'loadBalancer', /two load-balancer hosts but no virtual IP/]],
  },
  {
    name: 'a virtual IP with a single load-balancer host is refused',
    edits: [vip()],
    expect: [['error', 'loadBalancer.virtualIP', /a virtual IP needs two load-balancer hosts, found 1/]],
  },
  {
    name: 'a virtual IP equal to a host\'s address is refused',
    edits: [lb2, vip('192.168.0.158')],
    expect: [['error', 'loadBalancer.virtualIP.address', /virtual IP 192\.168\.0\.158 is the address of host "server2"/]],
  },
  {
    name: 'a load balancer on a server host with port 6443 is refused: both bind 6443',
    edits: [{ set: ['hosts', 0, 'roles'], to: ['datastore'] }, { set: ['hosts', 1, 'roles'], to: ['server', 'loadbalancer'] }],
    expect: [['error', 'hosts[1].roles', /host "server1" runs both the load balancer and the k3s API server, and both bind port 6443/]],
  },
  {
    name: 'a VRRP password longer than 8 characters is a warning: keepalived uses only 8',
    edits: [lb2, vip('192.168.0.150', { authPass: 'much-too-long' })],
    expect: [['warning', 'loadBalancer.virtualIP.authPass', /only the first 8 characters/]],
  },

  // --- the datastore
  {
    name: 'a cluster without a datastore host is refused',
    edits: [{ set: ['hosts', 0, 'roles'], to: ['loadbalancer'] }],
    expect: [['error', 'hosts', /no host has the datastore role/]],
  },
  {
    name: 'a second datastore host without Galera is refused at its roles',
    edits: [{ add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) }],
    expect: [['error', 'hosts[6].roles', /host "db2" is a second datastore host, but Galera is not enabled/]],
  },
  {
    name: 'a multi-writer Galera datastore is refused: k3s does not support it',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { add: ['hosts'], item: host('db3', '192.168.0.160', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'galera'], to: { enabled: true, mode: 'multi-writer', experimental: true } },
    ],
    expect: [['error', 'datastore.galera.mode', /multi-writer Galera is not supported by k3s/]],
  },
  {
    name: 'a Galera writer that is not a datastore host is refused',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { add: ['hosts'], item: host('db3', '192.168.0.160', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'galera'], to: { enabled: true, writer: 'server1', experimental: true } },
    ],
    expect: [['error', 'datastore.galera.writer', /"server1" is not a datastore host/]],
  },
  {
    name: 'Galera on two datastore hosts without an arbitrator is a warning: an even number of voters loses quorum with half of them',
    edits: [{ add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) }, { set: ['loadBalancer', 'kind'], to: 'haproxy' }, { set: ['datastore', 'galera'], to: { enabled: true, experimental: true } }],
    expect: [['warning', 'datastore.galera', /2 Galera voters: when half of them are lost/]],
  },
  {
    name: 'a Galera arbitrator on a datastore host is refused: its vote dies with the node',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'db2', experimental: true } },
    ],
    expect: [['error', 'datastore.galera.arbitrator', /"db2" is a datastore host/]],
  },
  {
    name: 'a Galera arbitrator that is not a host is refused',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'nowhere', experimental: true } },
    ],
    expect: [['error', 'datastore.galera.arbitrator', /"nowhere" is not a host of the cluster file/]],
  },
  {
    name: 'Galera behind nginx without its checker is refused: k8s-ha-lbcheck routes the one writer',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'nginx'], to: { activeCheck: false } },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'agent1', experimental: true } },
    ],
    expect: [['error', 'loadBalancer.nginx.activeCheck', /routed to one writer by k8s-ha-lbcheck/]],
  },
  {
    name: 'Galera behind a load balancer run as a container is refused',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'deploy'], to: 'docker' },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'agent1', experimental: true } },
    ],
    expect: [['error', 'loadBalancer.deploy', /routed by the load balancer to one writer, which k8s-ha does with HAProxy or with nginx/]],
  },
  {
    name: 'Galera with TLS to k3s is refused (one CA per node so far), and a node port equal to datastore.port on a load-balancer host too',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'tls'], to: { enabled: true } },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'agent1', nodePort: 3306, experimental: true } },
    ],
    expect: [
      ['error', 'datastore.galera.nodePort', /both would bind port 3306/],
      ['error', 'datastore.tls.enabled', /TLS from k3s to a Galera datastore is not provided yet/],
    ],
  },

  {
    name: 'a Galera writer hold-down over 10 s and a peers port that is already the API port are refused',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'agent1', writerHold: '30s', peerPort: 6443, experimental: true } },
    ],
    expect: [
      ['error', 'datastore.galera.writerHold', /30s of refused connections after every writer loss/],
      ['error', 'datastore.galera.peerPort', /port 6443 is already loadBalancer.port/],
    ],
  },

  {
    name: 'Galera without experimental: true is refused: its safety rests on the hold-downs, not on kine',
    edits: [
      { add: ['hosts'], item: host('db2', '192.168.0.159', ['datastore']) },
      { set: ['loadBalancer', 'kind'], to: 'haproxy' },
      { set: ['datastore', 'galera'], to: { enabled: true, arbitrator: 'agent1' } },
    ],
    expect: [['error', 'datastore.galera.experimental', /the Galera datastore is experimental: kine v0.17 reports a create whose INSERT failed as done/]],
  },

  // --- k3s
  {
    name: 'both a k3s version and a channel are refused at the channel',
    edits: [{ set: ['k3s', 'channel'], to: 'stable' }],
    expect: [['error', 'k3s.channel', /both k3s\.version and k3s\.channel are set/]],
  },
  {
    name: 'a cluster DNS address outside the service network is refused',
    edits: [{ set: ['k3s', 'clusterDns'], to: '10.42.0.10' }],
    expect: [['error', 'k3s.clusterDns', /cluster DNS 10\.42\.0\.10 is outside the service network 10\.43\.0\.0\/16/]],
  },
  {
    name: 'a pod network overlapping the service network is refused',
    edits: [{ set: ['k3s', 'clusterCidr'], to: '10.0.0.0/8' }],
    expect: [['error', 'k3s.serviceCidr', /service network 10\.43\.0\.0\/16 overlaps the pod network 10\.0\.0\.0\/8/]],
  },
  {
    name: 'a pod network containing the hosts\' addresses is refused, and so is a pool inside it',
    edits: [{ set: ['k3s', 'clusterCidr'], to: '192.168.0.0/16' }],
    expect: [
      ['error', 'k3s.clusterCidr', /pod network 192\.168\.0\.0\/16 contains the address of host "infra" \(192\.168\.0\.156\)/],
      ['error', 'metallb.pools[0].addresses[0]', /overlaps the pod network 192\.168\.0\.0\/16/],
    ],
  },
  {
    name: 'a CIDR with host bits set is refused with the network address to write',
    edits: [{ set: ['k3s', 'clusterCidr'], to: '10.42.1.0/16' }],
    expect: [['error', 'k3s.clusterCidr', /10\.42\.1\.0\/16 has host bits set/]],
  },
  {
    name: 'a local k3s install without a binary path is refused',
    edits: [{ set: ['k3s', 'install'], to: { source: 'local' } }],
    expect: [['error', 'k3s.install.path', /install\.source is local but no k3s binary is given/]],
  },
  {
    name: 'an unknown k3s server flag is refused with the closest flag suggested',
    edits: [{ set: ['k3s', 'serverArgs'], to: { 'tls-sans': ['k8s.example'] } }],
    expect: [['error', 'k3s.serverArgs.tls-sans', /^unknown k3s server flag 'tls-sans' \(did you mean 'tls-san'\?\)$/]],
  },
  {
    name: 'an unknown k3s agent flag is refused with the closest flag suggested',
    edits: [{ set: ['k3s', 'agentArgs'], to: { 'kubelet-args': ['max-pods=200'] } }],
    expect: [['error', 'k3s.agentArgs.kubelet-args', /unknown k3s agent flag 'kubelet-args' \(did you mean 'kubelet-arg'\?\)/]],
  },
  {
    name: 'a server-only flag among the agent flags is refused as unknown to the agent',
    edits: [{ set: ['k3s', 'agentArgs'], to: { 'kube-apiserver-arg': ['v=2'] } }],
    expect: [['error', 'k3s.agentArgs.kube-apiserver-arg', /unknown k3s agent flag 'kube-apiserver-arg'/]],
  },
  {
    name: 'a flag k8s-ha manages (token) given in serverArgs is refused, pointing to its field',
    edits: [{ set: ['k3s', 'serverArgs'], to: { token: 'abc' } }],
    expect: [['error', 'k3s.serverArgs.token', /k3s server flag 'token' is managed by k8s-ha/]],
  },
  {
    name: 'a datastore endpoint given in serverArgs is refused, pointing to the datastore section',
    edits: [{ set: ['k3s', 'serverArgs'], to: { 'datastore-endpoint': 'mysql://k3s:pw@tcp(192.168.0.156:3306)/k3s' } }],
    expect: [['error', 'k3s.serverArgs.datastore-endpoint', /'datastore-endpoint' is managed by k8s-ha/]],
  },
  {
    name: 'a flag written with leading dashes is refused with its config.yaml spelling',
    edits: [{ set: ['k3s', 'serverArgs'], to: { '--disable-network-policy': true } }],
    expect: [['error', 'k3s.serverArgs["--disable-network-policy"]', /k3s server flag '--disable-network-policy' is written with dashes/]],
  },

  // --- MetalLB
  {
    name: 'servicelb left on while MetalLB is enabled is refused at k3s.disable',
    edits: [{ set: ['k3s', 'disable'], to: ['traefik'] }],
    expect: [['error', 'k3s.disable', /servicelb is left on while MetalLB is enabled/]],
  },
  {
    name: 'a MetalLB pool overlapping a host address is refused with the pool\'s path',
    edits: [{ set: ['metallb', 'pools', 0, 'addresses'], to: ['192.168.0.150-192.168.0.160'] }],
    expect: [['error', 'metallb.pools[0].addresses[0]', /pool "default" \(192\.168\.0\.150-192\.168\.0\.160\) contains the address of host "infra" \(192\.168\.0\.156\)/]],
  },
  {
    name: 'a MetalLB pool containing the virtual IP is refused',
    edits: [lb2, vip('192.168.0.171')],
    expect: [['error', 'metallb.pools[0].addresses[0]', /contains the virtual IP \(192\.168\.0\.171\)/]],
  },
  {
    name: 'two MetalLB pools sharing addresses are refused at the later one',
    edits: [{ add: ['metallb', 'pools'], item: { name: 'extra', addresses: ['192.168.0.174/31'] } }],
    expect: [['error', 'metallb.pools[1].addresses[0]', /"192\.168\.0\.174\/31" overlaps metallb\.pools\[0\]\.addresses\[0\]/]],
  },
  {
    name: 'a reversed MetalLB range is refused',
    edits: [{ set: ['metallb', 'pools', 0, 'addresses'], to: ['192.168.0.175-192.168.0.170'] }],
    expect: [['error', 'metallb.pools[0].addresses[0]', /range "192\.168\.0\.175-192\.168\.0\.170" is reversed/]],
  },
  {
    name: 'a MetalLB pool inside the service network is refused',
    edits: [{ set: ['metallb', 'pools', 0, 'addresses'], to: ['10.43.200.0/24'] }],
    expect: [['error', 'metallb.pools[0].addresses[0]', /overlaps the service network 10\.43\.0\.0\/16/]],
  },
  {
    name: 'tainted servers with no agents and MetalLB on are refused: the speakers cannot be scheduled',
    edits: [{ del: ['hosts', 5] }, { del: ['hosts', 4] }, { del: ['hosts', 3] }, { set: ['k3s', 'serverTaints'], to: ['CriticalAddonsOnly=true:NoExecute'] }],
    expect: [['error', 'k3s.serverTaints[0]', /MetalLB's speakers cannot be scheduled/]],
  },
];

const check = checkDiagnostics;

for (const c of CASES) {
  test(c.name, () => {
    const r = parseCluster(variant(c.edits), 'cluster.yaml', c.env ?? {});
    check(r.diagnostics, c.expect);
    if (c.expect.some((e) => e[0] === 'error')) assert.equal(r.cluster, undefined, 'no cluster when there is an error');
    else assert.ok(r.cluster, 'a cluster when there are only warnings');
  });
}

/** Fixture files say what they test and expect in comments: `# test: ...` and `# expect: SEVERITY PATH /REGEX/`. */
function readFixture(file: string): { name: string; text: string; expect: Expect[] } {
  const text = readFileSync(join(FIXTURES, file), 'utf8');
  const name = /^# test: (.+)$/m.exec(text)?.[1] ?? file;
  const expect: Expect[] = [...text.matchAll(/^# expect: (error|warning) (\S+) \/(.+)\/$/gm)].map((m) => [
    m[1] as Severity,
    m[2] === '-' ? '' : m[2]!,
    new RegExp(m[3]!),
  ]);
  return { name, text, expect };
}

for (const file of readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml') && !f.startsWith('missing-')).sort()) {
  const fx = readFixture(file);
  test(fx.name, () => {
    assert.ok(fx.expect.length > 0, `${file} declares what it expects`);
    const r = parseCluster(fx.text, file, {});
    check(r.diagnostics, fx.expect);
    assert.equal(r.cluster, undefined);
  });
}

test('there are at least 30 invalid cluster files, each with its expected path and message', () => {
  const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).length;
  assert.ok(CASES.length + fixtures >= 30, `${CASES.length + fixtures} cases`);
});
