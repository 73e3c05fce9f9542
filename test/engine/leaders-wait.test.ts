import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { ClusterRun } from '../../src/cluster/open.js';
import { applyPipeline } from '../../src/cluster/pipelines.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { tempDir } from '../cli/helpers.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import type { LeaseOptions } from '../support/fleet-leases.js';
import { offlineCluster, standInK3s } from '../support/offline-example.js';

/**
 * The wait for the control plane's leaders before each drain of an upgrade
 * (src/phases/k3s-leaders.ts), on the simulated fleet through the whole apply
 * pipeline: its Leases (test/support/fleet-leases.ts) go stale when the
 * server whose instances held them restarts, and another server's take
 * them over after a few reads — or never.
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');
const AGENTS = ['agent1', 'agent2', 'agent3'];

async function installed(t: { after: (fn: () => void) => void }, leases: LeaseOptions, waits = '') {
  const dir = tempDir(t);
  const { file, text, binary } = offlineCluster(SEED, dir);
  const doc = parseDocument(text);
  if (waits) doc.setIn(['waits', 'leaderElection'], waits);
  writeFileSync(file, String(doc));
  const fleet = simulatedFleet(String(doc), { env: { HOME: dir }, k3s: { leases } });
  const events: EngineEvent[] = [];
  const open = () => ClusterRun.open(file, { env: { HOME: dir }, connect: fleet.connect, phases: applyPipeline({ k3s: { pollIntervalMs: 5 } }), events: (e) => void events.push(e) });
  const first = await open();
  await first.apply();
  await first.close();
  // The upgrade: a newer binary and the version the file names.
  writeFileSync(binary, standInK3s('v1.37.3+k3s1'), { mode: 0o755 });
  doc.setIn(['k3s', 'version'], 'v1.37.3+k3s1');
  writeFileSync(file, String(doc));
  events.length = 0;
  return { fleet, events, open };
}

/** server1's command log (drains go through it): lease reads (consecutive ones as one) and the kubectl verbs on nodes, in order. */
function order(fleet: Fleet): string[] {
  return fleet.hosts
    .get('server1')!
    .log.map((c) => (/get leases -n kube-system/.test(c) ? 'leases' : / kubectl .* (cordon|drain|uncordon) (agent\d)\b/.exec(c)?.slice(1, 3).join(' ')))
    .filter((x): x is string => !!x)
    .filter((x, i, all) => x !== 'leases' || all[i - 1] !== 'leases');
}
const drainsOf = (node: string) => ['leases', `cordon ${node}`, `drain ${node}`, `uncordon ${node}`];

const messages = (events: EngineEvent[], type: 'wait' | 'info') => events.flatMap((e) => (e.type === type ? [e.message] : []));

