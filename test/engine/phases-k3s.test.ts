import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { PreflightError } from '../../src/engine/engine.js';
import { MultiHostError } from '../../src/engine/errors.js';
import { StateFile } from '../../src/cluster/state.js';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterRun } from '../../src/cluster/open.js';
import { k3sAgentsPhase } from '../../src/phases/k3s-agents.js';
import { K3sArtifacts } from '../../src/phases/k3s-install.js';
import { k3sServersPhase } from '../../src/phases/k3s-servers.js';
import { tokenPassphrase } from '../../src/phases/k3s-token.js';
import { readNodes } from '../../src/phases/k3s-versions.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { standInK3s, standInVersion } from '../support/offline-example.js';

/**
 * Memory hosts that behave like k3s where the phases look: a start writes
 * the token file and becomes ready after `readyDelayMs`, one shared
 * "datastore" remembers the first token (FACTS: bootstrap data), a server
 * started with another token never answers /ping and logs k3s's message.
 */
interface RestartRecord {
  host: string;
  kind: 'start' | 'restart';
  at: number;
  readyAt: number;
}

interface FakeCluster {
  dir: string;
  file: string;
  binary: string;
  hosts: Map<string, MemoryHost>;
  restarts: RestartRecord[];
  events: EngineEvent[];
  /** The token the datastore's bootstrap data was made with (its secret part). */
  datastore: { token: string | null };
  /** agent -> server addresses it cannot reach (how). */
  blocked: Map<string, Map<string, 'timeout' | 'refused'>>;
  /** Servers that never become ready. */
  stuck: Set<string>;
  /** Servers whose API server, on its next start, stays held back by autoregister-completion until k3s restarts. */
  bootStuck: Set<string>;
  readyDelayMs: number;
  /** `kubectl cordon|drain|uncordon NODE` as run on a server, in order: `server: verb node`. */
  drains: string[];
  /** Nodes the API reports NotReady. */
  notReady: Set<string>;
  /** The LB's upstream state file at each nginx reload on infra: `at`, and the servers marked down. */
  lbReloads: { at: number; down: string[] }[];
  /** Nodes whose new kubelet posts its status (its version) only this many ms after its restart. */
  lag: Map<string, number>;
  /** When each node's kubelet first reported a version after a restart. */
  reported: { node: string; version: string; at: number }[];
  /** When each drain verb ran. */
  drainTimes: number[];
  open(opts?: { phases?: 'both' | 'servers'; force?: boolean }): Promise<ClusterRun>;
  cleanup(): void;
}

const SERVERS = ['server1', 'server2'];
const AGENTS = ['agent1', 'agent2', 'agent3'];
const ADDR: Record<string, string> = { infra: '10.9.0.10', server1: '10.9.0.11', server2: '10.9.0.12', agent1: '10.9.0.21', agent2: '10.9.0.22', agent3: '10.9.0.23' };
const CA_HASH = 'ab'.repeat(32);

function clusterYaml(binary: string, extraK3s = ''): string {
  return `apiVersion: k8s-ha/v1
name: lab
ssh: {user: root}
hosts:
  - {name: infra, address: ${ADDR.infra}, roles: [loadbalancer, datastore]}
  - {name: server1, address: ${ADDR.server1}, roles: [server]}
  - {name: server2, address: ${ADDR.server2}, roles: [server]}
  - {name: agent1, address: ${ADDR.agent1}, roles: [agent]}
  - {name: agent2, address: ${ADDR.agent2}, roles: [agent], labels: {tier: web}}
  - {name: agent3, address: ${ADDR.agent3}, roles: [agent]}
loadBalancer: {kind: nginx, port: 6443}
datastore: {kind: mariadb, database: k3s, user: k3s, password: generate}
k3s:
  version: v1.31.4+k3s1
  token: generate
  disable: [servicelb, traefik]
  install: {source: local, path: ${binary}}
${extraK3s}`;
}

