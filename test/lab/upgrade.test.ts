// An upgrade on real machines (the lab: systemd-nspawn Debian 12, real
// nginx on two load balancers with a keepalived virtual IP, MariaDB, sshd,
// systemd, real kubelets on containerd, MetalLB), from one build of the lab's
// k3s to another that reports a newer version (scripts/build-labk3s.sh with
// LABK3S_VERSION): the refusals first (a downgrade, a skipped minor, a
// server down), then the rollout with two probes the whole time: the API
// through the virtual IP, and a two-replica Deployment (PodDisruptionBudget
// minAvailable 1) while its agents are drained, behind two MetalLB addresses:
// one a server announces (restarted, never cordoned: it must not move) and one
// the first drained agent announces (MetalLB moves it away at the cordon and
// back at the uncordon; a request open at that instant is reset, and only that
// is allowed).
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
import { httpStatus, l2Order } from '../../lab/l2-failover.js';
import { LEADER_LEASES, freshWithinMs, parseLeases } from '../../src/phases/k3s-leaders.js';
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
const NODES = ['server1', 'server2', 'agent1', 'agent2', 'agent3'];
/**
 * The two web addresses, taken from the lab's MetalLB pool (.200-.219) so the
 * announcing node is known whatever subnet the lab got: one that server2
 * announces (restarted, never cordoned: the address must not move) and one
 * that agent1 announces (cordoned by its drain: MetalLB moves the address
 * away, and back after the uncordon).
 */
function webAddresses(lab: Lab): { server: string; agent: string } {
  const base = lab.subnet.split('/')[0]!.split('.').slice(0, 3).join('.');
  const pool = Array.from({ length: 20 }, (_, i) => `${base}.${200 + i}`);
  const first = (node: string) => {
    const a = pool.find((x) => l2Order(x, NODES)[0] === node);
    if (!a) throw new Error(`no address of ${pool[0]}-${pool.at(-1)} is announced by ${node}`);
    return a;
  };
  return { server: first('server2'), agent: first('agent1') };
}

