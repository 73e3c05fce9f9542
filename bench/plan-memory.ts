import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterRun } from '../src/engine/run.js';
import { MemoryHost } from '../src/transport/memory.js';
import type { BenchResult } from './result.js';

/**
 * `plan` over 50 in-memory hosts (target < 1 s): the cost of k8s-ha's own
 * work — loading, rendering, diffing — with no network in the way.
 */
export async function benchPlanMemory(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-bench-'));
  try {
    const file = join(dir, 'big.yaml');
    writeFileSync(file, bigCluster(50));
    const hosts = new Map<string, MemoryHost>();
    const open = () =>
      ClusterRun.open(file, {
        env: {},
        concurrency: 10,
        connect: async (h) => {
          let m = hosts.get(h.name);
          if (!m) hosts.set(h.name, (m = new MemoryHost({ name: h.name, address: h.address })));
          return m;
        },
      });
    // One warm-up (module loading, JIT), then the median of five.
    await (await open()).plan();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const run = await open();
      const t0 = performance.now();
      await run.plan();
      times.push(performance.now() - t0);
      await run.close();
    }
    times.sort((a, b) => a - b);
    return [{ name: 'plan, 50 in-memory hosts (median of 5)', value: Math.round(times[2]!), unit: 'ms', target: 1000, better: 'lower' }];
  } finally {
    rmSync(dir, { recursive: true, force: true });
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