function fakeCluster(opts: { readyDelayMs?: number; pollIntervalMs?: number; readyTimeoutMs?: number; stuckRestartMs?: number } = {}): FakeCluster {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-k3s-'));
  const binary = join(dir, 'k3s');
  writeFileSync(binary, standInK3s('v1.31.4+k3s1', 'fake k3s binary v1'), { mode: 0o755 });
  const file = join(dir, 'lab.yaml');
  writeFileSync(file, clusterYaml(binary));
  const restarts: RestartRecord[] = [];
  const events: EngineEvent[] = [];
  const datastore = { token: null as string | null };
  const blocked = new Map<string, Map<string, 'timeout' | 'refused'>>();
  const stuck = new Set<string>();
  const bootStuck = new Set<string>();
  const hosts = new Map<string, MemoryHost>();
  const fc: FakeCluster = {
    dir,
    file,
    binary,
    hosts,
    restarts,
    drains: [],
    notReady: new Set(),
    lbReloads: [],
    lag: new Map(),
    reported: [],
    drainTimes: [],
    events,
    datastore,
    blocked,
    stuck,
    bootStuck,
    readyDelayMs: opts.readyDelayMs ?? 30,
    async open(o = {}) {
      const artifacts = new K3sArtifacts({ cacheDir: join(dir, 'cache') });
      const po = { artifacts, pollIntervalMs: opts.pollIntervalMs ?? 5, readyTimeoutMs: opts.readyTimeoutMs ?? 5000, ...(opts.stuckRestartMs !== undefined ? { stuckRestartMs: opts.stuckRestartMs } : {}) };
      const phases = o.phases === 'servers' ? [k3sServersPhase(po)] : [k3sServersPhase(po), k3sAgentsPhase(po)];
      return ClusterRun.open(file, { env: {}, connect: async (h) => hosts.get(h.name)!, phases, events: (e) => void events.push(e), ...(o.force ? { run: { force: true } } : {}) });
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  for (const name of Object.keys(ADDR)) {
    const h = new MemoryHost({ name, address: ADDR[name], services: { k3s: {}, 'k3s-agent': {} } });
    hosts.set(name, h);
    h.handle(/^journalctl -u /, () => ok(`-- k3s log of ${name} --\nlevel=info msg="starting"\n`));
    // The hash probe and record of k3s-install.ts: answered from the files (no record kept).
    h.handle(/^set -- .*sha256sum/, (cmd) => {
      const words = /^set -- (.*?); while/.exec(cmd.text)![1]!.split(' ');
      const files = words.filter((_, i) => i % 2 === 0);
      return ok(files.filter((f) => h.files.has(f)).map((f) => `${f}\t${sha256(h.files.get(f)!.content)}\n`).join(''));
    });
    h.handle(/^mkdir -p \/var\/lib\/k8s-ha\/sha256 /, () => ok());
    // `k3s --version`: the version the fake binary names.
    h.handle(/k3s --version/, () => ok(`k3s version ${standInVersion(h.text('/usr/local/bin/k3s')) ?? 'unknown'} (fake)\n`));
    if (SERVERS.includes(name)) serverModel(fc, h);
    if (AGENTS.includes(name)) agentModel(fc, h);
    if (name === 'infra') lbModel(fc, h);
  }
  return fc;
}

/** nginx on infra as the hold sees it: a checked write, a reload that records the upstream, no connections left. */
function lbModel(fc: FakeCluster, h: MemoryHost): void {
  h.handle(/^nginx -q -t -c /, () => ok());
  h.handle(/^systemctl reload nginx$/, () => {
    const state = h.text('/etc/nginx/k8s-ha-upstream.conf') ?? '';
    fc.lbReloads.push({ at: Date.now(), down: [...state.matchAll(/ down; # (\S+)$/gm)].map((m) => m[1]!) });
    return ok();
  });
  h.handle(/^ss -Htn state established/, () => ok('0\n'));
  // HAProxy: its checker, and its admin socket (what the hold says, with haproxy.cfg's server lines at that moment).
  h.handle(/^haproxy -c -f /, () => ok());
  h.handle(/\| socat stdio unix-connect:/, (cmd) => {
    const what = /echo '?(set server \S+ state \w+)/.exec(cmd.text)?.[1] ?? cmd.text;
    const disabled = [...(h.text('/etc/haproxy/haproxy.cfg') ?? '').matchAll(/^ +server (\S+) \S+ disabled$/gm)].map((m) => m[1]!);
    fc.lbReloads.push({ at: Date.now(), down: [what, ...disabled] });
    return ok('\n');
  });
}

/** What a node's kubelet reports: the version of the binary it last started from, `lag` ms after that start for the nodes in `fc.lag`. */
const kubelets = new WeakMap<FakeCluster, Map<string, { starts: number; version: string; next?: { version: string; at: number } }>>();
function kubeletVersion(fc: FakeCluster, x: MemoryHost): string {
  const seen = kubelets.get(fc) ?? new Map<string, { starts: number; version: string; next?: { version: string; at: number } }>();
  kubelets.set(fc, seen);
  const svc = x.services.get('k3s')?.active ? x.services.get('k3s')! : x.services.get('k3s-agent')!;
  const starts = svc.starts + svc.restarts;
  const now = standInVersion(x.text('/usr/local/bin/k3s')) ?? '';
  let k = seen.get(x.name);
  if (!k) seen.set(x.name, (k = { starts, version: now }));
  if (k.starts !== starts) {
    k.starts = starts;
    k.next = { version: now, at: Date.now() + (fc.lag.get(x.name) ?? 0) };
  }
  if (k.next && Date.now() >= k.next.at) {
    k.version = k.next.version;
    delete k.next;
    fc.reported.push({ node: x.name, version: k.version, at: Date.now() });
  }
  return k.version;
}

function configToken(h: MemoryHost): string {
  const cfg = parse(h.text('/etc/rancher/k3s/config.yaml') ?? '{}') as Record<string, string>;
  return tokenPassphrase(String(cfg.token ?? ''));
}

function serverModel(fc: FakeCluster, h: MemoryHost): void {
  let readyAt = Infinity;
  let badToken = false;
  let bootStuckNow = false;
  // systemd's ActiveEnterTimestampMonotonic: moves when a start signals READY=1.
  let entered = 0;
  h.handle(/systemctl --no-block restart k3s$/, () => {
    const enteredBefore = entered;
    const s = h.services.get('k3s')!;
    // diffDesired starts with `restart` too (it covers both): tell them apart by the state.
    const kind = s.active ? 'restart' : 'start';
    if (kind === 'restart') s.restarts++;
    else s.starts++;
    s.active = true;
    const token = configToken(h);
    fc.datastore.token ??= token;
    badToken = fc.datastore.token !== token;
    const at = Date.now();
    // Held back by autoregister-completion on this start; the restart after it starts clean.
    bootStuckNow = kind === 'restart' && bootStuckNow ? (fc.bootStuck.delete(h.name), false) : fc.bootStuck.has(h.name);
    readyAt = badToken || fc.stuck.has(h.name) || bootStuckNow ? Infinity : at + fc.readyDelayMs;
    // k3s writes its token file on first start with the datastore's token.
    if (!badToken && !h.files.has('/var/lib/rancher/k3s/server/token')) {
      h.setFile('/var/lib/rancher/k3s/server/token', `K10${CA_HASH}::server:${token}\n`, { mode: 0o600 });
    }
    fc.restarts.push({ host: h.name, kind, at, readyAt });
    return ok(`${enteredBefore}\n`);
  });
  h.handle(/get --raw \/readyz/, () => {
    const ready = Date.now() >= readyAt;
    const rec = fc.restarts.filter((r) => r.host === h.name).at(-1);
    if (ready && rec && rec.readyAt === Infinity) rec.readyAt = Date.now();
    if (ready) entered = readyAt * 1000;
    if (badToken) return ok(`ping=curl: (7) Failed to connect to 127.0.0.1 port 6443\nreadyz=\nactive=activating\nentered=${entered}\ntokenlog=yes\n`);
    if (bootStuckNow) return ok(`ping=pong\nreadyz=error: stat /etc/rancher/k3s/k3s.yaml: no such file or directory\nactive=activating\nentered=${entered}\nfailing=autoregister-completion \n`);
    return ok(ready ? `ping=pong\nreadyz=ok\nactive=active\nentered=${entered}\n` : `ping=curl: (7) Failed to connect\nreadyz=\nactive=active\nentered=${entered}\n`);
  });
  h.handle(/kubectl .* get nodes -o json/, () => {
    const items = [...fc.hosts.values()]
      .filter((x) => x.services.get('k3s')?.active || x.services.get('k3s-agent')?.active)
      .map((x) => ({ metadata: { name: x.name }, status: { conditions: [{ type: 'Ready', status: fc.notReady.has(x.name) ? 'False' : 'True' }], nodeInfo: { kubeletVersion: kubeletVersion(fc, x) } } }));
    return ok(JSON.stringify({ items }));
  });
  h.handle(/kubectl .* (cordon|uncordon|drain|annotate) /, (cmd) => {
    const m = /(cordon|uncordon|drain|annotate) (?:--overwrite )?(?:node )?(\S+)/.exec(cmd.text)!;
    if (m[1] !== 'annotate') {
      fc.drains.push(`${h.name}: ${m[1]} ${m[2]}`);
      fc.drainTimes.push(Date.now());
    }
    return ok();
  });
  // kube-system's Leases (k3s-leaders.ts): the first server's instances lead, renewing now.
  h.handle(/ get leases -n kube-system /, () => {
    const now = Date.now();
    const lease = (name: string) => ({ metadata: { name }, spec: { holderIdentity: `server1_${name}`, leaseDurationSeconds: 15, renewTime: new Date(now - 300).toISOString() } });
    return ok(`rc=0\nnow=${(now / 1000).toFixed(3)}\n${JSON.stringify({ items: [lease('kube-controller-manager'), lease('kube-scheduler')] })}\n`);
  });
  h.handle(/kubectl .* get node /, (cmd) => {
    const node = /get node (\S+)/.exec(cmd.text)![1]!;
    const agent = fc.hosts.get(node);
    return agent?.services.get('k3s-agent')?.active ? ok('True') : { code: 1, stdout: '', stderr: `Error from server (NotFound): nodes "${node}" not found` };
  });
}

function agentModel(fc: FakeCluster, h: MemoryHost): void {
  h.handle(/dev\/tcp/, (cmd) => {
    const addrs = /for a in (.*?); do/.exec(cmd.text)![1]!.split(' ');
    const blocked = fc.blocked.get(h.name);
    return ok(
      addrs
        .map((a) => {
          const how = blocked?.get(a);
          if (how === 'timeout') return `${a}\t124\t\n`;
          if (how === 'refused') return `${a}\t1\tbash: connect: Connection refused bash: line 1: /dev/tcp/${a}/6443: Connection refused\n`;
          return `${a}\t0\t\n`;
        })
        .join(''),
    );
  });
}

function sha256(s: string | Buffer): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Every text a user or a process list could see: command lines, plan, events. */
function visibleText(fc: FakeCluster, extra: unknown[] = []): string {
  return [...[...fc.hosts.values()].flatMap((h) => h.log), JSON.stringify(fc.events), ...extra.map((x) => JSON.stringify(x))].join('\n');
}


test('plan on bare hosts lists the binary, config (0600), unit, env file, the killall and uninstall scripts and start for every server and agent, and changes nothing', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  const run = await fc.open();
  const plan = await run.plan();
  await run.close();
  assert.deepEqual(plan.problems, []);
  assert.deepEqual(plan.steps.map((s) => `${s.phase}/${s.host}`), [...SERVERS.map((s) => `k3s-servers/${s}`), ...AGENTS.map((a) => `k3s-agents/${a}`)]);
  const s1 = plan.steps[0]!.changes.map((c) => c.summary);
  assert.match(s1[0]!, /^install k3s v1\.31\.4\+k3s1 at \/usr\/local\/bin\/k3s \(sha256 [0-9a-f]{12}…, from .*\/k3s\)$/);
  assert.deepEqual(s1.slice(1), [
    'create /etc/rancher/k3s/config.yaml',
    'create /etc/systemd/system/k3s.service',
    'create /etc/systemd/system/k3s.service.env',
    'create /usr/local/bin/k3s-killall.sh',
    'create /usr/local/bin/k3s-uninstall.sh',
    'systemctl daemon-reload',
    'enable k3s',
    'start k3s',
  ]);
  const agent = plan.steps.find((s) => s.host === 'agent1')!.changes.map((c) => c.summary);
  assert.ok(agent.includes('start k3s-agent'));
  assert.ok(agent.includes('create /usr/local/bin/k3s-agent-uninstall.sh') && !agent.includes('create /usr/local/bin/k3s-uninstall.sh'));
  for (const h of fc.hosts.values()) assert.equal(h.writes.length, 0, `${h.name} was written to by plan`);
});

test('apply brings server1 up and ready before server2 starts, then the agents, and a re-apply changes nothing', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 40 });
  t.after(fc.cleanup);
  const run = await fc.open();
  await run.apply();
  await run.close();
  const starts = fc.restarts.filter((r) => r.kind === 'start');
  assert.deepEqual(starts.slice(0, 2).map((r) => r.host), ['server1', 'server2']);
  assert.ok(starts[1]!.at >= starts[0]!.readyAt, `server2 started at ${starts[1]!.at}, before server1 was ready at ${starts[0]!.readyAt}`);
  for (const name of [...SERVERS, ...AGENTS]) {
    const h = fc.hosts.get(name)!;
    assert.equal(h.files.get('/usr/local/bin/k3s')!.mode, 0o755);
    assert.equal(h.text('/usr/local/bin/k3s'), readFileSync(fc.binary, 'utf8'));
    assert.equal(h.files.get('/etc/rancher/k3s/config.yaml')!.mode, 0o600, `${name} config.yaml mode`);
  }
  const cfg = parse(fc.hosts.get('server2')!.text('/etc/rancher/k3s/config.yaml')!) as Record<string, unknown>;
  assert.match(String(cfg['datastore-endpoint']), /^mysql:\/\/k3s:[A-Za-z0-9]+@tcp\(10\.9\.0\.10:3306\)\/k3s$/);
  assert.deepEqual(cfg['tls-san'], ['10.9.0.10']);
  assert.deepEqual(cfg['disable'], ['servicelb', 'traefik']);
  assert.equal(cfg['node-name'], 'server2');
  assert.equal(cfg['cluster-init'], undefined, 'no cluster-init with an external datastore (FACTS)');
  const agent = parse(fc.hosts.get('agent2')!.text('/etc/rancher/k3s/config.yaml')!) as Record<string, unknown>;
  assert.equal(agent.server, 'https://10.9.0.10:6443');
  // Once the servers exist, agents get the CA-pinning form of the token (FACTS).
  assert.match(String(agent.token), /^K10[0-9a-f]{64}::server:/);
  assert.deepEqual(agent['node-label'], ['tier=web']);
  assert.deepEqual(agent['node-ip'], ['10.9.0.22']);

  const before = fc.restarts.length;
  const again = await fc.open();
  const plan = await again.plan();
  assert.equal(plan.empty, true, JSON.stringify(plan.steps.map((s) => [s.host, s.changes.map((c) => c.summary)])));
  const r = await again.apply();
  await again.close();
  assert.equal(r.changed, 0);
  assert.equal(fc.restarts.length, before, 'a re-apply restarted something');
});

test('a changed server setting restarts the servers one at a time, each ready before the next goes down', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 40 });
  t.after(fc.cleanup);
  await (await fc.open()).apply();
  writeFileSync(fc.file, clusterYaml(fc.binary, "  serverArgs: {kube-apiserver-arg: ['max-requests-inflight=500']}\n"));
  const run = await fc.open();
  const plan = await run.plan();
  assert.deepEqual(plan.steps.map((s) => s.host), SERVERS, 'only the servers change');
  // The restart goes between a hold and a release on the load balancer (a change on infra), the release after the ready wait.
  assert.deepEqual(plan.steps[0]!.changes.map((c) => `${c.target.host}: ${c.summary}`), [
    'server1: update /etc/rancher/k3s/config.yaml',
    'infra: take server1 out of the API load balancer on infra (nginx: marked down, graceful reload; its connections get 10 s to end, then are closed)',
    'server1: restart k3s (/etc/rancher/k3s/config.yaml changed)',
    'server1: wait until server1 is ready (its /readyz, its Node Ready on v1.31.4+k3s1) before it takes connections again',
    'infra: put server1 back into the API load balancer on infra',
  ]);
  const from = fc.restarts.length;
  await run.apply();
  await run.close();
  const restarts = fc.restarts.slice(from);
  assert.deepEqual(restarts.map((r) => `${r.host} ${r.kind}`), ['server1 restart', 'server2 restart']);
  // Down from its restart until it answered ready: the intervals never overlap.
  assert.ok(restarts[1]!.at >= restarts[0]!.readyAt, `server2 went down at ${restarts[1]!.at} while server1 was down until ${restarts[0]!.readyAt}`);
  // nginx on infra: each server marked down before its restart and back only once it was ready; never both down.
  assert.deepEqual(fc.lbReloads.map((r) => r.down), [['server1'], [], ['server2'], []]);
  restarts.forEach((r, i) => {
    assert.ok(fc.lbReloads[2 * i]!.at <= r.at, `${r.host} restarted at ${r.at} before the LB took it out at ${fc.lbReloads[2 * i]!.at}`);
    assert.ok(fc.lbReloads[2 * i + 1]!.at >= r.readyAt, `${r.host} was put back at ${fc.lbReloads[2 * i + 1]!.at}, before it was ready at ${r.readyAt}`);
  });
  assert.equal(fc.hosts.get('infra')!.files.has('/var/lib/k8s-ha/lb-held'), false, 'nothing is left held');
  assert.equal((await (await fc.open()).plan()).empty, true);
});

