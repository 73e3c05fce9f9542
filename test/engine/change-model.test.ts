import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffDesired, observeDesired, type Desired, type ObservedState } from '../../src/engine/desired.js';
import { changeKey, type Change } from '../../src/engine/change.js';
import { Engine, PlanChangedError } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterLock, LOCK_PATH, LockedError } from '../../src/engine/lock.js';
import type { AnyPhase, Phase } from '../../src/engine/phase.js';
import { formatPlan, planToJSON } from '../../src/cli/output/plan.js';
import { MemoryHost } from '../../src/transport/memory.js';
import { sh } from '../../src/transport/quote.js';

/**
 * The change model: changes as data, apply running the plan it showed,
 * batches and rollouts, changes on other hosts, cleanup, and the cluster lock.
 */
interface Demo {
  hosts: string[];
  version: string;
}

const desiredFor = (c: Demo, host: string): Desired => ({
  packages: ['webd'],
  files: [{ path: '/etc/webd.conf', content: `host ${host}\nversion ${c.version}\n` }],
  absent: ['/etc/webd.old'],
  services: [{ unit: 'webd', restartOn: ['/etc/webd.conf'] }],
});

function counting(onObserve: (h: string) => void = () => {}, extra: Partial<Phase<Demo, ObservedState>> = {}): Phase<Demo, ObservedState> {
  return {
    id: 'web',
    title: 'Web daemon',
    targets: (ctx) => ctx.cluster.hosts,
    observe: async (ctx, host) => (onObserve(host.name), observeDesired(host, desiredFor(ctx.cluster, host.name))),
    diff: (ctx, name, o) => diffDesired(desiredFor(ctx.cluster, name), o),
    ...extra,
  };
}

function memHosts(names: string[]): Map<string, MemoryHost> {
  return new Map(names.map((n, i) => [n, new MemoryHost({ name: n, address: `10.0.0.${i + 1}`, catalog: { webd: { version: '2.0', services: ['webd'] } } })]));
}

function engineFor(c: Demo, hosts: Map<string, MemoryHost>, phases: AnyPhase<Demo>[], events?: EngineEvent[]) {
  return new Engine<Demo>({
    cluster: c,
    hosts: [...hosts.values()].map((h) => ({ name: h.name, address: h.address })),
    connect: async (n) => hosts.get(n)!,
    phases,
    ...(events ? { events: (e: EngineEvent) => void events.push(e) } : {}),
  });
}

test('every change carries its action, its target (host and file, unit or packages) and before/after', async () => {
  const hosts = memHosts(['a']);
  hosts.get('a')!.setFile('/etc/webd.old', 'stale\n');
  const plan = await engineFor({ hosts: ['a'], version: '1' }, hosts, [counting()]).plan();
  const data = plan.steps[0]!.changes.map((c) => ({ action: c.action, target: c.target, before: c.before, after: c.after }));
  assert.deepEqual(data, [
    { action: 'create', target: { host: 'a', packages: ['webd'] }, before: null, after: 'installed' },
    { action: 'create', target: { host: 'a', file: '/etc/webd.conf' }, before: null, after: 'host a\nversion 1\n' },
    { action: 'delete', target: { host: 'a', file: '/etc/webd.old' }, before: 'stale\n', after: null },
    { action: 'update', target: { host: 'a', unit: 'webd' }, before: 'disabled', after: 'enabled' },
    { action: 'restart', target: { host: 'a', unit: 'webd' }, before: 'inactive', after: 'active' },
  ]);
  // The plan prints the signs from the action, and --json carries the targets.
  const text = formatPlan(plan);
  assert.match(text, /\+ install webd\n.*\+ create \/etc\/webd\.conf/s);
  assert.match(text, /- remove \/etc\/webd\.old/);
  assert.match(text, /~ enable webd\n\s+~ start webd/);
  assert.match(text, /1 to delete/);
  const json = planToJSON(plan) as { steps: { changes: { action: string; target: unknown }[] }[] };
  assert.deepEqual(json.steps[0]!.changes[2], { action: 'delete', target: { host: 'a', file: '/etc/webd.old' }, summary: 'remove /etc/webd.old', before: 'stale\n', after: null });
});

test('apply runs the plan it was given: a no-op apply observes each host once, a first apply observes only to check convergence', async () => {
  const hosts = memHosts(['a', 'b']);
  const c = { hosts: ['a', 'b'], version: '1' };
  const seen: string[] = [];
  const e1 = engineFor(c, hosts, [counting((h) => seen.push(h))]);
  const plan = await e1.plan();
  assert.deepEqual(seen.sort(), ['a', 'b']);
  seen.length = 0;
  await e1.apply(plan);
  // The first (only) phase ran straight from the plan; one more look proves it converged.
  assert.deepEqual(seen.sort(), ['a', 'b']);
  seen.length = 0;
  const e2 = engineFor(c, hosts, [counting((h) => seen.push(h))]);
  const r = await e2.apply(await e2.plan());
  assert.equal(r.changed, 0);
  assert.deepEqual(seen.sort(), ['a', 'b']);
});

