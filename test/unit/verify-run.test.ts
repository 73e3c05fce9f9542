import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadCluster, type Deployment } from '../../src/cluster/open.js';
import type { KubeItem } from '../../src/kube/kubectl-host.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { Secret } from '../../src/util/secret.js';
import { runVerify, type VerifyOptions } from '../../src/verify/run.js';

/**
 * One cluster seen through `k3s kubectl` on each server: the API answers on a
 * server while its k3s unit is active, and through the load balancer while
 * any server's is. MetalLB hands out `address` after two polls.
 */
class FakeKube {
  readonly hosts = new Map<string, MemoryHost>();
  readonly log: string[] = [];
  /** The test Deployment's image, as applied. */
  images: string[] = [];
  simulated = false;
  address: string | null = '192.168.0.170';
  notReady = new Set<string>();
  nsExists = false;
  svcPolls = 0;
  /** A server that does not come back after `systemctl start`. */
  stuck = new Set<string>();

  constructor() {
    ['infra', 'server1', 'server2', 'agent1', 'agent2', 'agent3'].forEach((n, i) => {
      const h = new MemoryHost({ name: n, address: `192.168.0.${156 + i}`, services: n.startsWith('server') ? { k3s: { active: true, enabled: true } } : {} });
      if (n.startsWith('server')) this.attach(h);
      this.hosts.set(n, h);
    });
  }
  up(name: string): boolean {
    return (this.hosts.get(name)?.services.get('k3s')?.active ?? false) && !this.stuck.has(name);
  }
  node(name: string): KubeItem {
    const ready = !this.notReady.has(name) && (!name.startsWith('server') || this.up(name));
    return {
      kind: 'Node',
      metadata: { name, labels: name.startsWith('server') ? { 'node-role.kubernetes.io/control-plane': 'true' } : {}, annotations: this.simulated ? { 'kwok.x-k8s.io/node': 'fake' } : {} },
      status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'KubeletReady' : 'KubeletNotReady', message: ready ? '' : 'container runtime down' }], nodeInfo: { kubeletVersion: 'v1.31.4+k3s1' } },
    };
  }
  attach(h: MemoryHost): void {
    const refused = { code: 1, stdout: '', stderr: 'The connection to the server 127.0.0.1:6443 was refused' };
    h.handle(/k3s kubectl /, (cmd, stdin) => {
      const t = cmd.text;
      this.log.push(`${h.name}: ${t.replace(/^.*k3s kubectl --kubeconfig \S+ /, '')}`);
      const viaLb = t.includes('--server https://');
      if (viaLb ? ![...this.hosts.keys()].some((n) => n.startsWith('server') && this.up(n)) : !this.up(h.name)) return refused;
      if (t.includes('get --raw /readyz')) return ok('ok');
      if (t.includes('get nodes')) return ok(JSON.stringify({ items: ['server1', 'server2', 'agent1', 'agent2', 'agent3'].map((n) => this.node(n)) }));
      const node = /get node (\S+) -o json/.exec(t);
      if (node) return ok(JSON.stringify(this.node(node[1]!)));
      if (t.includes('apply -f -')) {
        assert.match(stdin, /kind: Service[\s\S]*type: LoadBalancer/);
        this.images.push(...[...stdin.matchAll(/image: (\S+)/g)].map((m) => m[1]!));
        this.nsExists = true;
        return ok();
      }
      if (t.includes('service/k8s-ha-verify')) {
        this.svcPolls++;
        const ip = this.svcPolls > 2 ? this.address : null;
        return ok(JSON.stringify({ kind: 'Service', metadata: { name: 'k8s-ha-verify' }, status: { loadBalancer: ip ? { ingress: [{ ip }] } : {} } }));
      }
      if (t.includes('delete namespace k8s-ha-verify')) {
        this.nsExists = false;
        return ok();
      }
      return { code: 1, stdout: '', stderr: `fake: unexpected ${t}` };
    });
  }
}

function deployment(edit: (d: Deployment) => void = () => {}): Deployment {
  const { cluster } = loadCluster('examples/seed.yaml', { HOME: '/root' });
  const d: Deployment = { spec: cluster, secrets: { k3sToken: new Secret('t'), datastorePassword: new Secret('p'), vrrpPass: new Secret('v') }, file: 'examples/seed.yaml' };
  edit(d);
  return d;
}

function verify(k: FakeKube, o: Partial<VerifyOptions> = {}) {
  return runVerify({
    deployment: deployment(),
    host: async (n) => k.hosts.get(n)!,
    httpGet: async () => 200,
    sleep: async () => {},
    pollMs: 0,
    timeouts: { nodesMs: 30, addressMs: 30, httpMs: 30, apiMs: 30, backMs: 30 },
    ...o,
  });
}

const statuses = (r: Awaited<ReturnType<typeof runVerify>>) => Object.fromEntries(r.checks.map((c) => [c.id, c.status]));

test('a healthy cluster passes every check, the address is from the pool, and the test namespace is removed', async () => {
  const k = new FakeKube();
  const urls: string[] = [];
  const r = await verify(k, { httpGet: async (u) => (urls.push(u), 200) });
  assert.deepEqual(statuses(r), { api: 'pass', 'api-lb': 'pass', 'nodes-ready': 'pass', 'lb-address': 'pass', 'lb-http': 'pass', cleanup: 'pass' });
  assert.equal(r.ok, true);
  assert.match(r.checks.find((c) => c.id === 'lb-address')!.detail, /192\.168\.0\.170 from pool default/);
  assert.deepEqual(urls, ['http://192.168.0.170/']);
  assert.equal(k.nsExists, false);
});