test('a server left held out of the load balancer by a cut-off run is put back once it is ready, and an upgraded node counts only once its new kubelet reports the new version', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 10 });
  t.after(fc.cleanup);
  await (await fc.open()).apply();
  const infra = fc.hosts.get('infra')!;
  infra.setFile('/var/lib/k8s-ha/lb-held', 'server2\n');
  const run = await fc.open();
  const plan = await run.plan();
  assert.deepEqual(plan.steps.map((s) => [s.host, s.changes.map((c) => `${c.target.host}: ${c.summary}`)]), [
    ['server2', ['server2: wait until server2 is ready (its /readyz, its Node Ready on v1.31.4+k3s1) before it takes connections again', 'infra: put server2 back into the API load balancer on infra']],
  ]);
  await run.apply();
  await run.close();
  assert.equal(infra.files.has('/var/lib/k8s-ha/lb-held'), false);

  // An upgrade where agent1's new kubelet posts its status late: agent2 is not cordoned before agent1 reports v1.31.5.
  writeFileSync(fc.binary, standInK3s('v1.31.5+k3s1', 'fake k3s binary v1.31.5'));
  writeFileSync(fc.file, clusterYaml(fc.binary).replace('version: v1.31.4+k3s1', 'version: v1.31.5+k3s1'));
  fc.lag.set('agent1', 300);
  fc.drains.length = 0;
  fc.drainTimes.length = 0;
  const up = await fc.open();
  await up.apply();
  await up.close();
  assert.deepEqual(fc.drains.slice(0, 4), ['server1: cordon agent1', 'server1: drain agent1', 'server1: uncordon agent1', 'server1: cordon agent2']);
  const agent1New = fc.reported.find((r) => r.node === 'agent1' && r.version === 'v1.31.5+k3s1')!;
  assert.ok(fc.drainTimes[2]! >= agent1New.at, `agent1 was uncordoned at ${fc.drainTimes[2]}, before its new kubelet reported v1.31.5 at ${agent1New.at}`);
  const nodes = (await readNodes([fc.hosts.get('server1')!])) ?? [];
  assert.deepEqual(nodes.map((n) => `${n.name} ${n.kubelet}`).sort(), [...AGENTS, ...SERVERS].map((n) => `${n} v1.31.5+k3s1`).sort());
});

