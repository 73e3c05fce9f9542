import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, parseDocument } from 'yaml';
import { StateFile } from '../../src/cluster/state.js';
import { LB_HOLD_PATH } from '../../src/render/lbcheck.js';
import { ConnectionError } from '../../src/transport/host.js';
import type { ClusterHost } from '../../src/spec/cluster.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir, type CliResult } from './helpers.js';

/**
 * Nodes coming and going (issue 9), through the CLI in-process on the
 * simulated fleet (test/support/fleet.ts): `k8s-ha node remove NAME` and
 * `remove: true` run one removal pipeline; dead hosts with --force; the
 * refusals; an interrupted removal run again; hosts added; a re-installed
 * machine re-joined deliberately.
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

interface Setup {
  dir: string;
  file: string;
  fleet: Fleet;
  /** Hosts that cannot be reached (connect fails as a powered-off machine's does). */
  dead: Set<string>;
  /** Hosts whose SSH key changed (a re-installed machine). */
  rekeyed: Set<string>;
  cli(...argv: string[]): Promise<CliResult>;
  /** Edit the cluster file's YAML in place. */
  edit(fn: (hosts: { name: string; remove?: boolean; address?: string; roles?: string[] }[]) => void): void;
  state(): { hosts?: Record<string, string>; hostKeys: Record<string, string> };
}

async function applied(t: { after: (fn: () => void) => void }, example = SEED): Promise<Setup> {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(example, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const dead = new Set<string>();
  const rekeyed = new Set<string>();
  const connect = async (h: ClusterHost) => {
    if (dead.has(h.name)) throw new ConnectionError(h.name, `${h.address}:22`, 'connecting', 'connect EHOSTUNREACH (simulated: the machine is off)');
    // As the SSH transport refuses a changed key (transport/ssh.ts), unless accepted.
    if (rekeyed.has(h.name)) throw new ConnectionError(h.name, `${h.address}:22`, 'connecting', 'the host key has changed: pinned SHA256:old, offered SHA256:new', `... or run again with --accept-new-host-key ${h.name}`, { hostKeyChanged: true });
    return fleet.connect(h);
  };
  const s: Setup = {
    dir,
    file,
    fleet,
    dead,
    rekeyed,
    cli: (...argv) => runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect } } }),
    edit(fn) {
      const doc = parseDocument(readFileSync(file, 'utf8'));
      const hosts = doc.toJS().hosts as { name: string }[];
      fn(hosts);
      doc.set('hosts', doc.createNode(hosts));
      writeFileSync(file, doc.toString());
    },
    state: () => parse(readFileSync(StateFile.pathFor(file), 'utf8')) as ReturnType<Setup['state']>,
  };
  const r = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  return s;
}

const planJson = async (s: Setup, ...argv: string[]) => {
  const r = await s.cli(...argv, '--json');
  const text = r.stdout.trim().startsWith('{\n') ? r.stdout : r.stdout.split('\n')[0]!;
  return { r, plan: JSON.parse(text) as { empty: boolean; steps: { phase: string; host: string; changes: { action: string; target: Record<string, string>; summary: string }[] }[]; problems: { severity: string; message: string; hint?: string }[] } };
};

