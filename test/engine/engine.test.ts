import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffDesired, observeDesired, type Desired } from '../../src/engine/desired.js';
import { Engine, PreflightError } from '../../src/engine/engine.js';
import { InterruptedError, MultiHostError } from '../../src/engine/errors.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { Phase } from '../../src/engine/phase.js';
import { MemoryHost } from '../../src/transport/memory.js';
import { sh } from '../../src/transport/quote.js';
import { Secret } from '../../src/util/secret.js';

/** A small cluster for the engine: a web daemon with a config on every host. */
interface Demo {
  port: number;
  password: Secret;
  hosts: string[];
  serial?: boolean;
}

const desiredFor = (c: Demo, host: string): Desired => ({
  packages: ['webd'],
  files: [
    { path: '/etc/webd.conf', content: `host ${host}\nport ${c.port}\n`, check: (tmp) => sh`webd -t ${tmp}` },
    { path: '/etc/webd.secret', content: `password ${c.password.reveal()}\n`, mode: 0o600 },
  ],
  services: [{ unit: 'webd', reloadOn: ['/etc/webd.conf'], restartOn: ['/etc/webd.secret'] }],
});

function webPhase(opts: { serial?: boolean; onSettle?: (h: string) => Promise<void> } = {}): Phase<Demo, Awaited<ReturnType<typeof observeDesired>>> {
  return {
    id: 'web',
    title: 'Web daemon',
    batch: opts.serial ? 1 : undefined,
    targets: (ctx) => ctx.cluster.hosts,
    observe: (ctx, host) => observeDesired(host, desiredFor(ctx.cluster, host.name)),
    diff: (ctx, name, o) => diffDesired(desiredFor(ctx.cluster, name), o, ctx.secrets),
    settle: opts.onSettle ? async (_ctx, host) => opts.onSettle!(host.name) : undefined,
  };
}

function memHosts(names: string[]): Map<string, MemoryHost> {
  const m = new Map<string, MemoryHost>();
  names.forEach((n, i) => {
    const h = new MemoryHost({ name: n, address: `10.0.0.${i + 1}`, catalog: { webd: { version: '2.0', services: ['webd'] } } });
    h.handle(/^webd -t /, (cmd) => {
      const tmp = cmd.text.split(' ').pop()!;
      const text = h.text(tmp.replace(/^'|'$/g, '')) ?? '';
      return /port 0\b/.test(text) ? { code: 1, stdout: '', stderr: 'webd: port 0 is invalid' } : { code: 0, stdout: '', stderr: '' };
    });
    m.set(n, h);
  });
  return m;
}

function engineFor(cluster: Demo, hosts: Map<string, MemoryHost>, phases = [webPhase()], extra: { events?: EngineEvent[]; signal?: AbortSignal; concurrency?: number } = {}) {
  return new Engine<Demo>({
    cluster,
    hosts: [...hosts.values()].map((h) => ({ name: h.name, address: h.address })),
    connect: async (n) => hosts.get(n)!,
    phases,
    secrets: [cluster.password],
    events: extra.events ? (e) => extra.events!.push(e) : undefined,
    signal: extra.signal,
    concurrency: extra.concurrency,
  });
}

const cluster = (): Demo => ({ port: 8080, password: new Secret('hunter2-very-secret'), hosts: ['a', 'b', 'c'] });

test('plan on bare hosts lists packages, files and services per host and changes nothing', async () => {
  const hosts = memHosts(['a', 'b', 'c']);
  const plan = await engineFor(cluster(), hosts).plan();
  assert.equal(plan.empty, false);
  assert.deepEqual(plan.steps.map((s) => s.host), ['a', 'b', 'c']);
  assert.deepEqual(plan.steps[0]!.changes.map((c) => c.summary), ['install webd', 'create /etc/webd.conf', 'create /etc/webd.secret', 'enable webd', 'start webd']);
  for (const h of hosts.values()) {
    assert.equal(h.writes.length, 0);
    assert.equal(h.packages.size, 0);
  }
});

test('apply converges every host and a second apply changes nothing and restarts nothing', async () => {
  const hosts = memHosts(['a', 'b', 'c']);
  const r1 = await engineFor(cluster(), hosts).apply();
  assert.equal(r1.changed, 15);
  const a = hosts.get('a')!;
  assert.equal(a.text('/etc/webd.conf'), 'host a\nport 8080\n');
  assert.equal(a.files.get('/etc/webd.secret')!.mode, 0o600);
  const restarts = a.services.get('webd')!.restarts;
  const plan2 = await engineFor(cluster(), hosts).plan();
  assert.equal(plan2.empty, true);
  const r2 = await engineFor(cluster(), hosts).apply();
  assert.equal(r2.changed, 0);
  assert.equal(a.services.get('webd')!.restarts, restarts);
  assert.equal(a.services.get('webd')!.reloads, 0);
});