test('a new binary is uploaded and restarts the servers one at a time; the agents after them', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 20 });
  t.after(fc.cleanup);
  await (await fc.open()).apply();
  writeFileSync(fc.binary, standInK3s('v1.31.4+k3s1', 'fake k3s binary v2'));
  const from = fc.restarts.length;
  const agentRestarts = AGENTS.map((a) => fc.hosts.get(a)!.services.get('k3s-agent')!.restarts);
  const run = await fc.open();
  await run.apply();
  await run.close();
  assert.deepEqual(fc.restarts.slice(from).map((r) => `${r.host} ${r.kind}`), ['server1 restart', 'server2 restart']);
  AGENTS.forEach((a, i) => {
    assert.equal(fc.hosts.get(a)!.text('/usr/local/bin/k3s'), standInK3s('v1.31.4+k3s1', 'fake k3s binary v2'));
    assert.equal(fc.hosts.get(a)!.services.get('k3s-agent')!.restarts, agentRestarts[i]! + 1);
  });
  // Each agent in turn (upgrade.agentBatch defaults to 1): cordoned and drained through a server, then uncordoned.
  assert.deepEqual(fc.drains, AGENTS.flatMap((a) => [`server1: cordon ${a}`, `server1: drain ${a}`, `server1: uncordon ${a}`]));
});