test('node remove of an agent: plan first, then cordon, drain, delete Node and its node-password secret, uninstall, forget — in that order', async (t) => {
  const s = await applied(t);
  assert.ok(s.fleet.kube.hasNodePassword('agent3'), 'the registration made a node-password secret');
  const { r, plan } = await planJson(s, 'node', 'remove', 'agent3', '--dry-run');
  assert.equal(r.code, 0, r.stderr);
  const step = plan.steps.find((x) => x.phase === 'node-removal')!;
  assert.deepEqual(
    step.changes.map((c) => `${c.action} ${c.target.host} ${c.target.object ?? ''}`),
    // First a wait for the control plane's leaders (k3s-leaders.ts): a pod evicted while none leads is neither replaced nor dropped from its Services.
    ['run server1 Lease/kube-system/kube-controller-manager,kube-scheduler', 'update server1 Node/agent3', 'run server1 Node/agent3', 'delete server1 Node/agent3', 'delete server1 Secret/kube-system/agent3.node-password.k3s', 'delete agent3 k3s agent'],
  );
  assert.deepEqual([...new Set(plan.steps.map((x) => x.phase))], ['node-removal', 'node-removal-forget'], 'an agent touches no load balancer and no account');
  assert.ok(s.fleet.hosts.get('agent3')!.services.get('k3s-agent')?.active, '--dry-run changed nothing');

  const off = await s.cli('node', 'remove', 'agent3');
  assert.equal(off.code, 2, 'off a terminal it needs --yes');
  assert.match(off.stderr, /--yes/);

  const done = await s.cli('node', 'remove', 'agent3', '--yes');
  assert.equal(done.code, 0, done.stderr + done.stdout);
  assert.deepEqual(s.fleet.kube.timeline.filter((e) => /agent3/.test(e)), ['cordon agent3', 'drain agent3', 'delete node agent3']);
  assert.equal(s.fleet.k3s.leases.reads.length, 1, 'the leaders were read once before the drain');
  assert.match(done.stdout, /leaders before draining agent3: kube-controller-manager held by server1_\S+, renewed 0\.0 s ago; kube-scheduler held by server1_\S+, renewed 0\.0 s ago \(waited \d+\.\d s\)/);
  assert.equal(s.fleet.kube.hasNodePassword('agent3'), false, 'the secret went with the Node');
  const a3 = s.fleet.timeline.filter((e) => e.startsWith('agent3 '));
  assert.equal(a3.at(-1), 'agent3 stop k3s-agent', 'uninstalled last');
  assert.equal(s.fleet.hosts.get('agent3')!.files.has('/usr/local/bin/k3s'), false);
  assert.ok(s.fleet.hosts.get('agent3')!.files.has('/etc/rancher/node/password'), 'the uninstall script keeps the node password (k3s#4865)');
  assert.equal(s.state().hosts?.agent3, undefined, 'forgotten in the state file');
  assert.match(done.stdout, /Now delete agent3 from/);

  // Still in the file without remove: true, it is a host to build again; deleted from the file, the cluster is converged.
  s.edit((hosts) => hosts.splice(hosts.findIndex((h) => h.name === 'agent3'), 1));
  const after = await planJson(s, 'plan');
  assert.equal(after.r.code, 0, after.r.stderr);
  assert.deepEqual(after.plan.problems, []);
  assert.equal(after.plan.empty, true, JSON.stringify(after.plan.steps.map((x) => x.changes.map((c) => c.summary))));
});

test('remove: true on a server and apply: out of nginx (reloaded) before its k3s stops, account dropped, MariaDB not restarted, forgotten; the next plan is empty', async (t) => {
  const s = await applied(t);
  const mariadbBefore = s.fleet.hosts.get('infra')!.services.get('mariadb')!;
  const restartsBefore = mariadbBefore.restarts + mariadbBefore.starts;
  s.edit((hosts) => (hosts.find((h) => h.name === 'server2')!.remove = true));
  const v = await s.cli('validate');
  assert.equal(v.code, 0, v.stderr + v.stdout);
  assert.match(v.stdout + v.stderr, /only one server once server2 is removed/);
  const { plan } = await planJson(s, 'plan');
  const phases = [...new Set(plan.steps.map((x) => x.phase))];
  assert.deepEqual(phases.slice(0, 2), ['loadbalancer', 'node-removal']);
  assert.ok(phases.indexOf('datastore') > phases.indexOf('node-removal'));
  assert.equal(phases.at(-1), 'node-removal-forget');
  // The hold (phases/lb-hold.ts) closes what is still open through the LB before anything else, and is forgotten after the uninstall.
  const removal = plan.steps.find((x) => x.phase === 'node-removal')!.changes.map((c) => `${c.target.host} ${c.target.object}`);
  assert.equal(removal[0], 'infra lb-upstream/server2');
  assert.deepEqual(removal.slice(-2), ['server2 k3s server', 'infra lb-upstream/server2']);

  const r = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const tl = s.fleet.timeline;
  const reload = tl.indexOf('infra reload nginx');
  const stop = tl.indexOf('server2 stop k3s');
  assert.ok(reload >= 0 && stop > reload, `nginx reloaded (${reload}) before server2's k3s stopped (${stop}): ${tl.slice(-12).join(', ')}`);
  const conf = [...s.fleet.machines.get('infra')!.running.get('nginx')!.values()].join('\n');
  assert.doesNotMatch(conf, /192\.168\.0\.158:6443/, 'server2 is in no upstream nginx runs');
  assert.match(conf, /192\.168\.0\.157:6443/);
  const db = s.fleet.mariadb('infra');
  assert.deepEqual([...db.users.keys()], ['192.168.0.157'], "server2's account is dropped");
  const m = s.fleet.hosts.get('infra')!.services.get('mariadb')!;
  assert.equal(m.restarts + m.starts, restartsBefore, 'MariaDB was not restarted (max_connections is set live)');
  assert.ok(db.scripts.some((x) => /^SET GLOBAL max_connections = 151;$/m.test(x)));
  assert.equal(s.fleet.hosts.get('server2')!.files.has('/usr/local/bin/k3s'), false);
  assert.equal(s.fleet.hosts.get('infra')!.files.has(LB_HOLD_PATH), false, 'no hold is left for a server of that name added later');
  assert.equal(s.state().hosts?.server2, undefined);
  assert.deepEqual(s.fleet.stale(), []);

  // Left in the file with remove: true: nothing more to do, with a note to delete it.
  const again = await planJson(s, 'plan');
  assert.equal(again.plan.empty, true, JSON.stringify(again.plan.steps.map((x) => x.changes.map((c) => c.summary))));
  assert.match(again.r.stderr, /server2 has remove: true but .* records no apply to it/);
});

