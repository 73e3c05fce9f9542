import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { VerifyHooks } from '../../src/cli/commands/verify.js';
import type { KubeItem } from '../../src/kube/kubectl-host.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { runCli, tempDir } from './helpers.js';

const seed = join(import.meta.dirname, '../../examples/seed.yaml');
const NODES = ['server1', 'server2', 'agent1', 'agent2', 'agent3'];

/** The seed's hosts; the servers answer `k3s kubectl` for a cluster whose nodes are `ready`. */
function cluster(ready: (node: string) => boolean): Map<string, MemoryHost> {
  const hosts = new Map<string, MemoryHost>();
  let polls = 0;
  ['infra', ...NODES].forEach((n, i) => {
    const h = new MemoryHost({ name: n, address: `192.168.0.${156 + i}` });
    h.handle(/k3s kubectl /, (cmd) => {
      const t = cmd.text;
      if (t.includes('/readyz')) return ok('ok');
      if (t.includes('get nodes')) {
        const items: KubeItem[] = NODES.map((name) => ({ metadata: { name }, status: { conditions: [{ type: 'Ready', status: ready(name) ? 'True' : 'False', reason: 'KubeletNotReady' }] } }));
        return ok(JSON.stringify({ items }));
      }
      if (t.includes('service/k8s-ha-verify')) return ok(JSON.stringify({ metadata: { name: 'k8s-ha-verify' }, status: { loadBalancer: ++polls > 1 ? { ingress: [{ ip: '192.168.0.171' }] } : {} } }));
      return ok();
    });
    hosts.set(n, h);
  });
  return hosts;
}

function hooks(hosts: Map<string, MemoryHost>): VerifyHooks {
  return {
    open: { connect: async (h) => hosts.get(h.name)! },
    verify: { httpGet: async () => 200, sleep: async () => {}, pollMs: 0, timeouts: { nodesMs: 20, addressMs: 20, httpMs: 20, apiMs: 20 } },
  };
}

test('verify on a healthy cluster prints each check as it finishes, a summary, and exits 0', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const r = await runCli(['verify'], { cwd: dir, hooks: hooks(cluster(() => true)) });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^Verifying cluster seed\.\.\.\n/);
  assert.match(r.stdout, /PASS {2}every node is Ready \(\d+\.\d s\)\n {7}5\/5 nodes Ready/);
  assert.match(r.stdout, /PASS {2}a LoadBalancer Service gets an address from the pool .*\n {7}192\.168\.0\.171 from pool default/);
  assert.match(r.stdout, /PASS {2}the test objects are removed/);
  assert.match(r.stdout, /Cluster verified: 6 passed, 0 failed, 0 skipped, in /);
});

test('verify --json prints the report as data and exits 1 when a node is not Ready', async (t) => {
  const dir = tempDir(t);
  copyFileSync(seed, join(dir, 'cluster.yaml'));
  const r = await runCli(['verify', '--json'], { cwd: dir, hooks: hooks(cluster((n) => n !== 'agent3')) });
  assert.equal(r.code, 1);
  const j = JSON.parse(r.stdout) as { ok: boolean; checks: { id: string; status: string; detail: string; ms: number }[] };
  assert.equal(j.ok, false);
  const nodes = j.checks.find((c) => c.id === 'nodes-ready')!;
  assert.equal(nodes.status, 'fail');
  assert.match(nodes.detail, /agent3: not Ready \(KubeletNotReady\)/);
  assert.ok(j.checks.every((c) => typeof c.ms === 'number'));
  assert.equal(j.checks.at(-1)!.id, 'cleanup');
});

test('verify --help explains the drill and the exit code; apply --help mentions --no-verify', async (t) => {
  const dir = tempDir(t);
  const v = await runCli(['verify', '--help'], { cwd: dir });
  assert.equal(v.code, 0);
  assert.match(v.stdout, /--drill/);
  assert.match(v.stdout, /Exit code 1 when a check fails/);
  const a = await runCli(['apply', '--help'], { cwd: dir });
  assert.match(a.stdout, /--no-verify/);
});

test('verify with an unknown flag is a usage error (exit 2) pointing at --help', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['verify', '--drills'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /verify: unknown option '--drills'.*k8s-ha verify --help/);
});
