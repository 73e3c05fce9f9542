// An upgrade on real machines (the lab: systemd-nspawn Debian 12, real
// nginx on two load balancers with a keepalived virtual IP, MariaDB, sshd,
// systemd, real kubelets on containerd, MetalLB), from one build of the lab's
// k3s to another that reports a newer version (scripts/build-labk3s.sh with
// LABK3S_VERSION): the refusals first (a downgrade, a skipped minor, a
// server down), then the rollout with two probes the whole time: the API
// through the virtual IP, and a two-replica Deployment (PodDisruptionBudget
// minAvailable 1) behind its MetalLB address while its agents are drained.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { ClusterRun } from '../../src/cluster/open.js';
import type { EventSink } from '../../src/engine/events.js';
import { clientFor, fetchKubeconfigFromAny } from '../../src/kube/fetch.js';
import { hostKubectl, type KubeList } from '../../src/kube/kubectl-host.js';
import type { Lab } from '../../lab/index.js';
import { LAB_IMAGES_DIR, LAB_METALLB_VERSION, labImages, labMetallbManifest } from '../../lab/components.js';
import { httpStatus } from '../../lab/l2-failover.js';
import { labSkipReason, waitFor, withLab } from '../../lab/testing.js';

const REPO = resolve(import.meta.dirname, '../..');
const OLD = { version: 'v1.37.2+k3s1', binary: join(REPO, 'labk3s/bin/k3s') };
const NEW = { version: 'v1.37.3+k3s1', binary: join(REPO, 'labk3s/bin/k3s-v1.37.3+k3s1') };
// validate holds a local binary to the version the file names, so each refusal
// gets a build reporting its version: a downgrade and a skipped minor.
const DOWN = { version: 'v1.36.9+k3s1', binary: join(REPO, 'labk3s/bin/k3s-v1.36.9+k3s1') };
const SKIP = { version: 'v1.39.0+k3s1', binary: join(REPO, 'labk3s/bin/k3s-v1.39.0+k3s1') };