test('a changed setting reloads the daemon (not restarts) and the plan shows the diff', async () => {
  const hosts = memHosts(['a']);
  const c = { ...cluster(), hosts: ['a'] };
  await engineFor(c, hosts).apply();
  const before = hosts.get('a')!.services.get('webd')!.restarts;
  const c2 = { ...c, port: 9090 };
  const plan = await engineFor(c2, hosts).plan();
  const changes = plan.steps[0]!.changes;
  assert.deepEqual(changes.map((x) => x.summary), ['update /etc/webd.conf', 'reload webd (/etc/webd.conf changed)']);
  assert.match(changes[0]!.detail!, /-port 8080\n\+port 9090/);
  await engineFor(c2, hosts).apply();
  assert.equal(hosts.get('a')!.services.get('webd')!.reloads, 1);
  assert.equal(hosts.get('a')!.services.get('webd')!.restarts, before);
});

test('secrets are masked in plan diffs, events and never reach a command line', async () => {
  const hosts = memHosts(['a']);
  const c = { ...cluster(), hosts: ['a'] };
  const events: EngineEvent[] = [];
  const plan = await engineFor(c, hosts).plan();
  const shown = JSON.stringify(plan.steps.map((s) => s.changes.map((x) => [x.summary, x.detail])));
  assert.ok(!shown.includes('hunter2'), shown);
  assert.match(shown, /password \*{8}/);
  await engineFor(c, hosts, [webPhase()], { events }).apply();
  assert.ok(!JSON.stringify(events).includes('hunter2'));
  assert.ok(!hosts.get('a')!.log.some((l) => l.includes('hunter2')));
  assert.equal(hosts.get('a')!.text('/etc/webd.secret'), 'password hunter2-very-secret\n');
});

test('a config the daemon checker rejects never goes live and the error names host and check', async () => {
  const hosts = memHosts(['a']);
  const c = { ...cluster(), hosts: ['a'] };
  await engineFor(c, hosts).apply();
  await assert.rejects(engineFor({ ...c, port: 0 }, hosts).apply(), (e: Error) => {
    assert.ok(e instanceof MultiHostError);
    assert.match(e.message, /^a: Web daemon: .*webd -t/s);
    assert.match(e.message, /port 0 is invalid/);
    return true;
  });
  assert.equal(hosts.get('a')!.text('/etc/webd.conf'), 'host a\nport 8080\n');
});

test('failures on several hosts are reported together', async () => {
  const hosts = memHosts(['a', 'b', 'c']);
  hosts.get('a')!.failNext(/apt-get/, { stderr: 'E: Unable to locate package webd' });
  hosts.get('c')!.failNext(/apt-get/, { stderr: 'E: dpkg was interrupted' });
  await assert.rejects(engineFor(cluster(), hosts).apply(), (e: Error) => {
    assert.ok(e instanceof MultiHostError);
    assert.match(e.message, /2 hosts failed/);
    assert.match(e.message, /a: Web daemon: .*Unable to locate package/s);
    assert.match(e.message, /c: Web daemon: .*dpkg was interrupted/s);
    return true;
  });
});

test('an apply cut off by a dropped connection can be re-run and converges', async () => {
  const hosts = memHosts(['a', 'b']);
  const c = { ...cluster(), hosts: ['a', 'b'] };
  // Facts, observation and the package install go through; the link drops
  // while the first file is being written.
  hosts.get('b')!.disconnectAfter(7);
  await assert.rejects(engineFor(c, hosts).apply(), /b: .*connection was lost/s);
  hosts.get('b')!.reconnect();
  assert.ok(hosts.get('b')!.packages.has('webd'));
  assert.ok(!hosts.get('b')!.files.has('/etc/webd.conf'));
  const r = await engineFor(c, hosts).apply();
  assert.deepEqual(r.applied.map((s) => s.host), ['b']);
  assert.equal((await engineFor(c, hosts).plan()).empty, true);
});

