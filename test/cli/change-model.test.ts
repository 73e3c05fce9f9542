import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { LOCK_PATH } from '../../src/engine/lock.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { simulatedFleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir } from './helpers.js';

/**
 * The change model through the CLI: `plan --json` carries actions and
 * targets, `apply` takes the cluster lock, and the reading commands open
 * the cluster read-only with their warnings shown.
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

function fleetSetup(t: { after: (fn: () => void) => void }) {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const cli = (...argv: string[]) => runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
  return { dir, file, fleet, cli };
}

test('plan --json carries each change\'s action and target, and the servers\' rollout one at a time', async (t) => {
  const s = fleetSetup(t);
  const r = await s.cli('plan', '--json');
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { rollouts: { phase: string; batches: string[][]; describe?: string }[]; steps: { phase: string; host: string; changes: { action: string; target: Record<string, unknown>; summary: string }[] }[] };
  const all = plan.steps.flatMap((st) => st.changes);
  assert.ok(all.every((c) => ['create', 'update', 'delete', 'restart', 'reload', 'run'].includes(c.action)), JSON.stringify(all.map((c) => c.action)));
  assert.ok(all.every((c) => typeof c.target.host === 'string' && ['file', 'unit', 'packages', 'object'].some((k) => k in c.target)));
  const server1 = plan.steps.find((st) => st.phase === 'k3s-servers' && st.host === 'server1')!;
  assert.ok(server1.changes.some((c) => c.action === 'create' && c.target.file === '/etc/rancher/k3s/config.yaml'));
  assert.ok(server1.changes.some((c) => c.action === 'restart' && c.target.unit === 'k3s' && c.summary === 'start k3s'));
  const ds = plan.steps.find((st) => st.phase === 'datastore')!;
  assert.ok(ds.changes.some((c) => c.target.object === 'mariadb/k3s accounts'));
  assert.deepEqual(plan.rollouts.find((x) => x.phase === 'k3s-servers'), { phase: 'k3s-servers', batches: [['server1'], ['server2']], describe: 'one at a time' });
  // Secrets on either side of a change are masked: test/cli/secrets-rotation.test.ts.
  assert.match(JSON.stringify(all), /\*{8}/);
});

test('apply refuses while another run holds the cluster lock, names it, and --break-lock breaks a stale one deliberately', async (t) => {
  const s = fleetSetup(t);
  const infra = s.fleet.hosts.get('infra')!;
  infra.setFile(LOCK_PATH, JSON.stringify({ holder: 'alice@laptop', pid: 4242, command: 'restore', since: '2026-12-01T08:00:00Z', id: 'x' }) + '\n', { mode: 0o600 });
  const held = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(held.code, 1);
  assert.match(held.stderr, /the cluster is locked by alice@laptop \(pid 4242, `k8s-ha restore` since 2026-12-01T08:00:00Z\).*another run is changing it now/s);
  for (const h of s.fleet.hosts.values()) assert.equal(h.packages.size, 0, `${h.name} was changed under a lock`);
  infra.files.get(LOCK_PATH)!.mtimeMs = Date.now() - 600_000;
  const stale = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(stale.code, 1);
  assert.match(stale.stderr, /looks gone .*--break-lock/s);
  const broken = await s.cli('apply', '--yes', '--no-verify', '--break-lock');
  assert.equal(broken.code, 0, broken.stderr + broken.stdout);
  assert.match(broken.stdout, /warning: .*breaking the cluster lock held by alice@laptop/);
  assert.ok(!infra.files.has(LOCK_PATH), 'the lock is released at the end');
  // A no-op apply takes no lock (it changes nothing) and writes nothing.
  const writes = infra.writes.length;
  const again = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(again.code, 0, again.stderr);
  assert.equal(infra.writes.length, writes);
});

test('status opens the cluster read-only: no state file is written, and adopting a server\'s token is shown as a warning', async (t) => {
  const dir = tempDir(t);
  copyFileSync(SEED, join(dir, 'cluster.yaml'));
  const hosts = new Map<string, MemoryHost>();
  ['infra', 'server1', 'server2', 'agent1', 'agent2', 'agent3'].forEach((n, i) => {
    const h = new MemoryHost({ name: n, address: `192.168.0.${156 + i}`, services: { nginx: { active: true }, mariadb: { active: true } } });
    h.handle(/./, () => ok(JSON.stringify({ items: [] })));
    hosts.set(n, h);
  });
  hosts.get('server1')!.setFile('/var/lib/rancher/k3s/server/token', `K10${'ab'.repeat(32)}::server:existingClusterSecret123\n`, { mode: 0o600 });
  const r = await runCli(['status'], { cwd: dir, hooks: { open: { connect: async (h) => hosts.get(h.name)! } } });
  assert.match(r.stderr, /warning: .*held no k3s token, but server1 already runs k3s: using its token .* for this run only/);
  assert.ok(!r.stderr.includes('existingClusterSecret123'));
  assert.equal(existsSync(join(dir, 'cluster.state.yaml')), false, 'status wrote the state file');
  const v = await runCli(['verify'], { cwd: dir, hooks: { open: { connect: async (h) => hosts.get(h.name)! } } });
  assert.match(v.stderr, /warning: .*server1 already runs k3s/);
  assert.equal(existsSync(join(dir, 'cluster.state.yaml')), false, 'verify wrote the state file');
});

test('a host that vanished from the cluster file after an apply is refused with the way out, not forgotten', async (t) => {
  const s = fleetSetup(t);
  const first = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const statePath = join(s.dir, `${basename(s.file, '.yaml')}.state.yaml`);
  assert.match(readFileSync(statePath, 'utf8'), /hosts:\n(.*\n)*\s+agent3: agent 192\.168\.\d+\.\d+/);
  const doc = parse(readFileSync(s.file, 'utf8')) as { hosts: { name: string }[] };
  doc.hosts = doc.hosts.filter((h) => h.name !== 'agent3');
  writeFileSync(s.file, stringify(doc));
  const plan = await s.cli('plan');
  assert.equal(plan.code, 1);
  assert.match(plan.stdout, /error hosts: agent3 \(agent, 192\.168\.\d+\.\d+\) was applied to this cluster .* but is not in .* any more; k8s-ha does not forget a host silently/);
  assert.match(plan.stdout, /fix: remove it deliberately: `k8s-ha node remove agent3` \(drains it, deletes its Node, runs k3s-agent-uninstall\.sh there, .*\), or put it back in the file with `remove: true` and apply/);
  const writes = s.fleet.hosts.get('agent1')!.writes.length;
  const apply = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(apply.code, 1);
  assert.match(apply.stderr, /agent3 .* k8s-ha does not forget a host silently/);
  assert.equal(s.fleet.hosts.get('agent1')!.writes.length, writes);
  // Forgotten deliberately (its line deleted from the state file): planning works again.
  writeFileSync(statePath, readFileSync(statePath, 'utf8').replace(/\n\s+agent3: agent [^\n]+/, ''), { mode: 0o600 });
  assert.equal((await s.cli('plan')).code, 0);
});