test('what removal refuses: the last server, a load balancer or datastore host, a host nobody knows — exit 2, no host touched', async (t) => {
  const s = await applied(t);
  const before = [...s.fleet.hosts.values()].map((h) => `${h.name} ${h.writes.length} ${h.log.length}`);
  s.edit((hosts) => (hosts.find((h) => h.name === 'server2')!.remove = true));
  const last = await s.cli('node', 'remove', 'server1', '--yes');
  assert.equal(last.code, 2, last.stderr);
  assert.match(last.stderr, /would remove the last server/);
  const v = await s.cli('validate');
  assert.equal(v.code, 0);
  s.edit((hosts) => {
    for (const h of hosts) if (h.roles?.includes('server')) h.remove = true;
  });
  const both = await s.cli('validate');
  assert.equal(both.code, 2);
  assert.match(both.stdout + both.stderr, /would remove the last server/);
  s.edit((hosts) => {
    for (const h of hosts) delete h.remove;
  });
  const infra = await s.cli('node', 'remove', 'infra', '--yes');
  assert.equal(infra.code, 2);
  assert.match(infra.stderr, /"infra" is a loadbalancer and datastore host; remove: true takes out k3s nodes/);
  const nobody = await s.cli('node', 'remove', 'agent9', '--yes');
  assert.equal(nobody.code, 2);
  assert.match(nobody.stderr, /no host named "agent9"/);
  assert.deepEqual([...s.fleet.hosts.values()].map((h) => `${h.name} ${h.writes.length} ${h.log.length}`), before, 'a refused removal contacts no host');
});

test('a dead agent: refused with the way out; with --force its Node and secret go through a server, nothing is tried on it, it is forgotten', async (t) => {
  const s = await applied(t);
  s.dead.add('agent2');
  const refused = await s.cli('node', 'remove', 'agent2', '--yes');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /agent2 is to be removed but cannot be reached .*EHOSTUNREACH/);
  assert.match(refused.stderr, /run again with --force/);
  assert.ok(s.state().hosts?.agent2);
  const forced = await s.cli('node', 'remove', 'agent2', '--yes', '--force');
  assert.equal(forced.code, 0, forced.stderr + forced.stdout);
  assert.match(forced.stdout + forced.stderr, /removed without being drained or uninstalled/);
  assert.deepEqual(s.fleet.kube.timeline.filter((e) => /agent2/.test(e)), ['delete node agent2']);
  assert.equal(s.fleet.kube.hasNodePassword('agent2'), false);
  assert.equal(s.state().hosts?.agent2, undefined);
});

