// Real pods in the lab: the seed topology (LB + datastore, one server, two
// agents) applied through the CLI to bare lab machines, with the lab's k3s
// (labk3s/bin/k3s) running its node parts for real: Debian's containerd and
// runc, the upstream kubelet and kube-proxy v1.37.2 in-process, flannel
// vxlan between the machines. Images come through k8s-ha's air-gap path
// (k3s.install.airgapImages: labk3s/images/bin, imported by the lab's k3s at
// start). What must hold: every node Ready with containerd as its runtime
// and no kwok; a pod runs on each agent; a pod on agent1 reaches the pod on
// agent2 by its pod IP (vxlan); a ClusterIP Service answers from a pod and
// from a node; a NodePort Service answers this host on every node. The k3s
// options k8s-ha writes take effect: non-default cluster-cidr, service-cidr
// and cluster-dns (pod IPs, Service IPs, the pods' nameserver), node-label,
// node-taint, kubelet-arg (max-pods) and kube-proxy-arg (metrics address).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, stringify } from 'yaml';
import type { Lab } from '../../lab/index.js';
import { cgroupRoots, machineCgroup } from '../../lab/machine.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { diffSnapshots, snapshotHost } from '../../lab/snapshot.js';
import { labSkipReason, testLabLock, waitFor, withLab, skipOrFail } from '../../lab/testing.js';
import { sh } from '../../src/transport/quote.js';
import { runCli } from '../cli/helpers.js';

const REPO = resolve(import.meta.dirname, '../..');
const LAB_K3S = join(REPO, 'labk3s/bin/k3s');
const IMAGES = join(REPO, 'labk3s/images/bin');
const HTTPD = join(IMAGES, 'httpd.tar');
const labSkip = await labSkipReason();

/** The image name inside an archive (its docker manifest.json's RepoTags). */
function archiveTag(file: string): string {
  const m = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' })) as { RepoTags: string[] }[];
  const tag = m[0]?.RepoTags[0];
  if (!tag) throw new Error(`${file} names no image`);
  return tag;
}

function missing(): string | null {
  if (!existsSync(LAB_K3S)) return `${LAB_K3S} is missing: run scripts/build-labk3s.sh`;
  for (const f of ['pause.tar', 'httpd.tar']) if (!existsSync(join(IMAGES, f))) return `${join(IMAGES, f)} is missing: run labk3s/images/build.sh`;
  return null;
}

interface Node {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { taints?: { key: string; value?: string; effect: string }[]; podCIDR?: string };
  status: { conditions: { type: string; status: string }[]; capacity: Record<string, string>; nodeInfo: { containerRuntimeVersion: string; kubeletVersion: string } };
}
interface Pod {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string };
}

async function scenario(t: TestContext): Promise<void> {
  // Held around withLab (which takes it too), so no other test's lab muddles the comparison.
  const lock = await testLabLock();
  try {
    const clean = await snapshotHost();
    await pods(t);
    // Real kubelets made cgroups (kubepods, each container's) in every v1
    // controller of their machines, containerd mounted overlays and flannel
    // made devices: `lab down` must still leave nothing behind.
    await t.test('lab down leaves no machine, mount, link, cgroup or process behind after real kubelets ran', async () => {
      let diff: string[] = [];
      for (let i = 0; i < 20; i++) {
        diff = diffSnapshots(clean, await snapshotHost());
        if (!diff.length) break;
        await sleep(250);
      }
      assert.deepEqual(diff, []);
    });
  } finally {
    await lock.release();
  }
}