/** Two web pods on two agents, a budget that keeps one of them, and two LoadBalancer Services (see webAddresses) once both answer. */
async function deployWeb(lab: Lab, image: string): Promise<{ server: string; agent: string }> {
  const labels = { app: 'web' };
  const addresses = webAddresses(lab);
  const service = (name: string, ip: string) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS, annotations: { 'metallb.io/loadBalancerIPs': ip } },
    spec: { type: 'LoadBalancer', selector: labels, ports: [{ port: 80, targetPort: 80 }] },
  });
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
            // Kubernetes' default grace (30 s; it was 10 s here): busybox httpd as PID 1 ignores
            // SIGTERM, so the pod serves until the grace ends. CI 2026-12-01 saw a pod killed at 10 s
            // still listed by the endpoints: right after the servers' restarts no controller-manager
            // led. apply now waits for the leaders before each drain (src/phases/k3s-leaders.ts).
            terminationGracePeriodSeconds: 30,
            containers: [{ name: 'http', image, ports: [{ containerPort: 80 }], readinessProbe: { httpGet: { path: '/', port: 80 }, periodSeconds: 1 }, lifecycle: { preStop: { exec: { command: ['/bin/busybox', 'sleep', '4'] } } } }],
          },
        },
      },
    },
    { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'web', namespace: NS }, spec: { minAvailable: 1, selector: { matchLabels: labels } } },
    service('web-server', addresses.server),
    service('web-agent', addresses.agent),
  ];
  const k = hostKubectl(await lab.connect('server1'));
  await k.run(['apply', '-f', '-'], { stdin: objects.map((o) => JSON.stringify(o)).join('\n') });
  await waitFor('2 web pods ready', 180_000, async () => {
    const pods = await k.json<KubeList>(['get', 'pods', '-n', NS, '-l', 'app=web']);
    return pods.items.filter((p) => ((p.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')).length >= 2 || null;
  });
  for (const [name, ip] of [['web-server', addresses.server], ['web-agent', addresses.agent]] as const) {
    await waitFor(`${ip} on the ${name} Service`, 120_000, async () => {
      const svc = await k.json<{ status?: { loadBalancer?: { ingress?: { ip?: string }[] } } }>(['get', 'service', '-n', NS, name]);
      return svc.status?.loadBalancer?.ingress?.[0]?.ip === ip || null;
    });
    await waitFor(`HTTP from http://${ip}/`, 120_000, async () => ((await httpStatus(`http://${ip}/`, 2_000)) === 200 ? true : null));
  }
  return addresses;
}

/** Polls every 100 ms until stopped, counting failures (each a fresh connection). */
function prober(fn: () => Promise<unknown>): { stop(): Promise<{ probes: number; failures: { at: number; message: string }[] }> } {
  let probes = 0;
  let on = true;
  const failures: { at: number; message: string }[] = [];
  const loop = (async () => {
    while (on) {
      probes++;
      try {
        await fn();
      } catch (e) {
        failures.push({ at: Date.now(), message: (e as Error).message });
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

/** One read of a leader Lease: its holder and how old its renewTime was (the lab's machines share this host's clock). */
interface LeaseSample {
  at: number;
  name: string;
  holder: string;
  ageMs: number;
  durationS: number;
}

async function leaseHolders(kube: { raw(path: string): Promise<string> }): Promise<Omit<LeaseSample, 'at'>[]> {
  const leases = parseLeases(await kube.raw('/apis/coordination.k8s.io/v1/namespaces/kube-system/leases'));
  const now = Date.now();
  return LEADER_LEASES.map((name) => {
    const l = leases.get(name);
    return { name, holder: l?.holder ?? '', ageMs: l?.renewMs != null ? now - l.renewMs : Infinity, durationS: l?.leaseDurationS ?? 15 };
  });
}

/**
 * The intervals each Lease had no fresh holder in, from the observer's samples (a gap still open
 * at the end runs to the last sample), and who renewed it next: the same holder after a gap is a
 * late renewal (a loaded host), a new one a leadership that moved.
 */
function leaderGaps(samples: LeaseSample[]): { name: string; holder: string; next: string; from: number; to: number }[] {
  const out: { name: string; holder: string; next: string; from: number; to: number }[] = [];
  for (const name of LEADER_LEASES) {
    let open: { holder: string; from: number } | null = null;
    const mine = samples.filter((x) => x.name === name);
    for (const x of mine) {
      const fresh = freshWithinMs({ leaseDurationS: x.durationS });
      if (x.ageMs > fresh && !open) open = { holder: x.holder, from: Number.isFinite(x.ageMs) ? x.at - x.ageMs + fresh : x.at };
      else if (x.ageMs <= fresh && open) {
        out.push({ name, ...open, next: x.holder, to: x.at - x.ageMs });
        open = null;
      }
    }
    if (open) out.push({ name, ...open, next: '', to: mine.at(-1)!.at });
  }
  return out;
}

const leaseText = (ls: Omit<LeaseSample, 'at'>[]) => ls.map((l) => `${l.name} ${l.holder || 'no holder'} (renewed ${(l.ageMs / 1000).toFixed(1)} s ago)`).join(', ');

/** A change of the machine that answers ARP for an address, as this host saw it. */
interface Move {
  address: string;
  at: number;
  from: string;
  to: string;
}

/**
 * Watches what the web addresses depend on while the rollout runs, every 300 ms, and keeps
 * each change with its time: which machine answers ARP for each address (this host's
 * neighbour entry: a MetalLB announcer move shows as a new owner), the Service's
 * endpoints and pods with their nodes and conditions, and who holds the
 * kube-controller-manager and kube-scheduler Leases (the EndpointSlice controller and
 * the scheduler run only in the leaders). The lines go out with the test's
 * output (a failure in CI is diagnosed from them).
 */
function observeWeb(lab: Lab, kube: { raw(path: string): Promise<string> }, addresses: string[]): { stop(): Promise<{ lines: string[]; moves: Move[]; leases: LeaseSample[] }> } {
  const lines: string[] = [];
  const moves: Move[] = [];
  const leaseSamples: LeaseSample[] = [];
  let on = true;
  const loop = (async () => {
    const macs = new Map<string, string>();
    for (const n of NODES) macs.set((await lab.exec(n, ['cat', '/sys/class/net/host0/address'])).stdout.trim(), n);
    const lastNeigh = new Map<string, string>();
    const owner = new Map<string, string>();
    let lastEps = '';
    let lastPods = '';
    const lastLease = new Map<string, string>();
    const now = () => new Date().toISOString();
    while (on) {
      try {
        for (const address of addresses) {
          const neigh = (JSON.parse(execFileSync('ip', ['-j', 'neigh', 'show', address], { encoding: 'utf8' })) as { lladdr?: string; state?: string[] }[])[0];
          const who = neigh?.lladdr ? (macs.get(neigh.lladdr) ?? neigh.lladdr) : '';
          const n = neigh ? `${who || '-'} ${(neigh.state ?? []).join(',')}` : 'none';
          if (n !== lastNeigh.get(address)) lines.push(`${now()} arp ${address}: ${n}`);
          lastNeigh.set(address, n);
          const was = owner.get(address);
          if (who && was && who !== was) moves.push({ address, at: Date.now(), from: was, to: who });
          if (who) owner.set(address, who);
        }
        type Slices = { items: { endpoints?: { nodeName?: string; conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean } }[] }[] };
        const slices = JSON.parse(await kube.raw(`/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb-agent`)) as Slices;
        const eps = slices.items
          .flatMap((x) => x.endpoints ?? [])
          .map((e) => `${e.nodeName}:${e.conditions?.ready ? 'R' : '-'}${e.conditions?.serving ? 'S' : '-'}${e.conditions?.terminating ? 'T' : '-'}`)
          .sort()
          .join(' ');
        if (eps !== lastEps) lines.push(`${now()} endpoints: ${(lastEps = eps) || 'none'}`);
        type Pods = { items: { metadata: { name: string }; spec?: { nodeName?: string }; status?: { phase?: string; conditions?: { type: string; status: string }[] } }[] };
        const pods = (JSON.parse(await kube.raw(`/api/v1/namespaces/${NS}/pods`)) as Pods).items
          .map((p) => `${p.metadata.name.slice(-5)}@${p.spec?.nodeName ?? '-'}:${p.status?.phase ?? '?'}${(p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True') ? '/ready' : ''}`)
          .sort()
          .join(' ');
        if (pods !== lastPods) lines.push(`${now()} pods: ${(lastPods = pods) || 'none'}`);
        // The control plane's leaders: a line when a holder changes or its Lease goes stale / fresh again.
        const at = Date.now();
        for (const l of await leaseHolders(kube)) {
          const state = `${l.holder || 'no holder'}${l.ageMs > freshWithinMs({ leaseDurationS: l.durationS }) ? ' stale' : ''}`;
          if (state !== lastLease.get(l.name)) lines.push(`${now()} lease ${l.name}: ${state} (renewed ${(l.ageMs / 1000).toFixed(1)} s ago)`);
          lastLease.set(l.name, state);
          leaseSamples.push({ at, ...l });
        }
      } catch (e) {
        lines.push(`${now()} observe: ${(e as Error).message.slice(0, 100)}`);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  // Each server's kube-proxy: when it last programmed the Service rules, and the oldest update
  // it has not programmed yet (its metrics): a node that forwards to a pod already gone shows here.
  const proxies = (async () => {
    const last = new Map<string, string>();
    while (on) {
      for (const n of ['server1', 'server2']) {
        const r = await lab.exec(n, ['sh', '-c', 'curl -s --max-time 1 http://127.0.0.1:10249/metrics | grep -E "^kubeproxy_sync_proxy_rules_last_(queued_)?timestamp_seconds"'], { allowFailure: true }).catch(() => null);
        // One line per IP family; the newest of each kind counts.
        const newest = (kind: RegExp) => Math.max(0, ...(r?.stdout ?? '').split('\n').filter((l) => kind.test(l)).map((l) => Number(l.split(' ')[1]) || 0));
        const at = (x: number) => (x ? new Date(x * 1000).toISOString().slice(11, 23) : 'never');
        const v = r?.stdout.trim() ? `synced ${at(newest(/_last_timestamp/))}, last update queued ${at(newest(/_last_queued_timestamp/))}` : '';
        if (v !== last.get(n)) lines.push(`${new Date().toISOString()} kube-proxy ${n}: ${v || 'no metrics'}`);
        last.set(n, v);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      await proxies;
      return { lines, moves, leases: leaseSamples };
    },
  };
}

/**
 * Splits an address's failed probes into those a MetalLB announcer move explains and the rest.
 * A planned move (a cordon) resets a connection open at that instant: the client's next
 * packets go to the new node, which has no state for it. So a reset (ECONNRESET, "socket hang
 * up") from up to 1.5 s before to 0.5 s after a move was seen (the ARP poll's lag) is that,
 * one per move; any other failure, or a second one at the same move, is not.
 */
function explainByMoves(failures: { at: number; message: string }[], moves: Move[]): { atMove: string[]; other: string[] } {
  const used = new Set<Move>();
  const atMove: string[] = [];
  const other: string[] = [];
  for (const f of failures) {
    const m = /ECONNRESET|socket hang up/.test(f.message) ? moves.find((x) => !used.has(x) && f.at >= x.at - 1_500 && f.at <= x.at + 500) : undefined;
    const line = `${new Date(f.at).toISOString()} ${f.message}`;
    if (m) {
      used.add(m);
      atMove.push(`${line} (the address moved ${m.from} -> ${m.to})`);
    } else other.push(line);
  }
  return { atMove, other };
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
    const web = await deployWeb(lab, images.verifyImage);
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
    const steps: string[] = [];
    /** The wait for the leaders before each drain (k3s-leaders.ts): its info line, its measured time; and when server2 went back into the load balancers. */
    const leaderInfo: string[] = [];
    const leaderWaits: { host: string; at: number; ms: number }[] = [];
    const stepsDone: { at: number; host: string; summary: string }[] = [];
    const run = await open(lab, file, {
      events: (e) => {
        if (e.type === 'info' && e.message.startsWith('leaders before draining')) leaderInfo.push(`${new Date().toISOString()} ${e.message}`);
        if (e.type === 'change-done') {
          stepsDone.push({ at: Date.now(), host: e.host, summary: e.summary });
          if (e.summary.startsWith('wait until kube-controller-manager')) leaderWaits.push({ host: e.host, at: Date.now(), ms: e.ms });
        }
        if (e.type === 'change-start' || e.type === 'change-done') steps.push(`${new Date().toISOString()} ${e.type === 'change-start' ? 'start' : 'done '} ${e.host}: ${e.summary.slice(0, 90)}`);
        else if (e.type === 'info' || e.type === 'wait') steps.push(`${new Date().toISOString()} ${e.type} ${e.host}: ${e.message.slice(0, 120)}`);
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
    // Each agent: first the wait for the control plane's leaders, then the cordon (a pod evicted while none leads stays listed by its Services).
    for (const a of ['agent1', 'agent2', 'agent3']) {
      const seq = plan.steps.find((x) => x.phase === 'k3s-agents' && x.host === a)!.changes.map((c) => `${c.action} ${'object' in c.target ? c.target.object : ''}`);
      assert.deepEqual(seq.slice(0, 2), ['run Lease/kube-system/kube-controller-manager,kube-scheduler', `update Node/${a}`], seq.join('\n'));
    }
    const leasesBefore = await leaseHolders(kube);
    const api = prober(() => kube.raw('/version'));
    const webProbe = (ip: string) =>
      prober(async () => {
        const code = await httpStatus(`http://${ip}/`, 2_000);
        if (code !== 200) throw new Error(`HTTP ${code}`);
      });
    const onServer = webProbe(web.server);
    const onAgent = webProbe(web.agent);
    const observer = observeWeb(lab, kube, [web.server, web.agent]);
    const t0 = Date.now();
    type Result = Awaited<ReturnType<ReturnType<typeof prober>['stop']>>;
    let apiResult: Result;
    let serverResult: Result;
    let agentResult: Result;
    let observed: { lines: string[]; moves: Move[]; leases: LeaseSample[] };
    try {
      await run.apply(plan);
    } finally {
      const secs = (Date.now() - t0) / 1000;
      apiResult = await api.stop();
      serverResult = await onServer.stop();
      agentResult = await onAgent.stop();
      observed = await observer.stop();
      await run.close();
      const show = (r: Result) => `${r.failures.length} failed of ${r.probes}${r.failures.length ? ` (${r.failures.slice(0, 3).map((f) => `${new Date(f.at).toISOString()} ${f.message}`).join(' | ')})` : ''}`;
      t.diagnostic(`upgrade ${OLD.version} -> ${NEW.version} of 2 servers + 3 agents in ${secs.toFixed(1)} s; API through the virtual IP: ${show(apiResult)}; web behind ${web.server} (server2 announces): ${show(serverResult)}; web behind ${web.agent} (agent1 announces, moved by its drain): ${show(agentResult)}`);
    }
    // The leaders: who held the Leases before and after, how long each drain's wait took, and from when after server2 was back.
    const leasesAfter = await leaseHolders(kube);
    const server2Back = stepsDone.filter((x) => x.host === 'server2' && /put server2 back/.test(x.summary)).at(-1)?.at;
    t.diagnostic(`leases before the rollout: ${leaseText(leasesBefore)}; after: ${leaseText(leasesAfter)}`);
    for (const w of leaderWaits) t.diagnostic(`leader wait before draining ${w.host}: ${(w.ms / 1000).toFixed(1)} s, done ${server2Back ? `${((w.at - server2Back) / 1000).toFixed(1)} s after server2 went back into the load balancers` : '(server2 not seen going back)'}`);
    for (const l of leaderInfo) t.diagnostic(l);
    // What the observer saw at each drain's start: the youngest renewal of each leader Lease in the 2 s after it.
    for (const d of steps.filter((l) => / start (agent\d): drain node /.test(l))) {
      const at = Date.parse(d.slice(0, 24));
      const near = observed.leases.filter((x) => x.at >= at && x.at <= at + 2_000);
      t.diagnostic(`at ${d.slice(0, 24)} (${/start (agent\d)/.exec(d)![1]} drain starts) the observer saw: ${LEADER_LEASES.map((n) => { const xs = near.filter((x) => x.name === n); return xs.length ? `${n} ${xs[0]!.holder || 'no holder'} renewed ${(Math.min(...xs.map((x) => x.ageMs)) / 1000).toFixed(1)} s ago` : `${n} not sampled`; }).join(', ')}`);
    }
    // When no one led, as the observer saw it: from a holder's last renewal plus the freshness bound (5 s) until a fresh holder was seen.
    const gaps = leaderGaps(observed.leases);
    const drainStarts = steps.filter((l) => / start agent\d: drain node /.test(l)).map((l) => ({ at: Date.parse(l.slice(0, 24)), node: /start (agent\d)/.exec(l)![1]! }));
    for (const g of gaps) t.diagnostic(`no ${g.name} leader from ${new Date(g.from).toISOString()} to ${new Date(g.to).toISOString()} (${((g.to - g.from) / 1000).toFixed(1)} s, renewed last by ${g.holder || 'no holder'}, then by ${g.next || 'no one'}); the first drain started ${((drainStarts[0]?.at ?? NaN) - g.to) / 1000} s after it ended`);
    assert.deepEqual(leaderInfo.map((l) => / draining (\S+):/.exec(l)?.[1]), ['agent1', 'agent2', 'agent3'], 'each drain waited for the leaders first');
    // The property the wait is for: no drain starts while a leader Lease is stale and then changes
    // hands (its holder gone). A late renewal by the same holder (a loaded host) is not counted.
    const lost = gaps.filter((g) => g.next !== g.holder);
    assert.deepEqual(drainStarts.filter((d) => lost.some((g) => d.at > g.from && d.at < g.to)).map((d) => d.node), [], 'no drain starts while no controller-manager or scheduler leads');
    const moves = (ip: string) => observed.moves.filter((m) => m.address === ip);
    const serverWeb = explainByMoves(serverResult.failures, moves(web.server));
    const agentWeb = explainByMoves(agentResult.failures, moves(web.agent));
    t.diagnostic(`announcer moves: ${web.server}: ${moves(web.server).length}, ${web.agent}: ${moves(web.agent).map((m) => `${m.from} -> ${m.to}`).join(', ') || 'none'}; requests reset at a move: ${serverWeb.atMove.length + agentWeb.atMove.length}`);
    // Always shown (a failure in CI is diagnosed from it): the rollout's steps beside where the addresses and endpoints were.
    for (const l of [...steps, ...observed.lines].sort().filter((x) => !/ wait /.test(x))) t.diagnostic(l);
    // How long the rollout waited for new kubelets to report the new version (the Ready it saw meanwhile was the old kubelet's).
    const stale = steps.filter((l) => / wait .*still reports kubelet/.test(l));
    const staleHosts = [...new Set(stale.map((l) => / wait (\S+):/.exec(l)?.[1] ?? ''))];
    t.diagnostic(`polls where an upgraded node still reported its old kubelet version (the rollout waited): ${stale.length} (${staleHosts.join(', ') || 'none'})`);
    const lines = (r: Result) => r.failures.map((f) => `${new Date(f.at).toISOString()} ${f.message}`).join('\n');
    assert.equal(apiResult.failures.length, 0, `no API request through the load balancers fails during the rollout:\n${lines(apiResult)}`);
    // Restarted but never cordoned, server2 keeps its address: not one request to it fails.
    assert.deepEqual(moves(web.server), [], `${web.server} stays on server2`);
    assert.deepEqual(serverWeb.other, [], `no request to ${web.server} fails during the rollout`);
    // agent1's drain moves its address away and its uncordon back; nothing else fails.
    assert.deepEqual(moves(web.agent).map((m) => `${m.from} -> ${m.to}`).slice(0, 1), [`agent1 -> ${l2Order(web.agent, NODES.filter((n) => n !== 'agent1'))[0]}`], `agent1's cordon moves ${web.agent} to the next node in MetalLB's order`);
    assert.deepEqual(agentWeb.other, [], `no request to ${web.agent} fails during the rollout except one open at a move (drains included)`);
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
