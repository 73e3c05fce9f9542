import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hostKubectl } from '../src/kube/kubectl-host.js';
import { ClusterRun } from '../src/cluster/open.js';
import { runVerify } from '../src/verify/run.js';
import { labComponents } from '../lab/components.js';
import { labUp } from '../lab/index.js';
import { deployFailoverWeb, measureFailover } from '../lab/l2-failover.js';
import { machineCgroup } from '../lab/machine.js';
import { onBenchLab } from './lab.js';
import type { BenchResult } from './result.js';

const NAME = 'benchmlb';
const REPO = resolve(import.meta.dirname, '..');
const round = (s: number): number => Math.round(s * 100) / 100;

/** Resident memory of a machine as its v1 memory cgroup counts it, MiB. */
function machineRss(lab: string, machine: string): number | null {
  const f = join('/sys/fs/cgroup/memory', machineCgroup(lab, machine), 'memory.stat');
  if (!existsSync(f)) return null;
  const m = /^total_rss (\d+)$/m.exec(readFileSync(f, 'utf8'));
  return m ? round(Number(m[1]) / 1048576) : null;
}

/** The whole command, as a user runs it from the shell: exit code and seconds. */
function shell(argv: string[]): Promise<{ code: number | null; s: number; tail: string }> {
  const t0 = Date.now();
  return new Promise((done) => {
    const p = spawn(process.execPath, [join(REPO, 'bin/k8s-ha.js'), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
    p.stderr.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
    p.on('close', (code) => done({ code, s: round((Date.now() - t0) / 1000), tail: out.trim().split('\n').slice(-12).join('\n') }));
  });
}

/**
 * The seed topology on bare lab machines with the lab's k3s (real kubelets),
 * the lab's images by the air-gap path and MetalLB as published:
 * - `k8s-ha apply -f cluster.yaml --yes` from the shell, which ends with
 *   `verify` (exit 0 only when every check passed, HTTP on the MetalLB
 *   address included): bare machines to all nodes Ready and verify passing;
 * - `verify` again in-process (the figure of the checks alone);
 * - memory of each machine afterwards (real kubelets, MetalLB's pods);
 * - MetalLB L2 failover: the agent announcing a LoadBalancer address killed,
 *   then the next one powered off cleanly; the HTTP outage each time (goal ≤ 5 s).
 */
export async function benchMetallb(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  return onBenchLab(NAME, { labK3s: true }, async () => {
    const components = await labComponents(join(REPO, '.lab', 'components'), (l) => console.log(`  ${l}`));
    if (!components.airgapImages || !components.metallbManifest) throw new Error('the lab\'s images or MetalLB\'s manifest are missing (labk3s/images/build.sh, scripts/fetch-metallb.sh)');
    const lab = await labUp({ name: NAME, components });
    const file = lab.clusterFile;

    const apply = await shell(['apply', '-f', file, '--yes']);
    if (apply.code !== 0) throw new Error(`k8s-ha apply (with verify) exited ${apply.code}:\n${apply.tail}`);
    out.push({ name: 'bare lab machines to all 5 nodes Ready and verify passing (seed topology, real kubelets, MetalLB as published): `k8s-ha apply --yes` from the shell', value: apply.s, unit: 's', note: 'exit 0: every verify check passed, HTTP on the MetalLB address included' });

    const run = await ClusterRun.open(file, { connect: (h) => lab.connect(h.name) });
    try {
      const report = await runVerify({ deployment: run.deployment, host: (n) => run.engine.host(n), pollMs: 500 });
      if (!report.ok) throw new Error(`verify failed: ${report.checks.filter((c) => c.status !== 'pass').map((c) => `${c.id}: ${c.detail}`).join('; ')}`);
      out.push({ name: '`verify` of the seed topology, in-process (API, nodes, MetalLB address, HTTP from this machine)', value: round(report.ms / 1000), unit: 's', note: `${report.checks.length} checks passed` });
    } finally {
      await run.close();
    }

    for (const m of lab.machines) {
      const rss = machineRss(lab.name, m.name);
      if (rss !== null) out.push({ name: `memory of lab machine ${m.name} (${m.roles.join('+')}) with real kubelets and MetalLB running (resident, memory cgroup)`, value: rss, unit: 'MiB' });
    }

    const k = hostKubectl(await lab.connect('server1'));
    const image = components.verifyImage!;
    const address = await deployFailoverWeb(k, image, lab.machines.filter((m) => m.roles.includes('agent')).length);
    // A crash first (the case MetalLB's "a few seconds" is about), then a clean power-off of the next announcer.
    for (const hard of [true, false]) {
      const r = await measureFailover(lab, k, address, { hard });
      out.push({ name: `MetalLB L2 failover, the announcing agent ${hard ? 'killed (crash)' : 'powered off cleanly'}: ${r.from} -> ${r.to}, outage of HTTP to ${address} from this machine`, value: round(r.outageMs / 1000), unit: 's', target: 5, note: `${r.failed} requests failed (500 ms timeout, 100 ms apart)` });
    }
    await lab.down();
    return out;
  });
}