test('air-gap images: every archive of the folder goes to every node\'s images folder before k3s starts; a re-apply uploads nothing; a changed archive is replaced without a restart', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 10 });
  t.after(fc.cleanup);
  const images = join(fc.dir, 'images');
  mkdirSync(images);
  writeFileSync(join(images, 'pause.tar'), 'pause image v1');
  writeFileSync(join(images, 'httpd.tar.zst'), 'httpd image v1');
  writeFileSync(join(images, 'images.txt'), 'not an archive: stays here\n');
  writeFileSync(fc.file, clusterYaml(fc.binary).replace(`install: {source: local, path: ${fc.binary}}`, `install: {source: local, path: ${fc.binary}, airgapImages: ${images}}`));
  const run = await fc.open();
  const plan = await run.plan();
  const s1 = plan.steps.find((s) => s.host === 'server1')!.changes.map((c) => c.summary);
  assert.deepEqual(s1.slice(0, 2), [
    `upload air-gap images /var/lib/rancher/k3s/agent/images/httpd.tar.zst (from ${join(images, 'httpd.tar.zst')})`,
    `upload air-gap images /var/lib/rancher/k3s/agent/images/pause.tar (from ${join(images, 'pause.tar')})`,
  ]);
  await run.apply();
  await run.close();
  for (const name of [...SERVERS, ...AGENTS]) {
    const h = fc.hosts.get(name)!;
    assert.equal(h.text('/var/lib/rancher/k3s/agent/images/pause.tar'), 'pause image v1', name);
    assert.equal(h.text('/var/lib/rancher/k3s/agent/images/httpd.tar.zst'), 'httpd image v1', name);
    assert.equal(h.files.has('/var/lib/rancher/k3s/agent/images/images.txt'), false, `${name}: only archives are uploaded`);
    // k3s imports the images at start: they are on the host before the unit first starts.
    const w = h.writes;
    assert.ok(w.indexOf('/var/lib/rancher/k3s/agent/images/pause.tar') < w.indexOf('/usr/local/bin/k3s'), `${name}: the images were written after the binary`);
  }

  const again = await fc.open();
  const noop = await again.plan();
  assert.equal(noop.empty, true, JSON.stringify(noop.steps.map((s) => [s.host, s.changes.map((c) => c.summary)])));
  await again.close();

  writeFileSync(join(images, 'httpd.tar.zst'), 'httpd image v2');
  const restartsBefore = fc.restarts.length;
  const agentRestarts = AGENTS.map((a) => fc.hosts.get(a)!.services.get('k3s-agent')!.restarts);
  const third = await fc.open();
  const p3 = await third.plan();
  assert.deepEqual(
    p3.steps.map((s) => `${s.host}: ${s.changes.map((c) => c.summary).join('; ')}`),
    [...SERVERS, ...AGENTS].map((n) => `${n}: replace air-gap images /var/lib/rancher/k3s/agent/images/httpd.tar.zst (from ${join(images, 'httpd.tar.zst')})`),
  );
  await third.apply();
  await third.close();
  for (const name of [...SERVERS, ...AGENTS]) assert.equal(fc.hosts.get(name)!.text('/var/lib/rancher/k3s/agent/images/httpd.tar.zst'), 'httpd image v2');
  // k3s (v1.29.13+, v1.30.9+, v1.31.5+, v1.32+) imports a changed archive while running: no restart for it.
  assert.equal(fc.restarts.length, restartsBefore);
  AGENTS.forEach((a, i) => assert.equal(fc.hosts.get(a)!.services.get('k3s-agent')!.restarts, agentRestarts[i]));
});