test('after the servers restart, the first drain waits until another server\'s controller manager and scheduler took the stale Leases over; later drains read them once', async (t) => {
  const s = await installed(t, { takeoverReads: 3 });
  const holdersBefore = s.fleet.k3s.leases.holders();
  assert.match(holdersBefore['kube-controller-manager']!, /^server1_/, 'the first server up leads');
  const run = await s.open();
  const plan = await run.plan();
  for (const a of AGENTS) {
    const changes = plan.steps.find((x) => x.host === a)!.changes;
    assert.equal(changes[0]!.summary, `wait until kube-controller-manager and kube-scheduler have leaders (a Lease holder renewing; up to 60 s) before ${a} is drained`);
    assert.deepEqual(changes[0]!.target, { host: 'server1', object: 'Lease/kube-system/kube-controller-manager,kube-scheduler' });
  }
  await run.apply(plan);
  await run.close();
  const waits = messages(s.events, 'wait').filter((m) => m.startsWith('waiting for leaders'));
  // server1 restarted first: its controller manager's Lease is stale, its scheduler let its Lease go.
  assert.match(waits[0]!, new RegExp(`^waiting for leaders before draining agent1: kube-controller-manager: Lease kube-system/kube-controller-manager held by ${holdersBefore['kube-controller-manager']}, last renewed 2\\d\\.\\d s ago \\(lease 15 s\\): its holder stopped renewing`));
  assert.match(waits[0]!, /kube-scheduler: Lease kube-system\/kube-scheduler has no holder \(its leader let it go on exit/);
  assert.equal(waits.length, 3, waits.join('\n'));
  const after = s.fleet.k3s.leases.holders();
  const info = messages(s.events, 'info').filter((m) => m.startsWith('leaders before draining'));
  assert.match(info[0]!, new RegExp(`^leaders before draining agent1: kube-controller-manager held by ${after['kube-controller-manager']}, renewed 0\\.0 s ago; kube-scheduler held by ${after['kube-scheduler']}, renewed 0\\.0 s ago \\(waited \\d+\\.\\d s\\)$`));
  assert.notEqual(after['kube-controller-manager'], holdersBefore['kube-controller-manager']);
  // The lease reads come before each cordon; the drains only after leaders were seen.
  assert.deepEqual(order(s.fleet), AGENTS.flatMap(drainsOf));
  // agent2 and agent3: one read each, nothing waited.
  assert.deepEqual(info.map((m) => /draining (\S+):/.exec(m)?.[1]), AGENTS);
  assert.equal(s.fleet.k3s.leases.reads.length, 4 + 1 + 1, s.fleet.k3s.leases.reads.join('\n'));
  // The measured time is the step's change-done.
  assert.ok(s.events.some((e) => e.type === 'change-done' && e.summary.startsWith('wait until kube-controller-manager') && typeof e.ms === 'number'));
});

test('no leader within waits.leaderElection: the rollout stops before the first drain, naming the stale Lease and the fix; the agent is not cordoned; once a leader is back, apply again resumes', async (t) => {
  const s = await installed(t, { takeoverReads: 0, neverTakeover: true }, '300ms');
  const run = await s.open();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.match(e.message, /no leader after 300ms|no leader after 0\.3 s/);
    assert.match(e.message, /kube-controller-manager: Lease kube-system\/kube-controller-manager held by server1_\S+, last renewed \d+\.\d s ago/);
    assert.match(e.message, /agent1 is not drained: without a leading kube-controller-manager an evicted pod is neither replaced nor dropped from its Services/);
    assert.match(e.message, /Fix: look at `journalctl -u k3s \| grep -i -e leader -e lease` on the servers.*run apply again \(it resumes here\); raise waits\.leaderElection/);
    return true;
  });
  await run.close();
  assert.equal(s.fleet.kube.cordoned.size, 0, 'nothing cordoned');
  assert.deepEqual(order(s.fleet), ['leases'], 'no agent drained');
  // The election recovers: the same apply again finishes the rollout.
  s.fleet.k3s.leases.opts = { takeoverReads: 0 };
  const again = await s.open();
  await again.apply();
  await again.close();
  assert.deepEqual(order(s.fleet), AGENTS.flatMap(drainsOf));
  const last = await s.open();
  assert.equal((await last.plan()).empty, true);
  await last.close();
});

test('clock skew: a holder whose clock is 30 s behind the reading server counts once its renewTime is seen to move', async (t) => {
  const s = await installed(t, { takeoverReads: 0, skewMs: { server2: -30_000 } });
  const run = await s.open();
  await run.apply();
  await run.close();
  const info = messages(s.events, 'info').filter((m) => m.startsWith('leaders before draining'));
  // agent1: taken over by server2 (server1 restarted first) since the last read; agent2: server2's renewal seen between two reads.
  assert.match(info[1]!, /^leaders before draining agent2: kube-controller-manager held by server2_\S+, renewed since the last read \(its renewTime is 30\.\d s behind server1's clock: the servers' clocks differ, check their time sync\)/);
  assert.equal(s.fleet.kube.cordoned.size, 0);
});
