// Pure parts of the lab: addresses, the cluster file, messages. No root needed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { chooseSubnet, collision, ipToNumber, overlaps, parseCidr, type HostNet } from '../../lab/network.js';
import { planTopology, renderClusterFile, checkLabName, LAB_K3S_VERSION } from '../../lab/topology.js';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { LAB_K3S } from '../../lab/components.js';
import { skipOrFail } from '../../lab/testing.js';
import { requirementProblem } from '../../lab/requirements.js';
import { imageKey, IMAGE_PACKAGES } from '../../lab/image.js';
import { LabUsageError } from '../../lab/errors.js';
import { limitsToRaise } from '../../lab/limits.js';
import { diffSnapshots, type HostSnapshot } from '../../lab/snapshot.js';
import { parseCluster } from '../../src/spec/index.js';

const HOST: HostNet[] = [
  { cidr: parseCidr('192.0.2.0/24'), what: 'route 192.0.2.0/24 dev eth0' },
  { cidr: parseCidr('10.213.0.0/24'), what: 'route 10.213.0.0/24 dev br9' },
];

test('the default subnet skips a /24 the host already routes', () => {
  assert.equal(chooseSubnet(undefined, HOST).base, ipToNumber('10.213.1.0'));
});

test('a --subnet that overlaps a host route is refused with the route named', () => {
  assert.throws(
    () => chooseSubnet('192.0.0.0/22', HOST),
    (e: unknown) => e instanceof LabUsageError && /192\.0\.2\.0\/24 dev eth0/.test(e.message) && /--subnet/.test(e.message),
  );
});

test("the hint of a refused --subnet suggests a subnet that is free on this host, never the one that collides", () => {
  for (const wanted of ['10.213.0.0/24', '10.213.0.0/16', '192.0.2.0/24']) {
    assert.throws(
      () => chooseSubnet(wanted, HOST),
      (e: unknown) => {
        const hint = /e\.g\. (\S+),/.exec((e as Error).message)?.[1];
        // 10.213.0.0/16 covers every default: then no subnet is named at all.
        if (hint === undefined) return wanted.endsWith('/16') && /one none of the host's routes covers/.test((e as Error).message);
        return !overlaps(parseCidr(hint), parseCidr(wanted)) && collision(parseCidr(hint), HOST) === null;
      },
    );
  }
});

test('a --subnet smaller than a /24 is refused', () => {
  assert.throws(() => chooseSubnet('10.250.0.0/25', HOST), LabUsageError);
});

test('overlap is detected in both directions and not for neighbours', () => {
  assert.ok(overlaps(parseCidr('10.0.0.0/8'), parseCidr('10.5.0.0/16')));
  assert.ok(overlaps(parseCidr('10.5.0.0/16'), parseCidr('10.0.0.0/8')));
  assert.ok(!overlaps(parseCidr('10.213.0.0/24'), parseCidr('10.213.1.0/24')));
  assert.equal(collision(parseCidr('172.16.0.0/24'), HOST), null);
});

test('the seed topology has infra, two servers and three agents at fixed addresses', () => {
  const t = planTopology(parseCidr('10.213.0.0/24'));
  assert.deepEqual(
    t.machines.map((m) => `${m.name} ${m.address} ${m.roles.join(',')}`),
    ['infra 10.213.0.10 loadbalancer,datastore', 'server1 10.213.0.21 server', 'server2 10.213.0.22 server', 'agent1 10.213.0.51 agent', 'agent2 10.213.0.52 agent', 'agent3 10.213.0.53 agent'],
  );
  assert.equal(t.virtualIP, null);
  assert.equal(t.gateway, '10.213.0.1');
});

