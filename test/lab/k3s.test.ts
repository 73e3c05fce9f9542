// k3s servers and agents on real machines (the lab: systemd-nspawn Debian
// 12 with sshd), through the real SSH transport, with the real nginx and
// MariaDB: the seed topology from bare machines, state shared through the
// datastore, the API through the LB with a server down, idempotence,
// rolling restarts observed from systemd's own timestamps, and the three
// failures that must explain themselves. Runs with the lab's k3s
// (labk3s/bin/k3s: upstream kine + kube-apiserver + controllers, real
// kubelets on containerd; images from labk3s/images/bin) and, when K8S_HA_REAL_K3S names a binary, with real k3s.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, stringify } from 'yaml';
import { PreflightError } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { AnyPhase } from '../../src/engine/phase.js';
import { applyPipeline } from '../../src/cluster/pipelines.js';
import { ClusterRun, type Deployment } from '../../src/cluster/open.js';
import type { KubeClient } from '../../src/kube/client.js';
import { clientFor, fetchKubeconfigFromAny } from '../../src/kube/fetch.js';
import { k3sAgentsPhase } from '../../src/phases/k3s-agents.js';
import { k3sServersPhase, type K3sPhaseOptions } from '../../src/phases/k3s-servers.js';
import type { Lab } from '../../lab/index.js';
import { labSkipReason, waitFor, withLab, skipOrFail } from '../../lab/testing.js';

const REPO = resolve(import.meta.dirname, '../..');
const LAB_K3S = join(REPO, 'labk3s/bin/k3s');
const labSkip = await labSkipReason();

interface Flavour {
  what: string;
  binary: string;
  images?: string;
}

/** The lab's cluster file with k3s from a local file, without MetalLB (its own phase and tests). */
function clusterFile(lab: Lab, dir: string, f: Flavour, k3sExtra: Record<string, unknown> = {}): string {
  const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, unknown> & { k3s: Record<string, unknown> };
  delete doc.metallb;
  doc.k3s = { ...doc.k3s, install: { source: 'local', path: f.binary, ...(f.images ? { airgapImages: f.images } : {}) }, ...k3sExtra };
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

const infraPhases = (): AnyPhase<Deployment>[] => applyPipeline().filter((p) => ['loadbalancer', 'vip', 'datastore'].includes(p.id));
const k3sPhases = (o: K3sPhaseOptions = {}): AnyPhase<Deployment>[] => [k3sServersPhase(o), k3sAgentsPhase(o)];

async function open(lab: Lab, file: string, phases: AnyPhase<Deployment>[], env: NodeJS.ProcessEnv = {}, events: EngineEvent[] = []): Promise<ClusterRun> {
  return ClusterRun.open(file, { env: { ...process.env, ...env }, connect: (h) => lab.connect(h.name), phases, events: (e) => void events.push(e) });
}

async function apply(lab: Lab, file: string, phases: AnyPhase<Deployment>[], env: NodeJS.ProcessEnv = {}): Promise<{ changed: number; ms: number }> {
  const run = await open(lab, file, phases, env);
  try {
    return await run.apply();
  } finally {
    await run.close();
  }
}

async function client(lab: Lab, file: string): Promise<KubeClient> {
  const run = await open(lab, file, []);
  try {
    // Fresh connections: each request is balanced by the LB anew.
    return clientFor((await fetchKubeconfigFromAny(run.deployment, (n) => run.engine.host(n))).kubeconfig, { freshConnections: true, timeoutMs: 10_000 });
  } finally {
    await run.engine.close();
  }
}

/** systemd's own record of the unit's last stop and last READY=1, in CLOCK_MONOTONIC µs (shared by every machine: one kernel). */
async function unitTimes(lab: Lab, host: string): Promise<{ stopped: number; ready: number }> {
  const r = await lab.exec(host, ['systemctl', 'show', 'k3s', '-p', 'ActiveExitTimestampMonotonic', '-p', 'ActiveEnterTimestampMonotonic']);
  const kv = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split('=') as [string, string]));
  return { stopped: Number(kv.ActiveExitTimestampMonotonic), ready: Number(kv.ActiveEnterTimestampMonotonic) };
}

const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);


