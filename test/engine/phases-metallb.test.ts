import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { Engine, PreflightError } from '../../src/engine/engine.js';
import type { Deployment } from '../../src/cluster/open.js';
import { loadCluster } from '../../src/cluster/open.js';
import { metallbPhase, servicelbState, type MetallbPhaseOptions } from '../../src/phases/metallb.js';
import type { KubeItem } from '../../src/kube/kubectl-host.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { Secret } from '../../src/util/secret.js';
import { TEST_METALLB_MANIFEST } from '../support/offline-example.js';

/** The same trimmed manifest the simulated fleet serves. */
const MANIFEST = TEST_METALLB_MANIFEST;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
/** The next release's manifest, as far as the fake cluster can tell (its images). */
const MANIFEST_V2 = MANIFEST.replaceAll('v0.14.9', 'v0.15.3');

const K3S_CONFIG = 'token: x\ndisable:\n  - servicelb\n  - traefik\n';

/**
 * The cluster as `k3s kubectl` on server1 sees it: what the MetalLB phase
 * reads and writes. The webhook turns ready after `webhookAfter` dry runs and
 * refuses pools until then, as MetalLB's does (FACTS: MetalLB).
 */
class FakeCluster {
  apiUp = true;
  manifest: string | null = null;
  controllerImage: string | null = null;
  record: Record<string, string> | null = null;
  readonly objects = new Map<string, KubeItem>();
  dryRuns = 0;
  availablePolls = 0;
  rolloutFails = false;
  readonly timeline: string[] = [];
  constructor(
    public webhookAfter = 2,
    public availableAfter = 1,
    public deny = '',
  ) {}
  get webhookReady(): boolean {
    return this.manifest !== null && this.dryRuns > this.webhookAfter;
  }