test('the MetalLB pool and the virtual IP are lab addresses no machine has', () => {
  const t = planTopology(parseCidr('10.213.0.0/24'), { servers: 29, agents: 99, lb2: true });
  const [from, to] = t.metallbRange.split('-').map(ipToNumber);
  const used = new Set(t.machines.map((m) => m.address));
  assert.ok(t.virtualIP && !used.has(t.virtualIP));
  for (const m of t.machines) {
    const n = ipToNumber(m.address);
    assert.ok(n < (from ?? 0) || n > (to ?? 0), `${m.name} ${m.address} is in the pool`);
  }
  assert.equal(used.size, t.machines.length);
});

test('server and agent counts out of range are refused', () => {
  assert.throws(() => planTopology(parseCidr('10.213.0.0/24'), { servers: 0 }), LabUsageError);
  assert.throws(() => planTopology(parseCidr('10.213.0.0/24'), { agents: 100 }), LabUsageError);
});

test('the cluster file written for a lab with two load balancers is a valid k8s-ha cluster file', () => {
  const topology = planTopology(parseCidr('10.213.0.0/24'), { lb2: true });
  const text = renderClusterFile({ name: 'demo', keyFile: '/var/lib/k8s-ha-lab/demo/id_ed25519', topology });
  const doc = parse(text) as { loadBalancer: { virtualIP: { address: string; interface: string } }; ssh: { keyFile: string } };
  assert.equal(doc.loadBalancer.virtualIP.address, '10.213.0.5');
  assert.equal(doc.loadBalancer.virtualIP.interface, 'host0');
  assert.equal(doc.ssh.keyFile, '/var/lib/k8s-ha-lab/demo/id_ed25519');
  const r = parseCluster(text, '/tmp/demo.yaml', {});
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.ok(r.cluster);
});

test('--galera plans two infrastructure machines (LB + data node each), the VIP and garbd on agent1, and writes a valid cluster file with one HAProxy writer route', () => {
  const topology = planTopology(parseCidr('10.213.0.0/24'), { galera: true, agents: 1 });
  assert.deepEqual(topology.machines.slice(0, 2), [
    { name: 'infra1', address: '10.213.0.10', roles: ['loadbalancer', 'datastore'] },
    { name: 'infra2', address: '10.213.0.11', roles: ['loadbalancer', 'datastore'] },
  ]);
  assert.equal(topology.virtualIP, '10.213.0.5');
  const text = renderClusterFile({ name: 'demo', keyFile: '/k', topology });
  const doc = parse(text) as { loadBalancer: { kind: string }; datastore: { galera: Record<string, unknown> } };
  assert.equal(doc.loadBalancer.kind, 'haproxy');
  assert.deepEqual(doc.datastore.galera, { enabled: true, writer: 'infra1', arbitrator: 'agent1', experimental: true });
  const r = parseCluster(text, '/tmp/demo.yaml', {});
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.equal(r.cluster?.apiAddress, '10.213.0.5');
  assert.throws(() => planTopology(parseCidr('10.213.0.0/24'), { galera: true, agents: 0 }), /arbitrator on agent1/);
  assert.throws(() => planTopology(parseCidr('10.213.0.0/24'), { galera: true, lb2: true }), /leave out --lb2/);
});