test('a dead server with remove: true and --force: out of the upstreams and the accounts, its Node deleted, the rest untouched', async (t) => {
  const s = await applied(t);
  s.dead.add('server2');
  s.edit((hosts) => (hosts.find((h) => h.name === 'server2')!.remove = true));
  const refused = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /server2 is to be removed but cannot be reached/);
  const events = { ...s.fleet.serviceEvents() };
  const r = await s.cli('apply', '--yes', '--no-verify', '--force');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.deepEqual([...s.fleet.mariadb('infra').users.keys()], ['192.168.0.157']);
  assert.doesNotMatch([...s.fleet.machines.get('infra')!.running.get('nginx')!.values()].join('\n'), /192\.168\.0\.158/);
  assert.ok(s.fleet.kube.deletedNodes.includes('server2'));
  const changed = Object.entries(s.fleet.serviceEvents()).filter(([k, n]) => n !== events[k]).map(([k]) => k);
  assert.deepEqual(changed.filter((k) => !k.startsWith('infra/')), [], 'no unit on a server or agent was started, restarted or stopped');
});

test('an interrupted removal run again converges: only the rest is planned', async (t) => {
  const s = await applied(t);
  s.fleet.dropConnectionAt('agent1', /k3s-agent-uninstall\.sh$/);
  const cut = await s.cli('node', 'remove', 'agent1', '--yes');
  assert.equal(cut.code, 1, cut.stdout);
  assert.ok(s.fleet.kube.deletedNodes.includes('agent1'), 'it got as far as the Node');
  assert.ok(s.state().hosts?.agent1, 'not forgotten while unfinished');
  s.fleet.hosts.get('agent1')!.reconnect();
  const { plan } = await planJson(s, 'node', 'remove', 'agent1', '--dry-run');
  assert.deepEqual(plan.steps.flatMap((x) => x.changes.map((c) => `${c.action} ${c.target.host} ${c.target.object}`)), ['delete agent1 k3s agent', 'delete infra state-file/hosts/agent1']);
  const again = await s.cli('node', 'remove', 'agent1', '--yes');
  assert.equal(again.code, 0, again.stderr + again.stdout);
  assert.equal(s.fleet.hosts.get('agent1')!.files.has('/usr/local/bin/k3s'), false);
  assert.equal(s.state().hosts?.agent1, undefined);
});

test('a host gone from the file is refused with `k8s-ha node remove`, which removes it from what the state file recorded', async (t) => {
  const s = await applied(t);
  s.edit((hosts) => hosts.splice(hosts.findIndex((h) => h.name === 'agent3'), 1));
  const p = await s.cli('plan');
  assert.equal(p.code, 1);
  assert.match(p.stdout + p.stderr, /agent3 \(agent, 192\.168\.0\.163\) was applied to this cluster/);
  assert.match(p.stdout + p.stderr, /k8s-ha node remove agent3/);
  const r = await s.cli('node', 'remove', 'agent3', '--yes');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.ok(s.fleet.kube.deletedNodes.includes('agent3'));
  assert.equal(s.fleet.hosts.get('agent3')!.files.has('/usr/local/bin/k3s'), false);
  const after = await s.cli('plan', '--detailed-exitcode');
  assert.equal(after.code, 0, after.stderr + after.stdout);
});

test('hosts added to the file join on apply: an agent, and a server (its account, every upstream; tls-san unchanged, no other server restarted)', async (t) => {
  const s = await applied(t);
  const restarts = s.fleet.k3s.restarts.length;
  s.edit((hosts) => {
    hosts.push({ name: 'agent4', address: '192.168.0.164', roles: ['agent'] });
    hosts.push({ name: 'server3', address: '192.168.0.159', roles: ['server'] });
  });
  const r = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(s.fleet.k3s.nodeReady('agent4'), true);
  assert.equal(s.fleet.k3s.nodeReady('server3'), true);
  assert.deepEqual([...s.fleet.mariadb('infra').users.keys()].sort(), ['192.168.0.157', '192.168.0.158', '192.168.0.159']);
  assert.match([...s.fleet.machines.get('infra')!.running.get('nginx')!.values()].join('\n'), /192\.168\.0\.159:6443/);
  assert.deepEqual(s.fleet.k3s.restarts.slice(restarts).map((x) => x.host), ['server3'], 'only the new server started; server1 and server2 kept running');
  assert.deepEqual(s.fleet.stale(), []);
  const again = await s.cli('plan', '--detailed-exitcode');
  assert.equal(again.code, 0, again.stdout);
});

