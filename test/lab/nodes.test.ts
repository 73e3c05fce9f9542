// Nodes coming and going on real machines (the lab: systemd-nspawn Debian 12,
// real nginx, MariaDB, sshd, systemd, containerd and kubelets; the lab's k3s
// double, labk3s/). One lab for the whole file: remove an agent; a host gone
// from the file refused; remove a server while the API is probed through the
// load balancer; add it back on a re-created machine (empty disk, new host
// key); replace an agent's machine under the same name.
//
// SSH goes through k8s-ha's own transport with host keys pinned in the state
// file (as for a user), not the lab's known_hosts: so a re-created machine
// shows as a changed host key, refused until --accept-new-host-key.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import type { AnyPhase } from '../../src/engine/phase.js';
import { applyPipeline, removalPipeline } from '../../src/cluster/pipelines.js';
import { ClusterRun, type Deployment, type OpenOptions } from '../../src/cluster/open.js';
import { StateFile } from '../../src/cluster/state.js';
import { clientFor, fetchKubeconfigFromAny } from '../../src/kube/fetch.js';
import type { KubeClient } from '../../src/kube/client.js';
import type { Lab } from '../../lab/index.js';
import { withLab } from '../../lab/testing.js';

const REPO = resolve(import.meta.dirname, '../..');

type HostEntry = { name: string; address: string; roles: string[]; remove?: boolean };

// MetalLB is not needed here (and costs a minute): the rest of apply's pipeline.
const phases = (): AnyPhase<Deployment>[] => applyPipeline().filter((p) => p.id !== 'metallb');