test('with the lab\'s parts built, the cluster file installs the lab\'s k3s air-gapped with the lab\'s images, pins the release it reports, and verifies with the busybox httpd', () => {
  const topology = planTopology(parseCidr('10.213.0.0/24'));
  const components = { k3sBinary: '/repo/labk3s/bin/k3s', airgapImages: '/repo/labk3s/images/bin', verifyImage: 'localhost/k8s-ha-lab/httpd:busybox-1.35.0' };
  const text = renderClusterFile({ name: 'demo', keyFile: '/k', topology, components });
  const r = parseCluster(text, '/tmp/demo.yaml', {});
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.deepEqual(r.cluster!.k3s.install, { source: 'local', path: '/repo/labk3s/bin/k3s', airgapImages: '/repo/labk3s/images/bin' });
  assert.equal(r.cluster!.k3s.version, 'v1.37.2+k3s1');
  assert.deepEqual(r.cluster!.verify, { image: 'localhost/k8s-ha-lab/httpd:busybox-1.35.0' });
  assert.match(text, /^# k3s.install.airgapImages: the lab's images/m);
});

test('the lab\'s k3s reports, k3s-style, the release the lab\'s cluster file pins', { skip: skipOrFail(existsSync(LAB_K3S) ? null : `${LAB_K3S} is missing: build it with scripts/build-labk3s.sh`) }, () => {
  const out = execFileSync(LAB_K3S, ['--version'], { encoding: 'utf8' });
  assert.match(out, new RegExp(`^k3s version ${LAB_K3S_VERSION.replace(/[.+]/g, '\\$&')} \\(labk3s\\)\ngo version go`));
});

test('lab names that cannot become link and cgroup names are refused', () => {
  assert.throws(() => checkLabName('Lab'), LabUsageError);
  assert.throws(() => checkLabName('a-very-long-name'), LabUsageError);
  checkLabName('demo-2');
});

test('a missing tool is reported with the apt-get command that installs it', () => {
  assert.match(requirementProblem(true, ['systemd-nspawn', 'debootstrap']) ?? '', /apt-get install -y systemd-container debootstrap/);
  assert.match(requirementProblem(false, []) ?? '', /needs root/);
  assert.equal(requirementProblem(true, []), null);
});

test('the image cache key changes with the package list', () => {
  assert.notEqual(imageKey(IMAGE_PACKAGES), imageKey([...IMAGE_PACKAGES, 'vim-tiny']));
  assert.equal(imageKey([...IMAGE_PACKAGES].reverse()), imageKey(IMAGE_PACKAGES));
});

test('lab up raises only the host limits below what real kubelets need, and never lowers one', () => {
  const limits = [
    { key: 'fs.inotify.max_user_instances', min: 8192, why: 'w' },
    { key: 'fs.inotify.max_user_watches', min: 524288, why: 'w' },
  ];
  // The host's defaults: 128 instances is too few for several machines.
  assert.deepEqual(
    limitsToRaise({ 'fs.inotify.max_user_instances': 128, 'fs.inotify.max_user_watches': 1048576 }, limits).map((c) => `${c.key} ${c.from}->${c.to}`),
    ['fs.inotify.max_user_instances 128->8192'],
  );
  assert.deepEqual(limitsToRaise({ 'fs.inotify.max_user_instances': 8192, 'fs.inotify.max_user_watches': 524288 }, limits), []);
  // An unreadable value is raised rather than trusted.
  assert.equal(limitsToRaise({ 'fs.inotify.max_user_instances': Number.NaN, 'fs.inotify.max_user_watches': 524288 }, limits).length, 1);
});

test('the lab image carries containerd, runc and the CNI plugins for real kubelets', () => {
  for (const p of ['containerd', 'runc', 'containernetworking-plugins']) assert.ok(IMAGE_PACKAGES.includes(p), p);
});

test('the host snapshot reports a lab cgroup or a kubepods left in any controller, but not the churn of labs that were up before', () => {
  const snap = (cgroups: string[]): HostSnapshot => ({ mounts: [], links: [], routes: [], nftRuleset: [], ipForward: '1', files: [], cgroups, processes: [] });
  const other = '/sys/fs/cgroup/memory/k8s-ha-lab/other';
  const before = snap(['/sys/fs/cgroup/memory/process_api', other, `${other}/agent1`, `${other}/agent1/kubepods`]);
  const after = snap([
    '/sys/fs/cgroup/memory/process_api', other, `${other}/agent1`, `${other}/agent1/kubepods/burstable`,
    '/sys/fs/cgroup/cpu/kubepods', '/sys/fs/cgroup/pids/k8s-ha-lab/test/server1',
  ]);
  assert.deepEqual(diffSnapshots(before, after).sort(), [
    'cgroups: left behind: /sys/fs/cgroup/cpu/kubepods',
    'cgroups: left behind: /sys/fs/cgroup/pids/k8s-ha-lab/test/server1',
  ]);
});
