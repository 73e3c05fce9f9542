import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterRun } from '../src/cluster/open.js';
import { simulatedFleet } from '../test/support/fleet.js';
import { offlineCluster } from '../test/support/offline-example.js';
import type { BenchResult } from './result.js';

/**
 * The full pipeline over 50 in-memory hosts (test/support/fleet.ts: bare
 * Debian 12 machines that answer every command the phases send): the cost
 * of k8s-ha's own work — loading, observing, rendering, diffing, applying —
 * with no network in the way. Targets: plan < 1 s (issue 2).
 */
export async function benchPlanMemory(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-bench-'));
  try {
    // k3s and MetalLB from local files: the bench needs no network.
    const { file, text } = offlineCluster({ text: bigCluster(50) }, dir, 'big.yaml');
    const fleet = simulatedFleet(text);
    const open = () => ClusterRun.open(file, { env: {}, concurrency: 10, connect: fleet.connect });
    const median = async (what: (run: ClusterRun) => Promise<unknown>): Promise<number> => {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const run = await open();
        const t0 = performance.now();
        await what(run);
        times.push(performance.now() - t0);
        await run.close();
      }
      return Math.round(times.sort((a, b) => a - b)[2]!);
    };
    // One warm-up (module loading, JIT, hashing the binary once), then the median of five.
    await withRun(open, (r) => r.plan());
    const bare = await median(async (r) => {
      const p = await r.plan();
      if (p.empty || p.problems.some((x) => x.severity === 'error')) throw new Error(`the plan on bare hosts is ${p.empty ? 'empty' : JSON.stringify(p.problems)}`);
    });
    const t0 = performance.now();
    const first = await withRun(open, (r) => r.apply());
    const firstMs = Math.round(performance.now() - t0);
    const noopPlan = await median((r) => r.plan());
    const noopApply = await median(async (r) => {
      const a = await r.apply();
      if (a.changed !== 0) throw new Error(`a re-apply changed ${a.changed} things`);
    });
    return [
      { name: 'plan, 50 bare in-memory hosts (median of 5)', value: bare, unit: 'ms', target: 1000, better: 'lower' },
      { name: 'no-op apply, 50 in-memory hosts after a first apply (median of 5)', value: noopApply, unit: 'ms', note: `no-op plan ${noopPlan} ms; the first apply (${first.changed} changes) took ${firstMs} ms` },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function withRun<T>(open: () => Promise<ClusterRun>, fn: (r: ClusterRun) => Promise<T>): Promise<T> {
  const run = await open();
  try {
    return await fn(run);
  } finally {
    await run.close();
  }
}

export function bigCluster(n: number): string {
  const hosts = [`  - {name: infra, address: 10.77.0.10, roles: [loadbalancer, datastore]}`];
  for (let i = 1; i <= 3; i++) hosts.push(`  - {name: server${i}, address: 10.77.0.${10 + i}, roles: [server]}`);
  for (let i = 1; i <= n - 4; i++) hosts.push(`  - {name: agent${i}, address: 10.77.1.${i}, roles: [agent]}`);
  return `apiVersion: k8s-ha/v1
name: big
ssh: {user: root}
hosts:
${hosts.join('\n')}
loadBalancer: {kind: nginx}
datastore: {kind: mariadb}
k3s: {version: v1.31.4+k3s1, disable: [servicelb, traefik]}
metallb:
  version: v0.14.9
  pools: [{name: default, addresses: [10.77.2.100-10.77.2.150]}]
`;
}