  attach(h: MemoryHost): void {
    const refused = { code: 1, stdout: '', stderr: 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?' };
    h.handle(/k3s kubectl /, (cmd, stdin) => {
      const t = cmd.text;
      if (!this.apiUp) return refused;
      if (t.includes('configmap/k8s-ha-metallb deployment/controller')) {
        const items: KubeItem[] = [];
        if (this.record) items.push({ kind: 'ConfigMap', metadata: { name: 'k8s-ha-metallb' }, data: this.record });
        if (this.controllerImage) items.push({ kind: 'Deployment', metadata: { name: 'controller' }, spec: { template: { spec: { containers: [{ name: 'controller', image: this.controllerImage }] } } } });
        return ok(JSON.stringify({ kind: 'List', items }));
      }
      if (t.includes('ipaddresspools.metallb.io,l2advertisements.metallb.io')) return ok(JSON.stringify({ kind: 'List', items: [...this.objects.values()] }));
      if (t.includes('deployment/controller -o')) {
        this.availablePolls++;
        return ok(this.manifest && this.availablePolls > this.availableAfter ? 'True' : 'False');
      }
      if (t.includes('--dry-run=server')) {
        this.dryRuns++;
        this.timeline.push('dry-run');
        if (this.deny) return { code: 1, stdout: '', stderr: `Error from server (Forbidden): admission webhook "ipaddresspoolvalidationwebhook.metallb.io" denied the request: ${this.deny}` };
        return this.webhookReady ? ok() : { code: 1, stdout: '', stderr: 'Internal error occurred: failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": dial tcp 10.43.0.9:443: connect: connection refused' };
      }
      if (/ apply --server-side --force-conflicts /.test(t)) return this.apply(stdin);
      const rollout = / rollout status -n metallb-system (\S+) --timeout=\d+s$/.exec(t);
      if (rollout) {
        this.timeline.push(`rollout ${rollout[1]} ${this.controllerImage}`);
        return this.rolloutFails ? { code: 1, stdout: '', stderr: `error: timed out waiting for the condition` } : ok(`${rollout[1]} successfully rolled out\n`);
      }
      const del = /delete -n metallb-system (ipaddresspools|l2advertisements)\.metallb\.io\/(\S+)/.exec(t);
      if (del) {
        this.objects.delete(`${del[1] === 'ipaddresspools' ? 'IPAddressPool' : 'L2Advertisement'}/${del[2]}`);
        this.timeline.push(`delete ${del[2]}`);
        return ok();
      }
      return { code: 1, stdout: '', stderr: `fake cluster: unexpected ${t}` };
    });
  }

  apply(stdin: string) {
    if (stdin === MANIFEST || stdin === MANIFEST_V2 || stdin.startsWith('apiVersion: v1\nkind: Namespace')) {
      this.manifest = sha(stdin);
      this.controllerImage = stdin === MANIFEST_V2 ? 'quay.io/metallb/controller:v0.15.3' : 'quay.io/metallb/controller:v0.14.9';
      this.timeline.push('manifest');
      return ok();
    }
    for (const doc of parseAllDocuments(stdin)) {
      const o = doc.toJS() as KubeItem;
      if (o.kind === 'ConfigMap') {
        this.record = o.data ?? {};
        this.timeline.push('record');
        continue;
      }
      if (!this.webhookReady) return { code: 1, stdout: '', stderr: 'failed calling webhook "ipaddresspoolvalidationwebhook.metallb.io": no endpoints available for service "metallb-webhook-service"' };
      this.objects.set(`${o.kind}/${o.metadata.name}`, { ...o, spec: { avoidBuggyIPs: false, ...o.spec } });
      this.timeline.push(`${o.kind}/${o.metadata.name}`);
    }
    return ok();
  }
}

function deployment(edit: (d: Deployment) => void = () => {}): Deployment {
  const { cluster } = loadCluster('examples/seed.yaml', { HOME: '/root' });
  const d: Deployment = {
    spec: cluster,
    secrets: { k3sToken: new Secret('t'), datastorePassword: new Secret('p'), vrrpPass: new Secret('v') },
    file: 'examples/seed.yaml',
  };
  d.spec.metallb!.manifest = { sha256: sha(MANIFEST) };
  edit(d);
  return d;
}

function setup(o: { fake?: FakeCluster; configs?: Record<string, string | null> } = {}) {
  const fake = o.fake ?? new FakeCluster();
  const hosts = new Map<string, MemoryHost>();
  ['infra', 'server1', 'server2', 'agent1', 'agent2', 'agent3'].forEach((n, i) => {
    const h = new MemoryHost({ name: n, address: `192.168.0.${156 + i}` });
    if (n.startsWith('server')) {
      const c = o.configs?.[n] === undefined ? K3S_CONFIG : o.configs[n];
      if (c !== null) h.setFile('/etc/rancher/k3s/config.yaml', c, { mode: 0o600 });
    }
    hosts.set(n, h);
  });
  fake.attach(hosts.get('server1')!);
  return { fake, hosts };
}

function engine(d: Deployment, hosts: Map<string, MemoryHost>, opts: MetallbPhaseOptions = {}) {
  return new Engine<Deployment>({
    cluster: d,
    hosts: [...hosts.values()].map((h) => ({ name: h.name, address: h.address })),
    connect: async (n) => hosts.get(n)!,
    phases: [metallbPhase({ fetchManifest: async () => Buffer.from(MANIFEST), sleep: async () => {}, ...opts })],
  });
}

test('plan on a cluster without MetalLB lists manifest, wait and objects on the first server, and changes nothing', async () => {
  const { fake, hosts } = setup();
  const plan = await engine(deployment(), hosts).plan();
  assert.deepEqual(plan.steps.map((s) => s.host), ['server1']);
  const summaries = plan.steps[0]!.changes.map((c) => c.summary);
  assert.match(summaries[0]!, /^apply MetalLB v0\.14\.9 manifest, sha256 /);
  assert.match(summaries[1]!, /^wait for MetalLB's controller and webhook/);
  assert.equal(summaries[2], 'apply IPAddressPool/default, L2Advertisement/k8s-ha-l2');
  assert.deepEqual(fake.timeline, []);
});

test('the pool is applied only after the controller is available and the webhook accepts a dry run', async () => {
  const { fake, hosts } = setup({ fake: new FakeCluster(3, 2) });
  await engine(deployment(), hosts).apply();
  assert.deepEqual(fake.timeline, ['manifest', 'record', 'dry-run', 'dry-run', 'dry-run', 'dry-run', 'IPAddressPool/default', 'L2Advertisement/k8s-ha-l2']);
  assert.ok(fake.availablePolls >= 3, 'the Deployment was polled until Available');
  assert.deepEqual(fake.objects.get('IPAddressPool/default')?.spec, { avoidBuggyIPs: false, addresses: ['192.168.0.170-192.168.0.175'], autoAssign: true });
  assert.deepEqual(fake.record, { version: 'v0.14.9', sha256: sha(MANIFEST) });
});

test('re-applying an unchanged MetalLB changes nothing (defaults filled in by the API are not a difference)', async () => {
  const { fake, hosts } = setup();
  await engine(deployment(), hosts).apply();
  const before = fake.timeline.length;
  const plan = await engine(deployment(), hosts).plan();
  assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => s.changes.map((c) => c.summary))));
  const r = await engine(deployment(), hosts).apply();
  assert.equal(r.changed, 0);
  assert.equal(fake.timeline.length, before);
});