test('a cluster-critical setting that differs from what a server already runs is refused before any change', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  fc.hosts.get('server2')!.setFile('/etc/rancher/k3s/config.yaml', 'cluster-cidr: 10.99.0.0/16\ndisable: [servicelb, traefik]\n', { mode: 0o600 });
  const run = await fc.open();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.ok(e instanceof PreflightError, e.message);
    assert.match(e.message, /server2 already runs with cluster-cidr 10\.99\.0\.0\/16.*the cluster file says cluster-cidr 10\.42\.0\.0\/16/s);
    assert.match(e.message, /fix: put the running values back/);
    return true;
  });
  await run.close();
  for (const h of fc.hosts.values()) assert.equal(h.writes.length, 0, `${h.name} was changed`);
});

test('a server that already ran k3s with another token is refused with what happened and the choices', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  // The state file has a token; server1 belongs to a cluster made with another.
  writeFileSync(StateFile.pathFor(fc.file), 'version: 1\ncluster: lab\nsecrets:\n  k3sToken: theTokenOfThisStateFile0123456789\nhostKeys: {}\n', { mode: 0o600 });
  fc.hosts.get('server1')!.setFile('/var/lib/rancher/k3s/server/token', `K10${'cd'.repeat(32)}::server:someOtherClustersToken987\n`, { mode: 0o600 });
  const run = await fc.open();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.ok(e instanceof PreflightError);
    assert.match(e.message, /server1 \(\/var\/lib\/rancher\/k3s\/server\/token\) already belongs to a k3s cluster made with a different token/);
    assert.match(e.message, /bootstrap data already found and encrypted with different token/);
    assert.match(e.message, /restore .*lab\.state\.yaml/);
    assert.match(e.message, /k3s-uninstall\.sh/);
    assert.ok(!e.message.includes('someOtherClustersToken987') && !e.message.includes('theTokenOfThisStateFile'));
    return true;
  });
  await run.close();
  for (const h of fc.hosts.values()) assert.equal(h.writes.length, 0);
});

test('a datastore bootstrapped with another token: the start fails at once with the clear message, the host and the journal', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  fc.datastore.token = 'aTokenFromAnEarlierClusterInThisDatabase';
  const run = await fc.open();
  const t0 = Date.now();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.ok(e instanceof MultiHostError, e.message);
    assert.match(e.message, /^server1: k3s servers: server1: k3s refused to start: "bootstrap data already found and encrypted with different token"/);
    assert.match(e.message, /hint: either give k8s-ha the cluster's original token/);
    assert.match(e.message, /last lines of the journal:\n\s+-- k3s log of server1 --/);
    return true;
  });
  await run.close();
  assert.ok(Date.now() - t0 < 3000, 'did not wait for the full timeout');
  assert.equal(fc.hosts.get('server2')!.writes.length, 0, 'server2 was touched after server1 failed');
});

test('a server held back only by autoregister-completion (a check that never recovers) is restarted once, then the apply goes on', async (t) => {
  const fc = fakeCluster({ stuckRestartMs: 100 });
  t.after(fc.cleanup);
  fc.bootStuck.add('server1');
  const run = await fc.open({ phases: 'servers' });
  await run.apply();
  await run.close();
  const s1 = fc.restarts.filter((r) => r.host === 'server1');
  assert.deepEqual(s1.map((r) => r.kind), ['start', 'restart'], 'started, then restarted once for the stuck check');
  assert.ok(s1[1]!.readyAt < Infinity, 'ready after the restart');
  assert.ok(fc.events.some((e) => e.type === 'wait' && e.host === 'server1' && /restarting k3s: its API server has been held back by autoregister-completion for 0\.1 s/.test(e.message)), JSON.stringify(fc.events.filter((e) => e.type === 'wait').slice(-3)));
  assert.ok(fc.events.some((e) => e.type === 'wait' && /only autoregister-completion fails/.test(e.message)));
});

test('a server held back by autoregister-completion again after its one restart fails after the bounded wait (no restart loop)', async (t) => {
  const fc = fakeCluster({ stuckRestartMs: 50, readyTimeoutMs: 600 });
  t.after(fc.cleanup);
  fc.bootStuck.add('server1');
  fc.stuck.add('server1'); // stays not ready after the restart too
  const run = await fc.open({ phases: 'servers' });
  await assert.rejects(run.apply(), /server1: k3s server not ready within/);
  await run.close();
  assert.deepEqual(fc.restarts.filter((r) => r.host === 'server1').map((r) => r.kind), ['start', 'restart']);
});

test('a server that never gets ready fails after the bounded wait, naming the host, the last error and the journal', async (t) => {
  const fc = fakeCluster({ readyTimeoutMs: 150 });
  t.after(fc.cleanup);
  fc.stuck.add('server1');
  const run = await fc.open();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.match(e.message, /server1: k3s server not ready within [\d.]+ s/);
    assert.match(e.message, /last seen: k3s has not signalled READY to systemd since the restart \(active\); \/ping on 127\.0\.0\.1:6443 answered "curl: \(7\) Failed to connect"/);
    assert.match(e.message, /k3s log of server1/);
    assert.match(e.message, /datastore \(10\.9\.0\.10:3306\)/);
    return true;
  });
  await run.close();
});

