// MetalLB on real machines (the lab: systemd-nspawn Debian with the real
// nginx, MariaDB and the lab's k3s: upstream kube-apiserver on kine, kwok
// nodes). What the lab can really prove: MetalLB's manifest and our pools
// accepted by a real API server with MetalLB's CRDs; MetalLB's real
// controller (go.universe.tf/metallb/controller, run as a process on a
// server machine, since kwok runs no container) assigning an address from
// the pool; and `verify` end to end, its HTTP check skipped visibly because
// no pod really runs, and its drill stopping each server in turn.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse, stringify } from 'yaml';
import { ClusterRun } from '../../src/cluster/open.js';
import { hostKubectl, type KubeItem, type KubeList } from '../../src/kube/kubectl-host.js';
import { METALLB_RECORD } from '../../src/phases/metallb.js';
import { poolOf } from '../../src/verify/checks.js';
import { formatReport } from '../../src/verify/report.js';
import { runVerify } from '../../src/verify/run.js';
import type { Lab } from '../../lab/index.js';
import { labSkipReason, waitFor, withLab } from '../../lab/testing.js';
import { LAB_K3S, LAB_METALLB_VERSION, labMetallbController, labMetallbManifest, startLabMetallbController } from '../../lab/components.js';

const VERSION = LAB_METALLB_VERSION;
const CONTROLLER = labMetallbController(VERSION);
const labSkip = await labSkipReason();

async function clusterFile(lab: Lab, dir: string): Promise<string> {
  const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
  doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S } };
  doc.metallb = { ...doc.metallb, version: VERSION, manifest: await labMetallbManifest(dir, VERSION) };
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

async function open(lab: Lab, file: string): Promise<ClusterRun> {
  return ClusterRun.open(file, { env: process.env, connect: (h) => lab.connect(h.name) });
}


async function scenario(t: TestContext): Promise<void> {
  await withLab({ servers: 2, agents: 1, skip: (r) => t.skip(r) }, async (lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-metallb-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    let file: string;
    try {
      file = await clusterFile(lab, dir);
    } catch (e) {
      // No Go module proxy (or no Go): nothing to install, so nothing to prove here.
      return t.skip(`the MetalLB ${VERSION} manifest could not be fetched with scripts/fetch-metallb.sh: ${(e as Error).message.split('\n')[0]}`);
    }
    const kubectl = async () => hostKubectl(await lab.connect('server1'));

    await t.test("the whole pipeline ends with MetalLB: its CRDs, controller and our pools accepted by the real API server", async () => {
      const run = await open(lab, file);
      try {
        const t0 = Date.now();
        await run.apply();
        t.diagnostic(`bare lab to MetalLB configured: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      } finally {
        await run.close();
      }
      const k = await kubectl();
      const pools = await k.json<KubeList>(['get', '-n', 'metallb-system', 'ipaddresspools.metallb.io']);
      assert.deepEqual(pools.items.map((p) => [p.metadata.name, p.spec?.addresses]), [['default', [lab.metallbRange]]]);
      const l2 = await k.json<KubeList>(['get', '-n', 'metallb-system', 'l2advertisements.metallb.io']);
      assert.deepEqual(l2.items.map((p) => p.spec?.ipAddressPools), [['default']]);
      const rec = await k.json<KubeItem>(['get', '-n', 'metallb-system', `configmap/${METALLB_RECORD}`]);
      assert.equal(rec.data?.version, VERSION);
      // The CRD's schema is enforced by the real API server: a malformed pool is refused.
      const bad = await k.run(['apply', '-f', '-'], { stdin: JSON.stringify({ apiVersion: 'metallb.io/v1beta1', kind: 'IPAddressPool', metadata: { name: 'bad', namespace: 'metallb-system' }, spec: { addresses: 'not-a-list' } }), allowFailure: true });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /addresses/);
    });

    await t.test('re-applying the whole pipeline changes nothing', async () => {
      const run = await open(lab, file);
      try {
        const plan = await run.plan();
        assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => [s.phase, s.host, s.changes.map((c) => c.summary)])));
      } finally {
        await run.close();
      }
    });

    const noController = existsSync(CONTROLLER) ? false : `${CONTROLLER} is missing: build it with labk3s/metallb/build.sh ${VERSION} (Go module proxy, ~3 min cold)`;
    await t.test("MetalLB's real controller, run on server1, assigns a LoadBalancer Service an address from the pool", { skip: noController }, async () => {
      assert.equal(await startLabMetallbController(lab, VERSION), 'server1');
      const k = await kubectl();
      await k.run(['apply', '-f', '-'], { stdin: JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'lab-lb', namespace: 'default' }, spec: { type: 'LoadBalancer', selector: { app: 'none' }, ports: [{ port: 80 }] } }) });
      const ip = await waitFor('an address on default/lab-lb', 90_000, async () => {
        const svc = await k.json<{ status?: { loadBalancer?: { ingress?: { ip: string }[] } } }>(['get', 'service', 'lab-lb']);
        return svc.status?.loadBalancer?.ingress?.[0]?.ip ?? null;
      });
      assert.equal(poolOf(ip, [{ name: 'default', addresses: [lab.metallbRange] }]), 'default', `${ip} is in ${lab.metallbRange}`);
      t.diagnostic(`MetalLB's controller assigned ${ip}`);
      await k.run(['delete', 'service', 'lab-lb']);
    });

    await t.test('verify: API, nodes, an address from the pool, the HTTP check skipped visibly (kwok), and the drill', { skip: noController }, async () => {
      const run = await open(lab, file);
      try {
        const report = await runVerify({ deployment: run.deployment, host: (n) => run.engine.host(n), drill: true, pollMs: 1000 });
        for (const line of formatReport(report).trimEnd().split('\n')) t.diagnostic(line);
        const st = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
        assert.deepEqual(st, {
          api: 'pass',
          'api-lb': 'pass',
          'nodes-ready': 'pass',
          'lb-address': 'pass',
          'lb-http': 'skip',
          cleanup: 'pass',
          'drill:server1:api': 'pass',
          'drill:server1:back': 'pass',
          'drill:server2:api': 'pass',
          'drill:server2:back': 'pass',
        });
        assert.match(report.checks.find((c) => c.id === 'lb-http')!.detail, /simulated by kwok/);
        assert.equal(report.ok, true);
        const ns = await (await kubectl()).run(['get', 'namespace', 'k8s-ha-verify'], { allowFailure: true });
        assert.notEqual(ns.code, 0, 'the test namespace is gone');
      } finally {
        await run.close();
      }
    });
  });
}

test('MetalLB on the lab', { skip: labSkip ? `no lab: ${labSkip}` : existsSync(LAB_K3S) ? false : `${LAB_K3S} is missing: build it with scripts/build-labk3s.sh` }, async (t) => {
  await scenario(t);
});