test('a later phase that finds more to do than the plan showed stops before changing anything and names the difference', async () => {
  const hosts = memHosts(['a']);
  const c = { hosts: ['a'], version: '1' };
  // Phase 1 writes a marker; phase 2's work depends on files nobody planned for.
  const first: Phase<Demo, ObservedState> = { ...counting(), id: 'first', title: 'First' };
  const second: Phase<Demo, ObservedState> = {
    id: 'second',
    title: 'Second',
    targets: () => ['a'],
    observe: (_ctx, host) => observeDesired(host, { files: [{ path: '/etc/second', content: 'x' }] }),
    diff: (_ctx, _n, o) => diffDesired({ files: [{ path: '/etc/second', content: 'x\n' }] }, o),
  };
  const eng = engineFor(c, hosts, [first, second]);
  const plan = await eng.plan();
  // After the plan was shown, someone else puts a file there: the shown
  // "create /etc/second" is now an update — different work.
  hosts.get('a')!.setFile('/etc/second', 'y\n');
  await assert.rejects(eng.apply(plan), (e: Error) => {
    assert.ok(e instanceof PlanChangedError, e.message);
    assert.match(e.message, /^Second: observed again before it ran, it has work the plan did not show/);
    assert.match(e.message, /a: ~ update \/etc\/second/);
    assert.match(e.message, /fix: run `k8s-ha plan`/);
    return true;
  });
  assert.equal(hosts.get('a')!.text('/etc/second'), 'y\n');
  assert.ok(hosts.get('a')!.files.has('/etc/webd.conf'), 'the first phase ran');
});

test('batches: hosts change in batches of the phase\'s size, and a failed batch stops the next', async () => {
  const names = ['h1', 'h2', 'h3', 'h4', 'h5'];
  const hosts = memHosts(names);
  const c = { hosts: names, version: '1' };
  let active = 0;
  let max = 0;
  const order: string[] = [];
  const phase = counting(() => {}, {
    batch: 2,
    settle: async (_ctx, host) => {
      active++;
      max = Math.max(max, active);
      order.push(host.name);
      await new Promise((r) => setTimeout(r, 5));
      active--;
    },
  });
  const eng = engineFor(c, hosts, [phase]);
  const plan = await eng.plan();
  assert.deepEqual(plan.rollouts[0]!.batches, [['h1', 'h2'], ['h3', 'h4'], ['h5']]);
  assert.match(formatPlan(plan), /rollout: h1 \+ h2 -> h3 \+ h4 -> h5/);
  await eng.apply(plan);
  assert.equal(max, 2);
  assert.deepEqual(order.slice(0, 2).sort(), ['h1', 'h2']);
  assert.equal(order[4], 'h5');
  // h2 fails: h1 finishes (same batch), h3..h5 are never touched.
  const c2 = { ...c, version: '2' };
  hosts.get('h2')!.failNext(/systemctl restart webd/, { stderr: 'restart failed' });
  await assert.rejects(engineFor(c2, hosts, [phase]).apply(), /h2: Web daemon: .*restart failed/s);
  assert.match(hosts.get('h1')!.text('/etc/webd.conf')!, /version 2/);
  for (const h of ['h3', 'h4', 'h5']) assert.match(hosts.get(h)!.text('/etc/webd.conf')!, /version 1/, h);
});

test('a rollout decided over all hosts\' observations sets the order, and must list every host with changes', async () => {
  const hosts = memHosts(['a', 'b', 'c']);
  const c = { hosts: ['a', 'b', 'c'], version: '1' };
  const order: string[] = [];
  const phase = counting(() => {}, {
    rollout: (_ctx, changed) => ({ batches: [...changed].reverse().map((h) => [h]), describe: 'last first' }),
    settle: async (_ctx, host) => void order.push(host.name),
  });
  const eng = engineFor(c, hosts, [phase]);
  const plan = await eng.plan();
  assert.match(formatPlan(plan), /rollout \(last first\): c -> b -> a/);
  await eng.apply(plan);
  assert.deepEqual(order, ['c', 'b', 'a']);
  const forgetful = counting(() => {}, { rollout: () => ({ batches: [['a']] }) });
  await assert.rejects(engineFor({ ...c, version: '2' }, hosts, [forgetful]).plan(), /the rollout lists a but the hosts with changes are a, b, c/);
});

