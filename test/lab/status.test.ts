// `k8s-ha status` against real machines (the lab with two load balancers
// and a keepalived virtual IP, MariaDB, the lab's k3s): healthy, then each
// kind of degradation the issue names, one at a time, each healed before the
// next: a server stopped, the datastore stopped, the primary load balancer
// stopped. The status collectors go through the real SSH transport.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import type { StatusHooks } from '../../src/cli/commands/status.js';
import { ClusterRun } from '../../src/cluster/open.js';
import { collectStatus } from '../../src/status/collect.js';
import { degradations, formatStatus, type StatusSnapshot } from '../../src/status/model.js';
import type { Lab } from '../../lab/index.js';
import { labSkipReason, withLab, skipOrFail } from '../../lab/testing.js';
import { runCli } from '../cli/helpers.js';

const REPO = resolve(import.meta.dirname, '../..');
const LAB_K3S = join(REPO, 'labk3s/bin/k3s');
const labSkip = await labSkipReason();

/** The lab's cluster file with the lab's k3s, without MetalLB (test/lab/metallb.test.ts covers it). */
function clusterFile(lab: Lab, dir: string): string {
  const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
  delete doc.metallb;
  doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S, airgapImages: join(REPO, 'labk3s/images/bin') } };
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

async function snapshot(lab: Lab, file: string): Promise<StatusSnapshot> {
  // A fresh run (fresh connections) each time, as `k8s-ha status` would be.
  const run = await ClusterRun.open(file, { env: process.env, connect: (h) => lab.connect(h.name, 5_000) });
  try {
    return await collectStatus({ deployment: run.deployment, host: (n) => run.engine.host(n) });
  } finally {
    await run.close();
  }
}

/** Poll status until `ok(degradations)`; the last snapshot either way. */
async function until(lab: Lab, file: string, what: string, timeoutMs: number, ok: (d: string[], s: StatusSnapshot) => boolean): Promise<StatusSnapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await snapshot(lab, file);
    if (ok(degradations(s), s)) return s;
    if (Date.now() > deadline) throw new Error(`${what} not seen within ${timeoutMs / 1000} s; last screen:\n${formatStatus(s)}`);
    await sleep(2000);
  }
}

async function scenario(t: TestContext): Promise<void> {
  await withLab({ lb2: true, servers: 2, agents: 1, skip: (r) => t.skip(r) }, async (lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-status-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = clusterFile(lab, dir);
    const run = await ClusterRun.open(file, { env: process.env, connect: (h) => lab.connect(h.name) });
    try {
      await run.apply();
    } finally {
      await run.close();
    }
    const healthy = (d: string[]) => d.length === 0;

    await t.test('a healthy lab: every host reachable, both LBs see both servers up, one VIP holder, datastore rows, nodes Ready; exit 0', async () => {
      const s = await until(lab, file, 'a healthy cluster', 120_000, healthy);
      for (const line of formatStatus(s).trimEnd().split('\n')) t.diagnostic(line);
      assert.equal(s.loadBalancers.length, 2);
      assert.ok(s.loadBalancers.every((lb) => lb.method === 'probe-from-lb' && lb.upstreams.every((u) => u.state === 'up')));
      assert.equal(s.vip?.holders.length, 1);
      assert.ok((s.datastores[0]?.kineRows ?? 0) > 0, 'kine has rows');
      assert.ok((s.datastores[0]?.sizeBytes ?? 0) > 0);
      assert.deepEqual(s.kube.nodes.map((n) => `${n.name}:${n.ready}`).sort(), ['agent1:true', 'server1:true', 'server2:true']);
      const hooks: StatusHooks = { open: { connect: (h) => lab.connect(h.name) } };
      const cli = await runCli(['status', '-f', file, '--json'], { cwd: dir, env: process.env, hooks });
      assert.equal(cli.code, 0, cli.stdout + cli.stderr);
      assert.equal((JSON.parse(cli.stdout) as { healthy: boolean }).healthy, true);
    });

    await t.test('a server stopped: named unreachable and as a down upstream on both load balancers; the CLI exits 1', async () => {
      await lab.stop('server2');
      try {
        const s = await until(lab, file, 'server2 down', 60_000, (d) => d.some((x) => x.startsWith('host server2')) && d.filter((x) => /upstream server2 is down/.test(x)).length === 2);
        for (const line of degradations(s)) t.diagnostic(line);
        assert.equal(s.kube.via, 'server1');
        const cli = await runCli(['status', '-f', file], { cwd: dir, env: process.env, hooks: { open: { connect: (h) => lab.connect(h.name, 5_000) } } });
        assert.equal(cli.code, 1);
        assert.match(cli.stdout, /DEGRADED \(\d+\):\n(.*\n)*  - host server2 \(/);
      } finally {
        await lab.start('server2');
      }
      await until(lab, file, 'healthy again after server2 came back', 180_000, healthy);
    });

    await t.test('the datastore stopped: named, while the rest of the screen is still shown', async () => {
      const ds = lab.machines.find((m) => m.roles.includes('datastore'))!.name;
      // Debian's mariadb.socket would start MariaDB again on the collector's
      // next connection: an outage stops both, as an operator's would.
      await lab.exec(ds, ['systemctl', 'stop', 'mariadb.socket', 'mariadb']);
      try {
        const s = await until(lab, file, 'the datastore down', 30_000, (d) => d.includes(`datastore on ${ds}: mariadb is not running`));
        for (const line of degradations(s)) t.diagnostic(line);
        assert.ok(s.hosts.every((h) => h.reachable));
      } finally {
        await lab.exec(ds, ['systemctl', 'start', 'mariadb.socket', 'mariadb']);
      }
      await until(lab, file, 'healthy again after the datastore came back', 180_000, healthy);
    });

    await t.test('the primary load balancer stopped: named, and the virtual IP is seen on the backup', async () => {
      const primary = lab.machines.find((m) => m.roles.includes('loadbalancer'))!.name;
      const s0 = await snapshot(lab, file);
      assert.deepEqual(s0.vip?.holders, [primary], 'the primary holds the VIP at first');
      await lab.exec(primary, ['systemctl', 'stop', 'nginx']);
      try {
        const s = await until(lab, file, 'the primary LB down and the VIP on lb2', 60_000, (d, x) => d.includes(`load balancer on ${primary}: nginx is not running`) && x.vip?.holders.join() === 'lb2');
        for (const line of formatStatus(s).trimEnd().split('\n')) t.diagnostic(line);
        // Failover worked: the VIP on lb2 is not itself a degradation.
        assert.ok(!degradations(s).some((d) => d.startsWith('virtual IP')));
      } finally {
        await lab.exec(primary, ['systemctl', 'start', 'nginx']);
      }
      await until(lab, file, 'healthy again after nginx came back', 60_000, healthy);
    });
  });
}

test('status on the lab: healthy and degraded', { skip: labSkip ? `no lab: ${labSkip}` : skipOrFail(existsSync(LAB_K3S) ? null : `${LAB_K3S} is missing: build it with scripts/build-labk3s.sh`) }, async (t) => {
  await scenario(t);
});
