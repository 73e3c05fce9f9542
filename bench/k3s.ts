import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import type { CliIO } from '../src/cli/io.js';
import { main } from '../src/cli/main.js';
import type { AnyPhase } from '../src/engine/phase.js';
import { applyPipeline } from '../src/cluster/pipelines.js';
import { ClusterRun, type Deployment } from '../src/cluster/open.js';
import { clientFor, fetchKubeconfigFromAny } from '../src/kube/fetch.js';
import { labUp } from '../lab/index.js';
import { machineCgroup } from '../lab/machine.js';
import { onBenchLab } from './lab.js';
import { LAB_K3S } from '../lab/components.js';
import type { BenchResult } from './result.js';
import { ensureBuilt, shell } from './startup.js';

const NAME = 'benchk3s';
const RUNS = 3;
const IMAGES = resolve(import.meta.dirname, '../labk3s/images/bin');

/** A machine's memory as its v1 memory cgroup counts it: resident (rss) and page cache, MiB. */
function machineMemory(lab: string, machine: string): { rss: number; cache: number } | null {
  const f = join('/sys/fs/cgroup/memory', machineCgroup(lab, machine), 'memory.stat');
  if (!existsSync(f)) return null;
  const stat = Object.fromEntries(readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]));
  const mib = (b: number | undefined): number => round((b ?? 0) / 1048576);
  return { rss: mib(stat.total_rss), cache: mib(stat.total_cache) };
}

const round = (s: number): number => Math.round(s * 100) / 100;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * The seed topology on the lab with the lab's k3s (labk3s/bin/k3s, uploaded
 * as install.source: local): bare machines to all five nodes Ready through
 * the LB, and a no-op `k8s-ha apply` (target ≤ 2 s). MetalLB is left out:
 * it has its own benchmark.
 */
export async function benchK3s(): Promise<{ name: string; value: number; unit: string; target?: number; note?: string }[]> {
  const out: BenchResult[] = [];
  ensureBuilt();
  return onBenchLab(NAME, { labK3s: true }, async () => {
    const lab = await labUp({ name: NAME });
    const file = join(lab.dir, 'bench-k3s.yaml');
    const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, unknown> & { k3s: Record<string, unknown> };
    delete doc.metallb;
    // The lab's images (pause, ...) through k8s-ha's air-gap path, as the lab's cluster file has them.
    doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S, ...(existsSync(IMAGES) ? { airgapImages: IMAGES } : {}) } };
    writeFileSync(file, stringify(doc));
    const phases: AnyPhase<Deployment>[] = applyPipeline().filter((p) => p.id !== 'metallb');
    const connect = { connect: (h: { name: string }) => lab.connect(h.name), phases };

    const t0 = Date.now();
    const run = await ClusterRun.open(file, connect);
    let infraMs = 0;
    try {
      const r = await run.apply();
      infraMs = r.ms;
      const kc = await fetchKubeconfigFromAny(run.deployment, (n) => run.engine.host(n));
      await clientFor(kc.kubeconfig).waitForReadyNodes(5, { timeoutMs: 300_000, intervalMs: 500 });
    } finally {
      await run.close();
    }
    out.push({ name: "bare machines to 5 nodes Ready through the LB (LB + MariaDB + lab's k3s with real kubelets, 155 MB binary and the lab's images uploaded)", value: round((Date.now() - t0) / 1000), unit: 's', note: `apply ${round(infraMs / 1000)} s of it` });

    // Memory of a machine running a real node (containerd, kubelet, kube-proxy, flannel) once settled.
    await new Promise((r) => setTimeout(r, 20_000));
    for (const m of ['server1', 'agent1']) {
      const mem = machineMemory(lab.name, m);
      if (mem) out.push({ name: `memory of lab machine ${m} with a real kubelet, no pods (resident, from its memory cgroup)`, value: mem.rss, unit: 'MiB', note: `plus ${mem.cache} MiB page cache` });
    }

    // Once per process (memoised after): the local binary's sha256.
    const th = Date.now();
    createHash('sha256').update(readFileSync(LAB_K3S)).digest('hex');
    out.push({ name: "sha256 of the lab's k3s binary on this machine (once per k8s-ha process, not in the figure below)", value: round((Date.now() - th) / 1000), unit: 's' });

    const noops: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = Date.now();
      const code = await main(['apply', '-f', file, '--yes', '--no-verify'], quietIO(), { open: connect });
      noops.push((Date.now() - t) / 1000);
      if (code !== 0) throw new Error(`the no-op apply exited ${code}`);
    }
    out.push({ name: 'no-op `k8s-ha apply` of the seed topology (LB, datastore, servers, agents)', value: round(median(noops)), unit: 's', target: 2, note: `median of ${RUNS}: ${noops.map((n) => n.toFixed(2)).join(', ')}` });

    // The same no-op, as `plan`: in-process, then a whole process from the
    // shell as a user runs it (built dist/, real SSH with the lab's keys).
    const plansIn: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = Date.now();
      const code = await main(['plan', '-f', file, '--detailed-exitcode'], quietIO(), { open: connect });
      plansIn.push((Date.now() - t) / 1000);
      if (code !== 0) throw new Error(`the no-op plan exited ${code} (3: changes pending)`);
    }
    const plansShell: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const r = shell(`${JSON.stringify(process.execPath)} ${resolve(import.meta.dirname, '../bin/k8s-ha.js')} plan -f ${file} --detailed-exitcode`);
      plansShell.push(r.wall / 1000);
      cpu.push(r.cpu);
    }
    out.push({ name: 'no-op `k8s-ha plan` of the seed topology, in-process', value: round(median(plansIn)), unit: 's', note: `median of ${RUNS}: ${plansIn.map((n) => n.toFixed(2)).join(', ')}` });
    out.push({ name: 'no-op `k8s-ha plan` of the seed topology, whole process from the shell (built dist/)', value: round(median(plansShell)), unit: 's', note: `median of ${RUNS}: ${plansShell.map((n) => n.toFixed(2)).join(', ')}; CPU time median ${Math.round(median(cpu))} ms` });
    await lab.down();
    return out;
  });
}

function quietIO(): CliIO {
  return { stdout: () => undefined, stderr: (t) => void process.stderr.write(t), env: process.env, cwd: process.cwd(), isTTY: false };
}