test('a re-installed agent (new machine, same name) is recognised: the plan deletes the old Node and its secret before the new k3s joins', async (t) => {
  const s = await applied(t);
  s.fleet.recreate('agent1');
  const { plan } = await planJson(s, 'plan');
  const step = plan.steps.find((x) => x.phase === 'k3s-agents' && x.host === 'agent1')!;
  assert.deepEqual(step.changes.slice(0, 2).map((c) => `${c.action} ${c.target.object}`), ['delete Node/agent1', 'delete Secret/kube-system/agent1.node-password.k3s']);
  assert.match(step.changes[0]!.summary, /agent1 was re-installed: it has no \/etc\/rancher\/node\/password/);
  const r = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal((s.fleet.machines.get('agent1')!.journal.get('k3s-agent') ?? []).some((l) => /Node password rejected/.test(l)), false, 'no join was refused');
  const nodes = JSON.parse(s.fleet.kube.kubectl('/usr/local/bin/k3s kubectl get nodes -o json', '').stdout) as { items: { metadata: { name: string }; status: { conditions: { status: string }[] } }[] };
  assert.equal(nodes.items.find((n) => n.metadata.name === 'agent1')?.status.conditions[0]?.status, 'True');
  // An agent whose k3s was only uninstalled keeps its password file: no deletion planned, it re-joins as itself.
  const again = await planJson(s, 'plan');
  assert.equal(again.plan.empty, true);
});

test('the simulated API refuses a re-installed machine that joins over its old node-password secret (why the re-join deletes it first)', async (t) => {
  const s = await applied(t);
  const fresh = s.fleet.recreate('agent2');
  assert.equal(s.fleet.k3s.passwordAccepted(fresh, 'agent2', s.fleet.machines.get('server1')!, 'k3s-agent'), false);
  assert.match((fresh.journal.get('k3s-agent') ?? []).join('\n'), /Node password rejected/);
});

test('an agent whose host key changed is no unreachable agent: the run stops with --accept-new-host-key, it does not go on without it', async (t) => {
  const s = await applied(t);
  s.fleet.recreate('agent2');
  s.rekeyed.add('agent2');
  const r = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /agent2 .*the host key has changed.*--accept-new-host-key agent2/s);
  assert.doesNotMatch(r.stdout + r.stderr, /left out of this run/);
  assert.equal(s.fleet.hosts.get('agent2')!.writes.length, 0, 'nothing was done on it');
});

test('a re-installed server is recognised too: its old Node and secret are deleted through the other server before it joins', async (t) => {
  const s = await applied(t);
  s.fleet.recreate('server2');
  const { plan } = await planJson(s, 'plan');
  const step = plan.steps.find((x) => x.phase === 'k3s-servers' && x.host === 'server2')!;
  assert.deepEqual(step.changes.slice(0, 2).map((c) => `${c.action} ${c.target.host} ${c.target.object}`), ['delete server1 Node/server2', 'delete server1 Secret/kube-system/server2.node-password.k3s']);
  const r = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(s.fleet.k3s.nodeReady('server2'), true);
  assert.equal((await planJson(s, 'plan')).plan.empty, true);
});

test('reset also takes apart a host marked remove: true that was not removed yet', async (t) => {
  const s = await applied(t);
  s.edit((hosts) => (hosts.find((h) => h.name === 'agent3')!.remove = true));
  const r = await s.cli('reset', '--yes');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.ok(s.fleet.kube.deletedNodes.includes('agent3'));
  assert.equal(s.fleet.hosts.get('agent3')!.files.has('/usr/local/bin/k3s'), false);
});

test('with two HAProxy load balancers and a VIP, a leaving server is held out on both (drain, then maint) and both configs lose it', async (t) => {
  const s = await applied(t, join(import.meta.dirname, '../../examples/ha-vip-haproxy.yaml'));
  const lbs = s.fleet.cluster.hosts.filter((h) => h.roles.includes('loadbalancer')).map((h) => h.name);
  const server = s.fleet.cluster.hosts.filter((h) => h.roles.includes('server')).at(-1)!;
  const r = await s.cli('node', 'remove', server.name, '--yes');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  for (const lb of lbs) {
    const h = s.fleet.hosts.get(lb)!;
    assert.ok(h.log.some((c) => c.includes(`state drain`) && c.includes(server.name)), `${lb}: drained through the admin socket`);
    assert.doesNotMatch(h.text('/etc/haproxy/haproxy.cfg') ?? '', new RegExp(`${server.address.replace(/\./g, '\\.')}:6443`));
    assert.equal(h.files.has(LB_HOLD_PATH), false);
  }
  assert.ok(s.fleet.kube.deletedNodes.includes(server.name));
});