async function clusterFile(lab: Lab, dir: string, k: { version: string; binary: string }): Promise<string> {
  const images = await labImages();
  if (!images) throw new Error(`the lab's images are not built in ${LAB_IMAGES_DIR}: run labk3s/images/build.sh`);
  const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
  doc.k3s = { ...doc.k3s, version: k.version, install: { source: 'local', path: k.binary, airgapImages: images.airgapImages } };
  doc.metallb = { ...doc.metallb, version: LAB_METALLB_VERSION, manifest: { file: (await labMetallbManifest(dir)).file } };
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

const open = (lab: Lab, file: string, o: { force?: boolean; events?: EventSink } = {}) =>
  ClusterRun.open(file, { env: process.env, connect: (h) => lab.connect(h.name), ...(o.force ? { run: { force: true } } : {}), ...(o.events ? { events: o.events } : {}) });

const NS = 'upgrade-web';
/** Two web pods on two agents behind a LoadBalancer address, a budget that keeps one of them, and the address once it answers. */
async function deployWeb(lab: Lab, image: string): Promise<string> {
  const labels = { app: 'web' };
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: NS },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            // On agents (the drains are what is tested), never two on one node.
            affinity: {
              nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'DoesNotExist' }] }] } },
              podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: labels }, topologyKey: 'kubernetes.io/hostname' }] },
            },
            // A pod being evicted keeps serving until every node's kube-proxy has dropped it
            // from the Service: the usual preStop pause of a web server that stops at once on SIGTERM.
            terminationGracePeriodSeconds: 10,
            containers: [{ name: 'http', image, ports: [{ containerPort: 80 }], readinessProbe: { httpGet: { path: '/', port: 80 }, periodSeconds: 1 }, lifecycle: { preStop: { exec: { command: ['/bin/busybox', 'sleep', '4'] } } } }],
          },
        },
      },
    },
    { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'web', namespace: NS }, spec: { minAvailable: 1, selector: { matchLabels: labels } } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NS }, spec: { type: 'LoadBalancer', selector: labels, ports: [{ port: 80, targetPort: 80 }] } },
  ];
  const k = hostKubectl(await lab.connect('server1'));
  await k.run(['apply', '-f', '-'], { stdin: objects.map((o) => JSON.stringify(o)).join('\n') });
  await waitFor('2 web pods ready', 180_000, async () => {
    const pods = await k.json<KubeList>(['get', 'pods', '-n', NS, '-l', 'app=web']);
    return pods.items.filter((p) => ((p.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')).length >= 2 || null;
  });
  const address = await waitFor('an address on the web Service', 120_000, async () => {
    const svc = await k.json<{ status?: { loadBalancer?: { ingress?: { ip?: string }[] } } }>(['get', 'service', '-n', NS, 'web']);
    return svc.status?.loadBalancer?.ingress?.[0]?.ip ?? null;
  });
  await waitFor(`HTTP from http://${address}/`, 120_000, async () => ((await httpStatus(`http://${address}/`, 2_000)) === 200 ? true : null));
  return address;
}

/** Polls every 100 ms until stopped, counting failures (each a fresh connection). */
function prober(fn: () => Promise<unknown>): { stop(): Promise<{ probes: number; failures: string[] }> } {
  let probes = 0;
  let on = true;
  const failures: string[] = [];
  const loop = (async () => {
    while (on) {
      probes++;
      try {
        await fn();
      } catch (e) {
        failures.push(`${new Date().toISOString()} ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      return { probes, failures };
    },
  };
}

async function planErrors(lab: Lab, file: string): Promise<string[]> {
  const run = await open(lab, file);
  try {
    return (await run.plan()).problems.filter((p) => p.severity === 'error').map((p) => p.message);
  } finally {
    await run.close();
  }
}

test('upgrade on the lab: refusals with the way out, then servers one at a time out of both load balancers and agents drained one at a time, the API and a Deployment behind MetalLB answering throughout', async (t) => {
  for (const k of [NEW, DOWN, SKIP]) {
    // More builds: the same code reporting another version (a relink from the Go cache). Always
    // asked: the script skips a build whose stamp matches the sources, and rebuilds a stale one
    // (a versioned build left from older sources would not be the code under test).
    if (!(await labSkipReason())) execFileSync('bash', [join(REPO, 'scripts/build-labk3s.sh')], { env: { ...process.env, LABK3S_VERSION: k.version }, stdio: 'inherit' });
  }
  const tLab = Date.now();
  await withLab({ lb2: true, skip: (r) => t.skip(r) }, async (lab) => {
    // Where the file's time goes (CI's budget): lab up, first install, the web Deployment, the refusals, the rollout.
    const stages: string[] = [`lab lock wait and lab up ${((Date.now() - tLab) / 1000).toFixed(0)} s`];
    let tStage = Date.now();
    const stage = (what: string) => {
      stages.push(`${what} ${((Date.now() - tStage) / 1000).toFixed(0)} s`);
      tStage = Date.now();
    };
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-upgrade-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    let file = await clusterFile(lab, dir, OLD);
    {
      const run = await open(lab, file);
      await run.apply();
      await run.close();
    }
    const kubeFor = async () => {
      const run = await open(lab, file);
      try {
        return clientFor((await fetchKubeconfigFromAny(run.deployment, (n) => run.engine.host(n))).kubeconfig, { freshConnections: true, timeoutMs: 5_000 });
      } finally {
        await run.engine.close();
      }
    };
    const kube = await kubeFor();
    await kube.waitForReadyNodes(5, { timeoutMs: 120_000 });
    stage('install');
    const images = (await labImages())!;
    const address = await deployWeb(lab, images.verifyImage);
    stage('web Deployment');

    // The refusals: nothing is touched, each says what to do.
    file = await clusterFile(lab, dir, DOWN);
    assert.ok((await planErrors(lab, file)).some((m) => /server1 runs k3s v1\.37\.2\+k3s1, and the cluster file says v1\.36\.9\+k3s1: k3s does not support downgrades/.test(m)));
    file = await clusterFile(lab, dir, SKIP);
    assert.ok((await planErrors(lab, file)).some((m) => /that skips 1 minor version/.test(m)));
    file = await clusterFile(lab, dir, NEW);
    await lab.exec('server2', ['systemctl', 'stop', 'k3s']);
    assert.ok((await planErrors(lab, file)).some((m) => /would start on an unhealthy cluster: k3s is not running on server2/.test(m)));
    await lab.exec('server2', ['systemctl', 'start', 'k3s']);
    await waitFor('server2 back', 120_000, async () => (await lab.exec('server2', ['systemctl', 'is-active', 'k3s'])).stdout.trim() === 'active' || null);
    await kube.waitForReadyNodes(5, { timeoutMs: 120_000 });

    stage('refusals');
    // The rollout, with the API (through the virtual IP) and the web address probed every 100 ms.
    // The rollout's steps with their times, shown when a probe failed (to tell which step it fell in).
    const timeline: string[] = [];
    const run = await open(lab, file, {
      events: (e) => {
        if (e.type === 'change-start' || e.type === 'change-done') timeline.push(`${new Date().toISOString()} ${e.type === 'change-start' ? 'start' : 'done '} ${e.host}: ${e.summary.slice(0, 90)}`);
        else if (e.type === 'info' || e.type === 'wait') timeline.push(`${new Date().toISOString()} ${e.type} ${e.host}: ${e.message.slice(0, 120)}`);
      },
    });
    const plan = await run.plan();
    assert.deepEqual(plan.problems.filter((p) => p.severity === 'error'), []);
    assert.deepEqual(plan.rollouts.filter((r) => r.phase.startsWith('k3s')).map((r) => [r.phase, r.batches]), [
      ['k3s-servers', [['server1'], ['server2']]],
      ['k3s-agents', [['agent1'], ['agent2'], ['agent3']]],
    ]);
    // Each server: out of both load balancers before its restart, back in after it is ready.
    for (const s of ['server1', 'server2']) {
      const seq = plan.steps.find((x) => x.phase === 'k3s-servers' && x.host === s)!.changes.map((c) => `${c.target.host} ${c.action} ${'object' in c.target ? c.target.object : 'unit' in c.target ? c.target.unit : ''}`);
      const restart = seq.indexOf(`${s} restart k3s`);
      assert.deepEqual(seq.slice(restart - 2, restart + 4), [`infra update lb-upstream/${s}`, `lb2 update lb-upstream/${s}`, `${s} restart k3s`, `${s} run k3s`, `infra update lb-upstream/${s}`, `lb2 update lb-upstream/${s}`], seq.join('\n'));
    }
    const api = prober(() => kube.raw('/version'));
    const web = prober(async () => {
      const code = await httpStatus(`http://${address}/`, 2_000);
      if (code !== 200) throw new Error(`HTTP ${code}`);
    });
    const t0 = Date.now();
    let apiResult: { probes: number; failures: string[] };
    let webResult: { probes: number; failures: string[] };
    try {
      await run.apply(plan);
    } finally {
      const secs = (Date.now() - t0) / 1000;
      apiResult = await api.stop();
      webResult = await web.stop();
      await run.close();
      const show = (r: { probes: number; failures: string[] }) => `${r.failures.length} failed of ${r.probes}${r.failures.length ? ` (${r.failures.slice(0, 3).join(' | ')})` : ''}`;
      t.diagnostic(`upgrade ${OLD.version} -> ${NEW.version} of 2 servers + 3 agents in ${secs.toFixed(1)} s; API through the virtual IP: ${show(apiResult)}; web Deployment behind ${address}: ${show(webResult)}`);
    }
    if (apiResult.failures.length || webResult.failures.length) for (const l of timeline.filter((x) => !/ wait /.test(x))) t.diagnostic(l);
    // How long the rollout waited for new kubelets to report the new version (the Ready it saw meanwhile was the old kubelet's).
    const stale = timeline.filter((l) => / wait .*still reports kubelet/.test(l));
    const staleHosts = [...new Set(stale.map((l) => / wait (\S+):/.exec(l)?.[1] ?? ''))];
    t.diagnostic(`polls where an upgraded node still reported its old kubelet version (the rollout waited): ${stale.length} (${staleHosts.join(', ') || 'none'})`);
    assert.equal(apiResult.failures.length, 0, `no API request through the load balancers fails during the rollout:\n${apiResult.failures.join('\n')}`);
    assert.equal(webResult.failures.length, 0, `no request to the Deployment fails during the rollout, drains included:\n${webResult.failures.join('\n')}`);
    type NodeList = { items: { metadata: { name: string }; spec?: { unschedulable?: boolean }; status: { nodeInfo: { kubeletVersion: string } } }[] };
    const nodes = (JSON.parse(await kube.raw('/api/v1/nodes')) as NodeList).items;
    assert.deepEqual(nodes.map((n) => `${n.metadata.name} ${n.status.nodeInfo.kubeletVersion}${n.spec?.unschedulable ? ' cordoned' : ''}`).sort(), ['agent1', 'agent2', 'agent3', 'server1', 'server2'].map((n) => `${n} ${NEW.version}`));
    for (const lb of ['infra', 'lb2']) assert.equal((await lab.exec(lb, ['test', '-e', '/var/lib/k8s-ha/lb-held'], { allowFailure: true })).code, 1, `${lb} holds no server out`);
    // Applied again: nothing to do.
    const again = await open(lab, file);
    assert.equal((await again.plan()).empty, true);
    await again.close();
    stage('rollout and checks');
    t.diagnostic(`stages: ${stages.join(', ')}`);
  });
});