test('a node not Ready fails nodes-ready, naming the node and its reason', async () => {
  const k = new FakeKube();
  k.notReady.add('agent2');
  const r = await verify(k);
  const c = r.checks.find((x) => x.id === 'nodes-ready')!;
  assert.equal(c.status, 'fail');
  assert.match(c.detail, /4\/5 nodes Ready/);
  assert.match(c.detail, /agent2: not Ready \(KubeletNotReady: container runtime down\)/);
  assert.equal(r.ok, false);
});

test('an address outside the pools fails (HTTP is still tried on it), and the test objects are removed anyway', async () => {
  const k = new FakeKube();
  k.address = '10.9.9.9';
  const r = await verify(k);
  assert.equal(statuses(r)['lb-address'], 'fail');
  assert.match(r.checks.find((c) => c.id === 'lb-address')!.detail, /in none of the pools .*servicelb/);
  assert.equal(statuses(r)['lb-http'], 'pass');
  assert.equal(statuses(r).cleanup, 'pass');
  assert.equal(k.nsExists, false);
});

test('no address within the bound fails with where to look, and cleanup still runs', async () => {
  const k = new FakeKube();
  k.address = null;
  const r = await verify(k);
  assert.match(r.checks.find((c) => c.id === 'lb-address')!.detail, /got no address within .*metallb-system get pods/);
  assert.equal(k.nsExists, false);
});

test('on kwok-simulated nodes (the lab\'s explicit scale option) the HTTP check fails with the reason: nothing can answer', async () => {
  const k = new FakeKube();
  k.simulated = true;
  let asked = false;
  const r = await verify(k, { httpGet: async () => ((asked = true), 200) });
  const c = r.checks.find((x) => x.id === 'lb-http')!;
  assert.equal(c.status, 'fail');
  assert.match(c.detail, /simulated by kwok .*no container runs.*real kubelets/);
  assert.equal(asked, false);
  assert.equal(r.ok, false);
});

test('an address that never answers HTTP fails the check (exit code 1 territory)', async () => {
  const k = new FakeKube();
  const r = await verify(k, {
    httpGet: async () => {
      throw new Error('connect EHOSTUNREACH 192.168.0.170:80');
    },
  });
  assert.equal(statuses(r)['lb-http'], 'fail');
  assert.match(r.checks.find((c) => c.id === 'lb-http')!.detail, /EHOSTUNREACH/);
  assert.equal(r.ok, false);
});

test('the drill stops each server in turn, proves the API through the LB, and starts it again', async () => {
  const k = new FakeKube();
  const r = await verify(k, { drill: true });
  assert.deepEqual(
    r.checks.filter((c) => c.id.startsWith('drill')).map((c) => `${c.id}=${c.status}`),
    ['drill:server1:api=pass', 'drill:server1:back=pass', 'drill:server2:api=pass', 'drill:server2:back=pass'],
  );
  for (const s of ['server1', 'server2']) {
    const svc = k.hosts.get(s)!.services.get('k3s')!;
    assert.equal(svc.stops, 1);
    assert.equal(svc.active, true);
  }
  // While server1 was down, the LB check was asked from server2.
  assert.ok(k.log.some((l) => l.startsWith('server2: --server https://192.168.0.156:6443')));
});

test('a server that does not come back stops the drill before the next server is stopped', async () => {
  const k = new FakeKube();
  k.stuck.add('server1');
  const r = await verify(k, { drill: true });
  assert.equal(statuses(r)['drill:server1:back'], 'fail');
  assert.match(r.checks.find((c) => c.id === 'drill:server1:back')!.detail, /not ready within .*journalctl -u k3s/);
  assert.equal(statuses(r).drill, 'skip');
  assert.equal(k.hosts.get('server2')!.services.get('k3s')!.stops, 0);
});

test('with every server down, verify fails the API check and says where to look', async () => {
  const k = new FakeKube();
  for (const s of ['server1', 'server2']) k.hosts.get(s)!.services.get('k3s')!.active = false;
  const r = await verify(k);
  assert.deepEqual(statuses(r), { api: 'fail' });
  assert.match(r.checks[0]!.detail, /no server's API answers:\nserver1: .*refused\nserver2: .*journalctl -u k3s/s);
});

test('without a metallb section the Service checks are skipped with the reason', async () => {
  const k = new FakeKube();
  const r = await runVerify({
    deployment: deployment((d) => delete d.spec.metallb),
    host: async (n) => k.hosts.get(n)!,
    sleep: async () => {},
    pollMs: 0,
  });
  assert.equal(statuses(r)['lb-address'], 'skip');
  assert.match(r.checks.find((c) => c.id === 'lb-address')!.detail, /no metallb section/);
  assert.equal(r.ok, true);
});

test('the test web server is the cluster file\'s verify.image, else nginx; --image overrides both', async () => {
  const k = new FakeKube();
  await verify(k);
  await verify(k, { deployment: deployment((d) => (d.spec = { ...d.spec, verify: { image: 'localhost/k8s-ha-lab/httpd:busybox-1.35.0' } })) });
  await verify(k, { deployment: deployment((d) => (d.spec = { ...d.spec, verify: { image: 'localhost/k8s-ha-lab/httpd:busybox-1.35.0' } })), image: 'registry.example/web:1' });
  assert.deepEqual(k.images, ['docker.io/library/nginx:1.27-alpine', 'localhost/k8s-ha-lab/httpd:busybox-1.35.0', 'registry.example/web:1']);
});