test('the token and the datastore password never appear in command text, the plan or the events', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  const run = await fc.open();
  const plan = await run.plan();
  await run.apply();
  await run.close();
  const state = parse(readFileSync(StateFile.pathFor(fc.file), 'utf8')) as { secrets: Record<string, string> };
  const token = state.secrets.k3sToken!;
  const password = state.secrets.datastorePassword!;
  assert.ok(token.length >= 32 && password.length >= 16);
  const shown = visibleText(fc, [plan.steps.map((s) => s.changes.map((c) => [c.summary, c.detail]))]);
  assert.ok(!shown.includes(token), 'token visible');
  assert.ok(!shown.includes(password), 'password visible');
  assert.match(JSON.stringify(plan.steps[0]!.changes.map((c) => c.detail)), /token: \*{8}/);
  // ...while the hosts do have them, in 0600 files.
  assert.ok(fc.hosts.get('server1')!.text('/etc/rancher/k3s/config.yaml')!.includes(token));
});

test('an agent that cannot reach a server directly is named with that server, before any agent changes', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  await (await fc.open({ phases: 'servers' })).apply();
  fc.blocked.set('agent2', new Map([['10.9.0.12', 'timeout']]));
  fc.blocked.set('agent3', new Map([['10.9.0.11', 'refused']]));
  const run = await fc.open();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.ok(e instanceof PreflightError, e.message);
    assert.match(e.message, /agent2 cannot reach server2 \(10\.9\.0\.12:6443: no answer within 3 s/);
    assert.match(e.message, /agent3 cannot reach server1 \(10\.9\.0\.11:6443: connection refused\)/);
    assert.match(e.message, /talk to every server's 6443 directly/);
    assert.match(e.message, /fix: allow TCP 6443 from agent2 to 10\.9\.0\.12/);
    assert.doesNotMatch(e.message, /agent1 cannot/);
    return true;
  });
  await run.close();
  for (const a of AGENTS) assert.equal(fc.hosts.get(a)!.writes.length, 0);
});

test('a plan on bare hosts does not count a refused port on a server that is not running yet', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  fc.blocked.set('agent1', new Map([['10.9.0.11', 'refused']]));
  const run = await fc.open();
  const plan = await run.plan();
  await run.close();
  assert.deepEqual(plan.problems, []);
});