test('a change may run on another host than its step (a drain through a server), and cleanup runs after a failure too', async () => {
  const hosts = memHosts(['agent', 'server']);
  hosts.get('server')!.handle(/^drain /, (cmd) => ({ code: 0, stdout: `drained ${cmd.text.split(' ')[1]}`, stderr: '' }));
  const ran: string[] = [];
  const drained = new Set<string>();
  const cleanups: boolean[] = [];
  const drain = (name: string): Change => ({
    action: 'run',
    target: { host: 'server', object: `Node/${name}` },
    summary: `drain ${name}`,
    apply: async (h) => {
      ran.push(`${h.name}: ${(await h.exec(sh`drain ${name}`)).stdout}`);
      drained.add(name);
    },
  });
  const phase: Phase<Demo, boolean> = {
    id: 'upgrade',
    title: 'Upgrade',
    targets: () => ['agent'],
    observe: async (_ctx, host) => drained.has(host.name),
    diff: (_ctx, name, done) => (done ? [] : [drain(name)]),
    cleanup: async (_ctx, outcome) => void cleanups.push(outcome.ok),
  };
  const eng = engineFor({ hosts: [], version: '1' }, hosts, [phase]);
  const plan = await eng.plan();
  assert.match(formatPlan(plan), /agent:\n\s+> drain agent \(on server\)/);
  assert.equal(changeKey(plan.steps[0]!.changes[0]!), 'server run object:Node/agent');
  await eng.apply(plan);
  assert.deepEqual(ran, ['server: drained agent']);
  assert.ok(!hosts.get('agent')!.log.some((l) => l.startsWith('drain')));
  assert.deepEqual(cleanups, [true]);
  drained.clear();
  hosts.get('server')!.failNext(/^drain /, { stderr: 'cannot evict pod: PodDisruptionBudget' });
  await assert.rejects(engineFor({ hosts: [], version: '1' }, hosts, [phase]).apply(), /PodDisruptionBudget/);
  assert.deepEqual(cleanups, [true, false]);
});

test('the cluster lock: a second holder is refused with who holds it, a stale lock is explained, --break-lock breaks it', async () => {
  const host = new MemoryHost({ name: 'db' });
  const events: EngineEvent[] = [];
  const first = await ClusterLock.acquire(host, { command: 'apply' });
  assert.equal(host.files.get(LOCK_PATH)!.mode, 0o600);
  await assert.rejects(ClusterLock.acquire(host, { command: 'restore' }), (e: Error) => {
    assert.ok(e instanceof LockedError);
    assert.equal(e.stale, false);
    assert.match(e.message, /locked by .*@.* \(pid \d+, `k8s-ha apply` since .*\).*another run is changing it now \(lock \/var\/lib\/k8s-ha\/lock on db\)/s);
    assert.match(e.message, /fix: wait for it to finish/);
    return true;
  });
  // The holder died: no heartbeat for three minutes.
  host.files.get(LOCK_PATH)!.mtimeMs = Date.now() - 180_000;
  await assert.rejects(ClusterLock.acquire(host, { command: 'apply' }), (e: Error) => {
    assert.ok(e instanceof LockedError && e.stale);
    assert.match(e.message, /last heartbeat was 1[78]\d s ago, so that run looks gone/);
    assert.match(e.message, /break the lock deliberately with --break-lock/);
    return true;
  });
  const second = await ClusterLock.acquire(host, { command: 'apply', breakLock: true, events: (e) => void events.push(e) });
  assert.match(JSON.stringify(events), /breaking the cluster lock held by .*`k8s-ha apply`/);
  // The first run's release leaves the new holder's lock alone.
  await first.release();
  assert.ok(host.files.has(LOCK_PATH));
  await second.release();
  assert.ok(!host.files.has(LOCK_PATH));
});

test('the lock keeps a heartbeat while held', async () => {
  const host = new MemoryHost({ name: 'db' });
  const lock = await ClusterLock.acquire(host, { command: 'apply', heartbeatMs: 10 });
  host.files.get(LOCK_PATH)!.mtimeMs = 0;
  await new Promise((r) => setTimeout(r, 40));
  assert.ok(host.files.get(LOCK_PATH)!.mtimeMs! > Date.now() - 1000);
  await lock.release();
});

test('a lock whose holder certainly ended (this machine, its process gone) is taken over with a warning, not left blocking', async () => {
  const host = new MemoryHost({ name: 'db' });
  const events: EngineEvent[] = [];
  const me = (await ClusterLock.acquire(host, { command: 'apply' })).info;
  // An earlier run of this process lost its connection before releasing: the lock is still there.
  host.setFile(LOCK_PATH, JSON.stringify({ ...me, id: 'ended-run' }) + '\n', { mode: 0o600 });
  const again = await ClusterLock.acquire(host, { command: 'apply', events: (e) => void events.push(e) });
  assert.match(JSON.stringify(events), /taking over the cluster lock left by .*its process is gone/);
  await again.release();
  // A process of this machine that no longer exists.
  host.setFile(LOCK_PATH, JSON.stringify({ ...me, id: 'dead', pid: 2 ** 22 + 12345 }) + '\n', { mode: 0o600 });
  await (await ClusterLock.acquire(host, { command: 'apply' })).release();
  assert.ok(!host.files.has(LOCK_PATH));
});