async function run<T>(file: string, o: Partial<OpenOptions>, fn: (r: ClusterRun) => Promise<T>): Promise<T> {
  const r = await ClusterRun.open(file, { env: process.env, phases: phases(), ...o });
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

/** Plan, refuse on errors, apply that plan; returns the plan's errors when there are any instead. */
async function applyFile(file: string, o: Partial<OpenOptions> = {}): Promise<string[]> {
  return run(file, o, async (r) => {
    const plan = await r.plan();
    const errors = plan.problems.filter((p) => p.severity === 'error').map((p) => `${p.message} (fix: ${p.hint ?? ''})`);
    if (errors.length) return errors;
    await r.apply(plan);
    return [];
  });
}

test('nodes on the lab: remove an agent, refuse a vanished host, remove a server with 0 failed requests through the LB, add it back on a fresh machine, replace an agent', { timeout: 900_000 }, async (t) => {
  await withLab({ skip: (r) => t.skip(r) }, async (lab: Lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-nodes-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'cluster.yaml');
    const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, unknown> & { hosts: HostEntry[]; k3s: Record<string, unknown> };
    delete doc.metallb;
    // The lab's k3s and its images through k8s-ha's air-gap path (no registry is reachable).
    doc.k3s = { ...doc.k3s, install: { source: 'local', path: join(REPO, 'labk3s/bin/k3s'), airgapImages: join(REPO, 'labk3s/images/bin') } };
    const write = (hosts: HostEntry[]) => writeFileSync(file, stringify({ ...doc, hosts }));
    const all = doc.hosts;
    const without = (...names: string[]) => all.filter((h) => !names.includes(h.name));
    const recorded = () => Object.keys((parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { hosts?: Record<string, string> }).hosts ?? {}).sort();
    const exists = async (m: string, path: string) => (await lab.exec(m, ['test', '-e', path], { allowFailure: true })).code === 0;
    const addr = (n: string) => all.find((h) => h.name === n)!.address;

    write(all);
    let t0 = Date.now();
    assert.deepEqual(await applyFile(file), []);
    t.diagnostic(`apply of 2 servers + 3 agents: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const kube: KubeClient = await run(file, {}, async (r) => clientFor((await fetchKubeconfigFromAny(r.deployment, (n) => r.engine.host(n))).kubeconfig, { freshConnections: true, timeoutMs: 5_000 }));
    await kube.waitForReadyNodes(5, { timeoutMs: 180_000 });
    const nodeNames = async () => (await kube.nodes()).map((n) => n.name);
    const secret = async (n: string) => kube.raw(`/api/v1/namespaces/kube-system/secrets/${n}.node-password.k3s`).then(() => true, () => false);

    // 1. Remove an agent (the removal pipeline, as `k8s-ha node remove agent3`).
    const hadSecret = await secret('agent3');
    t0 = Date.now();
    await run(file, { phases: removalPipeline(), remove: ['agent3'] }, async (r) => {
      const plan = await r.plan();
      assert.deepEqual(plan.problems.filter((p) => p.severity === 'error'), []);
      assert.deepEqual(
        plan.steps.filter((s) => s.phase === 'node-removal').flatMap((s) => s.changes.map((c) => `${c.action} ${'object' in c.target ? c.target.object : ''}`)),
        // The wait for the control plane's leaders comes before the cordon (k3s-leaders.ts).
        ['run Lease/kube-system/kube-controller-manager,kube-scheduler', 'update Node/agent3', 'run Node/agent3', 'delete Node/agent3', 'delete Secret/kube-system/agent3.node-password.k3s', 'delete k3s agent'],
      );
      await r.apply(plan);
    });
    t.diagnostic(`removing agent3 (cordon, drain, delete, uninstall, forget): ${((Date.now() - t0) / 1000).toFixed(1)} s; its node-password secret existed before: ${hadSecret}`);
    assert.deepEqual(await nodeNames(), ['agent1', 'agent2', 'server1', 'server2']);
    assert.equal(await secret('agent3'), false);
    assert.equal(await exists('agent3', '/usr/local/bin/k3s'), false, 'k3s uninstalled from agent3');
    assert.equal((await lab.exec('agent3', ['systemctl', 'is-active', 'k3s-agent'], { allowFailure: true })).stdout.trim() === 'active', false);
    assert.equal(recorded().includes('agent3'), false, 'forgotten in the state file');

    // 2. A host gone from the file without a removal is refused, with the way out.
    write(without('agent3', 'agent2'));
    const vanished = await run(file, {}, async (r) => (await r.plan()).problems.filter((p) => p.severity === 'error'));
    assert.equal(vanished.length, 1);
    assert.match(vanished[0]!.message, /agent2 \(agent, [\d.]+\) was applied to this cluster .* k8s-ha does not forget a host silently/);
    assert.match(vanished[0]!.hint ?? '', /k8s-ha node remove agent2/);
    write(without('agent3'));

    // 3. Remove a server (remove: true, through apply) while the API is probed through the LB.
    write(without('agent3').map((h) => (h.name === 'server2' ? { ...h, remove: true } : h)));
    let probes = 0;
    const failures: string[] = [];
    let probing = true;
    const probe = (async () => {
      while (probing) {
        probes++;
        try {
          await kube.raw('/version');
        } catch (e) {
          failures.push((e as Error).message);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    t0 = Date.now();
    try {
      assert.deepEqual(await applyFile(file), []);
    } finally {
      probing = false;
      await probe;
    }
    t.diagnostic(`removing server2 through apply: ${((Date.now() - t0) / 1000).toFixed(1)} s; API through the LB: ${failures.length} failed of ${probes} probes${failures.length ? ` (${[...new Set(failures)].slice(0, 3).join(' | ')})` : ''}`);
    assert.equal(failures.length, 0, failures.join('\n'));
    assert.ok(probes > 20, `only ${probes} probes`);
    assert.deepEqual(await nodeNames(), ['agent1', 'agent2', 'server1']);
    const nginx = (await lab.exec('infra', ['cat', '/etc/nginx/k8s-ha-upstream.conf'])).stdout;
    assert.doesNotMatch(nginx, new RegExp(`${addr('server2').replace(/\./g, '\\.')}:6443`));
    const accounts = async () => (await lab.exec('infra', ['mariadb', '-N', '-e', "SELECT Host FROM mysql.user WHERE User='k3s' ORDER BY Host"])).stdout.trim().split('\n');
    assert.deepEqual(await accounts(), [addr('server1')]);
    assert.equal(await exists('server2', '/usr/local/bin/k3s'), false);
    assert.equal(recorded().includes('server2'), false);

    // 4. Add it back on a fresh machine: empty disk, new host key (its old key was forgotten with it).
    await lab.recreate('server2');
    assert.equal(await exists('server2', '/etc/rancher'), false, 'the re-created machine has an empty disk');
    write(without('agent3'));
    t0 = Date.now();
    assert.deepEqual(await applyFile(file), []);
    t.diagnostic(`adding server2 back on a fresh machine: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await kube.waitForReadyNodes(4, { timeoutMs: 180_000 });
    assert.deepEqual(await nodeNames(), ['agent1', 'agent2', 'server1', 'server2']);
    assert.deepEqual(await accounts(), [addr('server1'), addr('server2')].sort());
    // In service again: listed, not marked down, and no hold left from its removal.
    assert.match((await lab.exec('infra', ['cat', '/etc/nginx/k8s-ha-upstream.conf'])).stdout, new RegExp(`^server ${addr('server2').replace(/\./g, '\\.')}:6443 [^\n]*; # server2$`, 'm'));
    assert.equal(await exists('infra', '/var/lib/k8s-ha/lb-held'), false);

    // 5. Replace an agent's machine under the same name: refused as a changed host key, then re-joined deliberately.
    await lab.recreate('agent1');
    const refused = await run(file, {}, (r) => r.plan().then(() => 'planned', (e: Error) => e.message));
    assert.match(refused, /agent1 .*the host key has changed.*--accept-new-host-key agent1/s);
    t0 = Date.now();
    await run(file, { acceptHostKeyFor: new Set(['agent1']) }, async (r) => {
      const plan = await r.plan();
      const step = plan.steps.find((s) => s.phase === 'k3s-agents' && s.host === 'agent1')!;
      assert.deepEqual(step.changes.slice(0, 2).map((c) => `${c.action} ${'object' in c.target ? c.target.object : ''}`), ['delete Node/agent1', 'delete Secret/kube-system/agent1.node-password.k3s']);
      assert.match(step.changes[0]!.summary, /agent1 was re-installed/);
      await r.apply(plan);
    });
    t.diagnostic(`replacing agent1's machine: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await kube.waitForReadyNodes(4, { timeoutMs: 180_000 });
    assert.deepEqual((await kube.nodes()).map((n) => `${n.name} ${n.ready ? 'Ready' : 'NotReady'}`), ['agent1 Ready', 'agent2 Ready', 'server1 Ready', 'server2 Ready']);

    // Converged: nothing left to do.
    assert.equal(await run(file, {}, async (r) => (await r.plan()).empty), true);
  });
});