async function pods(t: TestContext): Promise<void> {
  await withLab({ servers: 1, agents: 2, skip: (r) => t.skip(r) }, async (lab: Lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-pods-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
    delete doc.metallb; // MetalLB has its own test
    doc.k3s = {
      ...doc.k3s, install: { source: 'local', path: LAB_K3S, airgapImages: IMAGES },
      clusterCidr: '10.52.0.0/16', serviceCidr: '10.53.0.0/16', clusterDns: '10.53.0.10',
      agentArgs: { 'kubelet-arg': ['max-pods=150'], 'kube-proxy-arg': ['metrics-bind-address=0.0.0.0:10249'] },
    };
    const hosts = doc.hosts as unknown as { name: string; labels?: Record<string, string>; taints?: string[] }[];
    for (const h of hosts) {
      if (h.name === 'agent1') h.labels = { 'lab.k8s-ha/tier': 'web' };
      if (h.name === 'agent2') h.taints = ['lab.k8s-ha/soft=yes:PreferNoSchedule'];
    }
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, stringify(doc));
    const server = await lab.connect('server1');
    t.after(() => server.close());
    const kubectl = async (args: string[], stdin?: string): Promise<string> => {
      const r = await server.exec(sh`k3s kubectl ${args}`, { stdin, allowFailure: true, timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
      return r.stdout;
    };
    const web = archiveTag(HTTPD);

    await t.test('apply through the CLI on bare machines: every node Ready with a real kubelet on containerd', async () => {
      const t0 = Date.now();
      const r = await runCli(['apply', '-f', file], { cwd: dir, env: process.env, hooks: { open: { connect: (h) => lab.connect(h.name) } } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      t.diagnostic(`bare machines to applied: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const nodes = await waitFor('3 nodes Ready', 120_000, async () => {
        const list = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as { items: Node[] };
        const ready = list.items.filter((n) => n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'));
        return ready.length === 3 ? list.items : null;
      });
      t.diagnostic(`bare machines to 3 nodes Ready: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      assert.deepEqual(nodes.map((n) => n.metadata.name).sort(), ['agent1', 'agent2', 'server1']);
      for (const n of nodes) {
        assert.match(n.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\/1\.\d+/, n.metadata.name);
        assert.equal(n.metadata.annotations?.['kwok.x-k8s.io/node'], undefined, `${n.metadata.name} is not simulated`);
      }
      // What a user sees: `kubectl get nodes -o wide` names containerd for each node.
      const wide = await kubectl(['get', 'nodes', '-o', 'wide']);
      for (const name of ['server1', 'agent1', 'agent2']) assert.match(wide, new RegExp(`^${name}\\s+Ready\\s.*containerd://`, 'm'), wide);
      const node = (n: string): Node => nodes.find((x) => x.metadata.name === n)!;
      // node-label and node-taint, registered by the kubelet itself.
      assert.equal(node('agent1').metadata.labels?.['lab.k8s-ha/tier'], 'web');
      assert.deepEqual(node('agent2').spec.taints?.map((x) => `${x.key}=${x.value}:${x.effect}`), ['lab.k8s-ha/soft=yes:PreferNoSchedule']);
      // kubelet-arg on agents only; the server keeps the kubelet's default.
      assert.equal(node('agent1').status.capacity.pods, '150');
      assert.equal(node('server1').status.capacity.pods, '110');
      // cluster-cidr: each node's pod subnet is a /24 of it.
      for (const n of nodes) assert.match(n.spec.podCIDR ?? '', /^10\.52\.\d+\.0\/24$/, n.metadata.name);
      // kube-proxy-arg: agents' kube-proxy serves metrics on every address (default: loopback only).
      const metrics = await fetch(`http://${lab.machine('agent1').address}:10249/metrics`, { signal: AbortSignal.timeout(5_000) });
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /kubeproxy_/);
      await assert.rejects(fetch(`http://${lab.machine('server1').address}:10249/metrics`, { signal: AbortSignal.timeout(3_000) }));
    });

    let pods: Pod[] = [];
    await t.test('a pod runs on each agent, from the air-gap images', async () => {
      const manifest = ['agent1', 'agent2'].map((n) => ({
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: `web-${n}`, labels: { app: 'web' } },
        spec: { nodeSelector: { 'kubernetes.io/hostname': n }, containers: [{ name: 'web', image: web, imagePullPolicy: 'Never', ports: [{ containerPort: 80 }] }] },
      }));
      await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifest }));
      pods = await waitFor('both web pods Running', 120_000, async () => {
        const list = JSON.parse(await kubectl(['get', 'pods', '-l', 'app=web', '-o', 'json'])) as { items: Pod[] };
        return list.items.length === 2 && list.items.every((p) => p.status.phase === 'Running' && p.status.podIP) ? list.items : null;
      });
      assert.deepEqual(pods.map((p) => p.spec.nodeName).sort(), ['agent1', 'agent2']);
      // Each pod has an address from its own node's flannel subnet (different /24s of 10.42.0.0/16).
      const nets = pods.map((p) => p.status.podIP?.split('.').slice(0, 3).join('.'));
      assert.notEqual(nets[0], nets[1]);
      for (const p of pods) assert.match(p.status.podIP ?? '', /^10\.52\./);
      // Each machine's kubelet keeps its pods' cgroups inside that machine's
      // own cgroup, in every controller: never a shared /kubepods at the host's root.
      for (const root of cgroupRoots().filter((r) => !r.endsWith('/systemd') && !r.endsWith('/unified'))) {
        for (const m of ['agent1', 'agent2']) assert.ok(existsSync(join(root, machineCgroup(lab.name, m), 'kubepods')), `${root}: ${m} has its own kubepods`);
        assert.equal(existsSync(join(root, 'kubepods')), false, `${root}/kubepods at the host's root`);
      }
      // cluster-dns: the kubelet gives pods that nameserver.
      const resolv = await kubectl(['exec', pods[0]!.metadata.name, '--', '/bin/busybox', 'cat', '/etc/resolv.conf']);
      assert.match(resolv, /^nameserver 10\.53\.0\.10$/m, resolv);
    });

    const get = (ip: string, port = 80) => `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5 ${ip} ${port}`;
    await t.test('pod-to-pod across the two agents (flannel vxlan)', async () => {
      const on1 = pods.find((p) => p.spec.nodeName === 'agent1')!;
      const on2 = pods.find((p) => p.spec.nodeName === 'agent2')!;
      const out = await kubectl(['exec', on1.metadata.name, '--', '/bin/busybox', 'sh', '-c', get(on2.status.podIP!)]);
      assert.match(out, /^HTTP\/1\.[01] 200/);
      assert.match(out, /busybox httpd/);
      // vxlan: agent1 has a flannel.1 device and a route to agent2's pod subnet through it.
      const a1 = await lab.connect('agent1');
      try {
        const routes = (await a1.exec(sh`ip route show dev flannel.1`)).stdout;
        assert.match(routes, new RegExp(`^${on2.status.podIP!.split('.').slice(0, 3).join('\\.')}\\.0/24 via`, 'm'), routes);
      } finally {
        await a1.close();
      }
    });

    await t.test('a ClusterIP Service answers from a pod and from a node; a NodePort Service answers this host on every node', async () => {
      await kubectl(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'v1', kind: 'List', items: [
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } },
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web-np' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ port: 80 }] } },
        ],
      }));
      const svc = JSON.parse(await kubectl(['get', 'service', 'web', '-o', 'json'])) as { spec: { clusterIP: string } };
      const np = JSON.parse(await kubectl(['get', 'service', 'web-np', '-o', 'json'])) as { spec: { ports: { nodePort: number }[] } };
      const ip = svc.spec.clusterIP;
      assert.match(ip, /^10\.53\./, 'service-cidr');
      const port = np.spec.ports[0]!.nodePort;
      const fromPod = await waitFor(`ClusterIP ${ip} from a pod`, 60_000, async () => {
        const out = await kubectl(['exec', pods[0]!.metadata.name, '--', '/bin/busybox', 'sh', '-c', get(ip)]);
        return /^HTTP\/1\.[01] 200/.test(out) ? out : null;
      });
      assert.match(fromPod, /busybox httpd/);
      const fromNode = await server.exec(sh`curl -sS -m 5 ${`http://${ip}/`}`);
      assert.match(fromNode.stdout, /busybox httpd/);
      for (const m of lab.machines.filter((x) => x.roles.includes('agent') || x.roles.includes('server'))) {
        const body = await waitFor(`NodePort ${m.address}:${port} from this host`, 60_000, async () => {
          const r = await fetch(`http://${m.address}:${port}/`, { signal: AbortSignal.timeout(5_000) });
          return r.ok ? r.text() : null;
        });
        assert.match(body, /busybox httpd/, m.name);
      }
    });
  });
}

test('real pods on the lab: seed topology through the CLI, nodes on containerd, pod-to-pod across agents, ClusterIP and NodePort', { skip: labSkip ?? skipOrFail(missing()), timeout: 15 * 60_000 }, scenario);