test('with the state file lost, the token of a running server is adopted (and the user told) instead of a new one', async (t) => {
  const fc = fakeCluster();
  t.after(fc.cleanup);
  await (await fc.open()).apply().then(() => undefined);
  const statePath = StateFile.pathFor(fc.file);
  const original = (parse(readFileSync(statePath, 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken!;
  writeFileSync(statePath, 'version: 1\ncluster: lab\nsecrets: {}\nhostKeys: {}\n');
  const run = await fc.open();
  assert.equal(run.deployment.secrets.k3sToken.reveal(), original);
  const warn = fc.events.find((e) => e.type === 'warning' && /held no k3s token, but server1 already runs k3s/.test(e.message));
  assert.ok(warn, JSON.stringify(fc.events));
  const plan = await run.plan();
  await run.close();
  // The datastore password was lost too and is generated anew, so the
  // servers' config changes, but no token problem is raised.
  assert.deepEqual(plan.problems.filter((p) => p.path === 'k3s.token'), []);
  assert.equal((parse(readFileSync(statePath, 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken, original);
  assert.equal(sha256(original).length, 64);
});

test('upgrade rules: a skipped minor, a downgrade and an unhealthy start are refused with the way out; --force lets an unhealthy one go', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 5 });
  t.after(fc.cleanup);
  writeFileSync(fc.binary, standInK3s('v1.31.4+k3s1'), { mode: 0o755 });
  await (await fc.open()).apply();
  const planWith = async (version: string, o: { force?: boolean } = {}) => {
    writeFileSync(fc.file, clusterYaml(fc.binary).replace('version: v1.31.4+k3s1', `version: ${version}`));
    writeFileSync(fc.binary, standInK3s(version), { mode: 0o755 });
    const run = await fc.open(o);
    try {
      return await run.plan();
    } finally {
      await run.close();
    }
  };
  const errors = (p: Awaited<ReturnType<typeof planWith>>) => p.problems.filter((x) => x.severity === 'error');
  const skip = errors(await planWith('v1.33.0+k3s1'));
  assert.ok(skip.some((p) => /server1 runs k3s v1\.31\.4\+k3s1, and the cluster file says v1\.33\.0\+k3s1: that skips 1 minor version/.test(p.message) && /set k3s\.version to the latest v1\.32\.x\+k3sN/.test(p.hint ?? '')), JSON.stringify(skip));
  assert.ok(skip.some((p) => p.message.startsWith('agent1 runs k3s v1.31.4+k3s1')));
  const down = errors(await planWith('v1.30.2+k3s1'));
  assert.ok(down.some((p) => /server1 runs k3s v1\.31\.4\+k3s1.*k3s does not support downgrades/.test(p.message) && /k8s-ha restore/.test(p.hint ?? '')));
  assert.ok(down.some((p) => /agent1 runs k3s v1\.31\.4\+k3s1, newer than the v1\.30\.2\+k3s1 the servers would run/.test(p.message)));
  // One minor up is fine; with a node NotReady it is refused unless --force.
  assert.deepEqual(errors(await planWith('v1.32.1+k3s1')), []);
  fc.notReady.add('agent2');
  const sick = errors(await planWith('v1.32.1+k3s1'));
  assert.match(sick[0]?.message ?? '', /the upgrade to v1\.32\.1\+k3s1 \(server1, server2 first\) would start on an unhealthy cluster: node agent2 is NotReady/);
  assert.match(sick[0]?.hint ?? '', /--force/);
  const forced = await planWith('v1.32.1+k3s1', { force: true });
  assert.deepEqual(errors(forced), []);
  // The plan shows the rollout: servers one at a time, agents one at a time, each drained.
  assert.deepEqual(forced.rollouts.map((r) => [r.phase, r.batches]), [['k3s-servers', [['server1'], ['server2']]], ['k3s-agents', [['agent1'], ['agent2'], ['agent3']]]]);
  assert.match(forced.rollouts[1]!.describe ?? '', /one agent at a time: cordon, drain/);
  const a1 = forced.steps.find((s) => s.host === 'agent1')!.changes;
  assert.deepEqual(a1.filter((c) => c.target.host !== 'agent1').map((c) => `${c.action} ${c.target.host} ${'object' in c.target ? c.target.object : ''}`), ['run server1 Lease/kube-system/kube-controller-manager,kube-scheduler', 'update server1 Node/agent1', 'run server1 Node/agent1', 'update server1 Node/agent1']);
  // First the control plane's leaders (a pod evicted while none leads is neither replaced nor dropped from its Services), then the cordon.
  assert.equal(a1[0]!.summary, 'wait until kube-controller-manager and kube-scheduler have leaders (a Lease holder renewing; up to 60 s) before agent1 is drained');
  assert.equal(a1[1]!.summary, 'cordon node agent1 (through server1)');
  assert.equal(a1.at(-1)!.summary, 'uncordon node agent1 once it is Ready');
});

test('a drain that fails stops the rollout at that agent with the reason and the fix; the others keep their version; apply again resumes', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 5 });
  t.after(fc.cleanup);
  writeFileSync(fc.binary, standInK3s('v1.31.4+k3s1'), { mode: 0o755 });
  await (await fc.open()).apply();
  writeFileSync(fc.file, clusterYaml(fc.binary).replace('version: v1.31.4+k3s1', 'version: v1.31.5+k3s1'));
  writeFileSync(fc.binary, standInK3s('v1.31.5+k3s1'), { mode: 0o755 });
  fc.hosts.get('server1')!.failNext(/kubectl .* drain agent2 /, { stderr: 'error when evicting pods/"web-1" -n "default" (will retry after 5s): Cannot evict pod as it would violate the pod\'s disruption budget.' });
  const run = await fc.open();
  await assert.rejects(run.apply(), (e: Error) => {
    assert.match(e.message, /agent2: k3s agents: draining agent2 did not finish: .*disruption budget.*agent2 stays cordoned and keeps its old version.*Fix: a PodDisruptionBudget allows no eviction now/s);
    return true;
  });
  await run.close();
  assert.equal(fc.hosts.get('agent1')!.text('/usr/local/bin/k3s'), standInK3s('v1.31.5+k3s1'));
  assert.equal(fc.hosts.get('agent2')!.text('/usr/local/bin/k3s'), standInK3s('v1.31.4+k3s1'));
  assert.equal(fc.hosts.get('agent3')!.text('/usr/local/bin/k3s'), standInK3s('v1.31.4+k3s1'));
  fc.drains.length = 0;
  await (await fc.open()).apply();
  assert.deepEqual(fc.drains, ['server1: cordon agent2', 'server1: drain agent2', 'server1: uncordon agent2', 'server1: cordon agent3', 'server1: drain agent3', 'server1: uncordon agent3']);
  for (const a of AGENTS) assert.equal(fc.hosts.get(a)!.text('/usr/local/bin/k3s'), standInK3s('v1.31.5+k3s1'));
});

test('with HAProxy the hold goes through the admin socket: drain, then maint, the restart, then ready; haproxy.cfg keeps the server disabled meanwhile, and is never reloaded', async (t) => {
  const fc = fakeCluster({ readyDelayMs: 10 });
  t.after(fc.cleanup);
  const haproxy = (extra = '') => clusterYaml(fc.binary, extra).replace('loadBalancer: {kind: nginx, port: 6443}', 'loadBalancer: {kind: haproxy, port: 6443}');
  writeFileSync(fc.file, haproxy());
  await (await fc.open()).apply();
  writeFileSync(fc.file, haproxy("  serverArgs: {kube-apiserver-arg: ['max-requests-inflight=500']}\n"));
  const run = await fc.open();
  const plan = await run.plan();
  assert.match(plan.steps[0]!.changes[1]!.summary, /^take server1 out of the API load balancer on infra \(HAProxy: drain, then maint, through its admin socket; /);
  const from = fc.restarts.length;
  await run.apply();
  await run.close();
  assert.deepEqual(fc.lbReloads.map((r) => r.down.join(' + ')), [
    'set server k3s_servers/server1 state drain + server1',
    'set server k3s_servers/server1 state maint + server1',
    'set server k3s_servers/server1 state ready',
    'set server k3s_servers/server2 state drain + server2',
    'set server k3s_servers/server2 state maint + server2',
    'set server k3s_servers/server2 state ready',
  ]);
  const restarts = fc.restarts.slice(from);
  assert.ok(fc.lbReloads[1]!.at <= restarts[0]!.at && fc.lbReloads[2]!.at >= restarts[0]!.readyAt, 'server1 was in maint from before its restart until it was ready');
  assert.equal(fc.hosts.get('infra')!.log.some((l) => /reload haproxy/.test(l)), false, 'HAProxy is not reloaded for a hold');
  assert.equal((await (await fc.open()).plan()).empty, true);
});