async function scenario(t: TestContext, f: Flavour): Promise<void> {
  await withLab({ skip: (r) => t.skip(r) }, async (lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-k3s-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = clusterFile(lab, dir, f);
    const addr = (n: string) => lab.machine(n).address;
    const servers = ['server1', 'server2'];
    const agents = lab.machines.filter((m) => m.roles.includes('agent')).map((m) => m.name);

    await t.test('the seed topology is applied to bare machines and, through the LB, 2 servers + 3 agents are Ready', async () => {
      await apply(lab, file, infraPhases());
      const t0 = Date.now();
      await apply(lab, file, k3sPhases());
      const kube = await client(lab, file);
      assert.equal(kube.creds.server, `https://${lab.virtualIP ?? lab.machines.find((m) => m.roles.includes('loadbalancer'))!.address}:6443`);
      const nodes = await kube.waitForReadyNodes(5, { timeoutMs: 120_000 });
      t.diagnostic(`${f.what}: bare machines (LB + datastore done) to 5 Ready nodes in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      assert.deepEqual(nodes.map((n) => n.name).sort(), [...agents, ...servers].sort());
      assert.ok(nodes.every((n) => n.ready), JSON.stringify(nodes));
      for (const s of servers) {
        const st = await lab.exec(s, ['stat', '-c', '%a', '/etc/rancher/k3s/config.yaml']);
        assert.equal(st.stdout.trim(), '600');
      }
    });

    await t.test('an object created through server 1 is read through server 2 (state shared in MariaDB)', async () => {
      const kube = await client(lab, file);
      const s1 = kube.withServer(`https://${addr('server1')}:6443`);
      const s2 = kube.withServer(`https://${addr('server2')}:6443`);
      const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `through-s1-${Date.now()}`, namespace: 'default' }, data: { written: 'server1' } };
      await s1.create(cm);
      // FACTS: other servers see changes by polling about once a second.
      const got = await waitFor('the ConfigMap on server2', 10_000, () => s2.get<typeof cm>(`/api/v1/namespaces/default/configmaps/${cm.metadata.name}`));
      assert.deepEqual(got.data, { written: 'server1' });
      await s2.delete(cm);
    });

    await t.test('re-applying changes nothing and restarts nothing', async () => {
      const before = await Promise.all(servers.map((s) => unitTimes(lab, s)));
      const run = await open(lab, file, [...infraPhases(), ...k3sPhases()]);
      const t0 = Date.now();
      const plan = await run.plan();
      const planMs = Date.now() - t0;
      await run.close();
      assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => [s.host, s.changes.map((c) => c.summary)])));
      const r = await apply(lab, file, [...infraPhases(), ...k3sPhases()]);
      assert.equal(r.changed, 0);
      assert.deepEqual(await Promise.all(servers.map((s) => unitTimes(lab, s))), before);
      t.diagnostic(`no-op plan of LB + datastore + k3s phases: ${planMs} ms`);
    });

    await t.test('a changed server setting restarts the servers one at a time (systemd timestamps)', async () => {
      const changed = clusterFile(lab, dir, f, { serverArgs: { 'kube-apiserver-arg': ['max-requests-inflight=500'] } });
      const t0 = monotonicUs();
      await apply(lab, changed, k3sPhases());
      const [a, b] = await Promise.all(servers.map((s) => unitTimes(lab, s)));
      assert.ok(a!.stopped > t0 && b!.stopped > t0, 'both servers restarted during this apply');
      assert.ok(b!.stopped > a!.ready, `server2 stopped at ${b!.stopped} µs, before server1 was ready again at ${a!.ready} µs`);
      t.diagnostic(`server1 down ${((a!.ready - a!.stopped) / 1e6).toFixed(1)} s; server2 stopped ${((b!.stopped - a!.ready) / 1e6).toFixed(1)} s after server1 was ready`);
      await (await client(lab, file)).waitForReadyNodes(5, { timeoutMs: 60_000 });
    });

    await t.test('with server 1 stopped the API still answers through the LB', async () => {
      await lab.stop('server1');
      try {
        const kube = await client(lab, file);
        for (let i = 0; i < 10; i++) assert.ok((await kube.nodes()).length >= 4);
      } finally {
        await lab.start('server1');
      }
      const kube = await client(lab, file);
      await waitFor('server1 ready again', 120_000, async () => ((await kube.withServer(`https://${addr('server1')}:6443`).raw('/readyz')) === 'ok' ? true : null));
    });

    await t.test('an agent that cannot reach a server directly is named with that server', async () => {
      const agent = agents.at(-1)!;
      await lab.exec(agent, ['ip', 'route', 'add', 'prohibit', `${addr('server2')}/32`]);
      try {
        await assert.rejects(apply(lab, file, k3sPhases()), (e: Error) => {
          assert.ok(e instanceof PreflightError, e.message);
          t.diagnostic(e.message);
          assert.match(e.message, new RegExp(`${agent} cannot reach server2 \\(${addr('server2').replace(/\./g, '\\.')}:6443: `));
          assert.match(e.message, /talk to every server's 6443 directly/);
          return true;
        });
      } finally {
        await lab.exec(agent, ['ip', 'route', 'del', 'prohibit', `${addr('server2')}/32`]);
      }
    });

    await t.test('a server that cannot reach the datastore fails after the bounded wait, naming host, last error and journal', async () => {
      const ds = lab.machines.find((m) => m.roles.includes('datastore'))!;
      await lab.exec('server1', ['ip', 'route', 'add', 'prohibit', `${ds.address}/32`]);
      try {
        // Back to the original setting: a restart that cannot come back.
        clusterFile(lab, dir, f);
        await assert.rejects(apply(lab, file, [k3sServersPhase({ readyTimeoutMs: 20_000 })]), (e: Error) => {
          t.diagnostic(e.message);
          assert.match(e.message, /server1: k3s server not ready within 20 s; last seen: /);
          assert.match(e.message, /last lines of the journal:/);
          assert.match(e.message, new RegExp(`cannot reach the datastore \\(${ds.address.replace(/\./g, '\\.')}:3306\\)`));
          return true;
        });
      } finally {
        await lab.exec('server1', ['ip', 'route', 'del', 'prohibit', `${ds.address}/32`]);
      }
      const kube = await client(lab, file);
      await waitFor('server1 ready again', 120_000, async () => ((await kube.withServer(`https://${addr('server1')}:6443`).raw('/readyz')) === 'ok' ? true : null));
      await apply(lab, file, k3sPhases());
    });

    await t.test('a wrong token is refused before any change, and a fresh server on a datastore with another token says so at once', async () => {
      const wrong = join(dir, 'cluster.yaml');
      const right = readFileSync(wrong, 'utf8');
      writeFileSync(wrong, right.replace(/token: generate/, 'token: ${env:K8S_HA_LAB_WRONG_TOKEN}'));
      const env = { K8S_HA_LAB_WRONG_TOKEN: 'notTheTokenOfThisCluster0123456789' };
      try {
        await assert.rejects(apply(lab, wrong, k3sPhases(), env), (e: Error) => e instanceof PreflightError && /server1 \(\/var\/lib\/rancher\/k3s\/server\/token\) already belongs to a k3s cluster made with a different token/.test(e.message));
        // server2 made fresh (its k3s state wiped), the datastore kept.
        await lab.exec('server2', ['sh', '-c', 'systemctl stop k3s; rm -rf /var/lib/rancher/k3s/server /etc/rancher/k3s/k3s.yaml']);
        const only2 = { ...k3sServersPhase({ readyTimeoutMs: 60_000 }), targets: () => ['server2'] };
        const t0 = Date.now();
        await assert.rejects(apply(lab, wrong, [only2], env), (e: Error) => {
          t.diagnostic(e.message);
          assert.match(e.message, /server2: k3s refused to start: "bootstrap data already found and encrypted with different token"/);
          assert.match(e.message, /hint: either give k8s-ha the cluster's original token/);
          return true;
        });
        assert.ok(Date.now() - t0 < 50_000, 'the token failure was recognised before the timeout');
      } finally {
        writeFileSync(wrong, right);
      }
      await apply(lab, file, k3sPhases());
      await (await client(lab, file)).waitForReadyNodes(5, { timeoutMs: 120_000 });
      const r = await apply(lab, file, [...infraPhases(), ...k3sPhases()]);
      assert.equal(r.changed, 0);
    });
  });
}

test("k3s on the lab with the lab's k3s", { skip: labSkip ? `no lab: ${labSkip}` : skipOrFail(existsSync(LAB_K3S) ? null : `${LAB_K3S} is missing: build it with scripts/build-labk3s.sh`) }, async (t) => {
  await scenario(t, { what: "the lab's k3s", binary: LAB_K3S, images: join(REPO, 'labk3s/images/bin') });
});

const real = process.env.K8S_HA_REAL_K3S;
test('k3s on the lab with real k3s', { skip: labSkip ? `no lab: ${labSkip}` : real ? false : 'K8S_HA_REAL_K3S is not set: real k3s cannot be downloaded here; set it to a k3s binary (and K8S_HA_REAL_K3S_IMAGES to its air-gap images) to run this scenario against real k3s' }, async (t) => {
  await scenario(t, { what: 'real k3s', binary: resolve(real!), images: process.env.K8S_HA_REAL_K3S_IMAGES });
});