test('a changed pool re-applies only the objects (after a webhook check), and a removed pool is deleted', async () => {
  const { fake, hosts } = setup();
  await engine(deployment(), hosts).apply();
  fake.timeline.length = 0;
  const d = deployment((x) => {
    x.spec.metallb!.pools = [{ name: 'web', addresses: ['192.168.0.180/30'], autoAssign: true }];
  });
  const plan = await engine(d, hosts).plan();
  assert.deepEqual(plan.steps[0]!.changes.map((c) => c.summary.replace(/ \(up to .*/, '')), [
    "wait for MetalLB's controller and webhook",
    'apply IPAddressPool/web, L2Advertisement/k8s-ha-l2',
    'delete IPAddressPool/default (no longer in the cluster file)',
  ]);
  await engine(d, hosts).apply();
  assert.deepEqual(fake.timeline, ['dry-run', 'IPAddressPool/web', 'L2Advertisement/k8s-ha-l2', 'delete default']);
  assert.deepEqual([...fake.objects.keys()].sort(), ['IPAddressPool/web', 'L2Advertisement/k8s-ha-l2']);
});

test('a controller image changed by hand brings the manifest back', async () => {
  const { fake, hosts } = setup();
  await engine(deployment(), hosts).apply();
  fake.controllerImage = 'quay.io/metallb/controller:v0.13.12';
  const plan = await engine(deployment(), hosts).plan();
  assert.match(plan.steps[0]!.changes[0]!.summary, /manifest \(controller runs quay\.io\/metallb\/controller:v0\.13\.12\)/);
});

test('servicelb enabled on a server: plan warns, apply refuses to install MetalLB and names the server and the fix', async () => {
  const { fake, hosts } = setup({ configs: { server2: 'token: x\ndisable: traefik\n' } });
  const plan = await engine(deployment(), hosts).plan();
  assert.ok(plan.problems.some((p) => p.severity === 'warning' && /server2: servicelb is enabled/.test(p.message)));
  await assert.rejects(engine(deployment(), hosts).apply(), (e: Error) => {
    assert.match(e.message, /servicelb is not disabled on server2 \(enabled\)/);
    assert.match(e.message, /Put servicelb in k3s\.disable and run apply again/);
    return true;
  });
  assert.deepEqual(fake.timeline, []);
});

test('a cluster file that keeps servicelb is refused before any host is changed', async () => {
  const { fake, hosts } = setup();
  const d = deployment((x) => {
    x.spec.k3s.disable = ['traefik'];
  });
  await assert.rejects(engine(d, hosts).apply(), (e: Error) => e instanceof PreflightError && /k3s\.disable: servicelb is not disabled/.test(e.message));
  assert.deepEqual(fake.timeline, []);
});

test('a manifest whose sha256 differs from the pinned one is refused and nothing is applied', async () => {
  const { fake, hosts } = setup();
  const d = deployment((x) => {
    delete x.spec.metallb!.manifest;
  });
  await assert.rejects(engine(d, hosts).apply(), /has sha256 [0-9a-f]{64}, expected 951065e85692aa106f1bb5d5a487d9306154923a794ab1d82122881cbaf588e4: refusing to apply it/);
  assert.deepEqual(fake.timeline, []);
});

test('an air-gapped manifest file is read locally and checked against metallb.manifest.sha256', async () => {
  const { fake, hosts } = setup();
  const read: string[] = [];
  const d = deployment((x) => {
    x.spec.metallb!.manifest = { file: '/srv/metallb-native.yaml', sha256: sha(MANIFEST) };
  });
  const fetched: string[] = [];
  await engine(d, hosts, { readLocal: async (p) => (read.push(p), Buffer.from(MANIFEST)), fetchManifest: async (u) => (fetched.push(u), Buffer.from('')) }).apply();
  assert.deepEqual(fetched, []);
  assert.ok(read.includes('/srv/metallb-native.yaml'));
  assert.equal(fake.manifest, sha(MANIFEST));
});

test('a local manifest file of a pinned release without metallb.manifest.sha256 is held to the pinned digest', async () => {
  const { fake, hosts } = setup();
  const d = deployment((x) => {
    x.spec.metallb!.manifest = { file: '/srv/metallb-native.yaml' };
  });
  const e = engine(d, hosts, { readLocal: async () => Buffer.from(MANIFEST) });
  await assert.rejects(e.apply(), /manifest \/srv\/metallb-native\.yaml has sha256 [0-9a-f]{64}, expected 951065e85692aa106f1bb5d5a487d9306154923a794ab1d82122881cbaf588e4: refusing to apply it/);
  assert.deepEqual(fake.timeline, []);
});

test('an unknown version without metallb.manifest.sha256 is a preflight error', async () => {
  const { hosts } = setup();
  const d = deployment((x) => {
    x.spec.metallb!.version = 'v0.13.1';
    delete x.spec.metallb!.manifest;
  });
  const plan = await engine(d, hosts).plan();
  assert.ok(plan.problems.some((p) => p.severity === 'error' && p.path === 'metallb.version' && /no pinned checksum/.test(p.message)));
});

test('a pool the webhook denies fails at once with its message', async () => {
  const { hosts } = setup({ fake: new FakeCluster(0, 0, 'CIDR "10.0.0.1/24" overlaps with pool "other"') });
  await assert.rejects(engine(deployment(), hosts).apply(), /webhook rejected the configuration: .*overlaps with pool "other".*fix metallb\.pools/s);
});

test('a webhook that never becomes ready stops the wait within its bound, with where to look', async () => {
  const { fake, hosts } = setup({ fake: new FakeCluster(1e9) });
  const t0 = Date.now();
  await assert.rejects(
    engine(deployment(), hosts, { waitMs: 50, sleep: (ms) => new Promise((r) => setTimeout(r, ms)), pollMs: 5 }).apply(),
    /not ready within 0 s \(the webhook does not accept objects yet: .*connection refused\).*logs deploy\/controller/s,
  );
  assert.ok(Date.now() - t0 < 5_000);
  assert.ok(!fake.timeline.includes('IPAddressPool/default'));
});

test('with the API not up yet (fresh cluster), plan still shows the full install and says why', async () => {
  const { fake, hosts } = setup({ configs: { server1: null, server2: null } });
  fake.apiUp = false;
  const plan = await engine(deployment(), hosts).plan();
  assert.match(plan.steps[0]!.changes[0]!.summary, /does not answer yet: .*was refused/);
  assert.equal(plan.steps[0]!.changes.length, 3);
  assert.deepEqual(plan.problems, []);
});

test('servicelb state is read from list, string and comma-separated forms of disable', () => {
  assert.equal(servicelbState(null), 'absent');
  assert.equal(servicelbState('disable: [traefik, servicelb]\n'), 'disabled');
  assert.equal(servicelbState('disable: servicelb\n'), 'disabled');
  assert.equal(servicelbState('disable: "traefik,servicelb"\n'), 'disabled');
  assert.equal(servicelbState('token: x\n'), 'enabled');
});

test('a changed metallb.version upgrades MetalLB: the plan shows the upgrade, apply waits for the new controller and every speaker to roll out, then a re-plan is empty', async () => {
  const { fake, hosts } = setup();
  await engine(deployment(), hosts).apply();
  fake.timeline.length = 0;
  const v2 = deployment((x) => {
    x.spec.metallb!.version = 'v0.15.3';
    x.spec.metallb!.manifest = { sha256: sha(MANIFEST_V2) };
  });
  const e = engine(v2, hosts, { fetchManifest: async () => Buffer.from(MANIFEST_V2) });
  const plan = await e.plan();
  assert.deepEqual(plan.steps[0]!.changes.map((c) => `${c.action} ${'object' in c.target ? c.target.object : ''}: ${c.summary.replace(/, sha256 [0-9a-f]{12}…/, '').replace(/ \(up to .*/, '')}`), [
    'update metallb-system/metallb-native.yaml: apply MetalLB v0.15.3 manifest (upgrade from v0.14.9)',
    "run DaemonSet/metallb-system/speaker: wait until MetalLB's controller and every speaker run v0.15.3 (rollout status, up to 300 s each)",
    "run Deployment/metallb-system/controller: wait for MetalLB's controller and webhook",
  ]);
  assert.equal(plan.steps[0]!.changes[0]!.before, `v0.14.9 sha256 ${sha(MANIFEST)}`);
  assert.equal(plan.steps[0]!.changes[0]!.after, `v0.15.3 sha256 ${sha(MANIFEST_V2)}`);
  await e.apply(plan);
  assert.deepEqual(fake.timeline.slice(0, 4), ['manifest', 'record', 'rollout deployment/controller quay.io/metallb/controller:v0.15.3', 'rollout daemonset/speaker quay.io/metallb/controller:v0.15.3']);
  assert.deepEqual(fake.record, { version: 'v0.15.3', sha256: sha(MANIFEST_V2) });
  assert.equal((await engine(v2, hosts, { fetchManifest: async () => Buffer.from(MANIFEST_V2) }).plan()).empty, true);
});

test('a MetalLB upgrade whose new pods never roll out stops with the bound, where to look, and the old pods serving', async () => {
  const { fake, hosts } = setup();
  await engine(deployment(), hosts).apply();
  fake.rolloutFails = true;
  const v2 = deployment((x) => {
    x.spec.metallb!.version = 'v0.15.3';
    x.spec.metallb!.manifest = { sha256: sha(MANIFEST_V2) };
  });
  await assert.rejects(engine(v2, hosts, { fetchManifest: async () => Buffer.from(MANIFEST_V2) }).apply(), /deployment\/controller did not finish rolling out v0\.15\.3 within 300 s \(error: timed out waiting for the condition\); the bound is waits\.metallbReady; the old pods keep serving/);
});