test('an interrupted apply stops between changes and a re-run converges', async () => {
  const hosts = memHosts(['a']);
  const c = { ...cluster(), hosts: ['a'] };
  const ac = new AbortController();
  const events: EngineEvent[] = [];
  const sink = { push: (e: EngineEvent) => (events.push(e), e.type === 'change-done' && e.summary.startsWith('create /etc/webd.conf') && ac.abort()) };
  const eng = new Engine<Demo>({
    cluster: c,
    hosts: [{ name: 'a', address: '10.0.0.1' }],
    connect: async () => hosts.get('a')!,
    phases: [webPhase()],
    events: (e) => void sink.push(e),
    signal: ac.signal,
  });
  await assert.rejects(eng.apply(), InterruptedError);
  assert.ok(hosts.get('a')!.files.has('/etc/webd.conf'));
  assert.ok(!hosts.get('a')!.files.has('/etc/webd.secret'));
  await engineFor(c, hosts).apply();
  assert.equal((await engineFor(c, hosts).plan()).empty, true);
});

test('a phase with batch 1 works on one host at a time and stops at the first failure', async () => {
  const hosts = memHosts(['a', 'b', 'c']);
  const order: string[] = [];
  let active = 0;
  let maxActive = 0;
  const phase = webPhase({
    serial: true,
    onSettle: async (h) => {
      active++;
      maxActive = Math.max(maxActive, active);
      order.push(h);
      await new Promise((r) => setTimeout(r, 5));
      active--;
    },
  });
  await engineFor(cluster(), hosts, [phase]).apply();
  assert.deepEqual(order, ['a', 'b', 'c']);
  assert.equal(maxActive, 1);
  // b fails: c must not be touched.
  const c2 = { ...cluster(), port: 7070 };
  hosts.get('b')!.failNext(/systemctl reload/, { stderr: 'reload failed' });
  await assert.rejects(engineFor(c2, hosts, [phase]).apply(), /b: Web daemon/);
  assert.equal(hosts.get('c')!.text('/etc/webd.conf'), 'host c\nport 8080\n');
});

test('a preflight error stops the apply before any host is changed', async () => {
  const hosts = memHosts(['a']);
  const c = { ...cluster(), hosts: ['a'] };
  const phase = {
    ...webPhase(),
    preflight: () => [{ severity: 'error' as const, path: 'hosts[0]', message: 'auto_increment_increment is 2', hint: 'set it to 1' }],
  };
  await assert.rejects(engineFor(c, hosts, [phase]).apply(), (e: Error) => e instanceof PreflightError && /auto_increment_increment is 2/.test(e.message) && /fix: set it to 1/.test(e.message));
  assert.equal(hosts.get('a')!.writes.length, 0);
  assert.equal(hosts.get('a')!.packages.size, 0);
});

test('a host that is not systemd-based is refused with the reason', async () => {
  const hosts = memHosts(['a']);
  hosts.get('a')!.facts.init = 'other';
  await assert.rejects(engineFor({ ...cluster(), hosts: ['a'] }, hosts).plan(), /a: gathering facts: k8s-ha needs systemd/);
});

test('concurrency bounds how many hosts are worked on at once', async () => {
  const names = Array.from({ length: 8 }, (_, i) => `h${i}`);
  const hosts = memHosts(names);
  let active = 0;
  let maxActive = 0;
  const phase = webPhase({
    onSettle: async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((r) => setTimeout(r, 10));
      active--;
    },
  });
  await engineFor({ ...cluster(), hosts: names }, hosts, [phase], { concurrency: 3 }).apply();
  assert.equal(maxActive, 3);
});

test('a reload owed when an apply was cut off after the config write is planned again on the re-run, then cleared', async () => {
  const hosts = memHosts(['a']);
  const c = { ...cluster(), hosts: ['a'] };
  await engineFor(c, hosts).apply();
  const a = hosts.get('a')!;
  a.failNext(/^systemctl reload webd/, { stderr: 'connection dropped' });
  await assert.rejects(engineFor({ ...c, port: 9090 }, hosts).apply(), /reload/);
  assert.equal(a.text('/etc/webd.conf'), 'host a\nport 9090\n');
  assert.equal(a.services.get('webd')!.reloads, 0);
  const plan = await engineFor({ ...c, port: 9090 }, hosts).plan();
  assert.deepEqual(plan.steps.flatMap((s) => s.changes.map((x) => x.summary)), ['reload webd (owed since an interrupted apply)']);
  await engineFor({ ...c, port: 9090 }, hosts).apply();
  assert.equal(a.services.get('webd')!.reloads, 1);
  assert.equal((await engineFor({ ...c, port: 9090 }, hosts).plan()).empty, true);
});
