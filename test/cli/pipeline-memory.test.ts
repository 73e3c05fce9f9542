import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { StateFile } from '../../src/cluster/state.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir, type CliResult } from './helpers.js';

/**
 * The whole pipeline (cluster/pipelines.ts, with its real options) through the
 * CLI in-process, on simulated bare Debian 12 machines (test/support/fleet.ts):
 * what a newcomer does with `plan` and `apply` on the examples.
 */

const EXAMPLES = join(import.meta.dirname, '../../examples');
const SEED = join(EXAMPLES, 'seed.yaml');
const HA_VIP = join(EXAMPLES, 'ha-vip-haproxy.yaml');

interface Setup {
  dir: string;
  file: string;
  fleet: Fleet;
  /** Every CLI result so far (for the secrets check). */
  outputs: CliResult[];
  cli(...argv: string[]): Promise<CliResult>;
}

function setup(t: { after: (fn: () => void) => void }, example: string): Setup {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(example, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const outputs: CliResult[] = [];
  return {
    dir,
    file,
    fleet,
    outputs,
    async cli(...argv) {
      const r = await runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
      outputs.push(r);
      return r;
    },
  };
}

const secretsOf = (s: Setup): Record<string, string> => (parse(readFileSync(StateFile.pathFor(s.file), 'utf8')) as { secrets: Record<string, string> }).secrets;

for (const [label, example, hostCount] of [
  ['the seed example', SEED, 6],
  ['the HA example (two HAProxy hosts with a virtual IP, TLS to MariaDB)', HA_VIP, 8],
] as const) {
  test(`plan on bare hosts of ${label} lists changes on every host and changes nothing`, async (t) => {
    const s = setup(t, example);
    const r = await s.cli('plan', '--json');
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout) as { empty: boolean; problems: unknown[]; steps: { phase: string; host: string }[] };
    assert.equal(plan.empty, false);
    assert.deepEqual(plan.problems, []);
    assert.equal(new Set(plan.steps.map((x) => x.host)).size, hostCount);
    assert.deepEqual([...new Set(plan.steps.map((x) => x.phase))], s.fleet.cluster.loadBalancer.virtualIP ? ['loadbalancer', 'vip', 'datastore', 'k3s-servers', 'k3s-agents', 'metallb'] : ['loadbalancer', 'datastore', 'k3s-servers', 'k3s-agents', 'metallb']);
    for (const h of s.fleet.hosts.values()) {
      assert.deepEqual(h.writes, [], `plan wrote to ${h.name}`);
      assert.equal(h.packages.size, 0, `plan installed on ${h.name}`);
      assert.deepEqual(h.log.filter((c) => /apt-get install|systemctl (start|restart|reload|enable)|--no-block/.test(c)), [], `plan changed ${h.name}`);
    }
    const exit = await s.cli('plan', '--detailed-exitcode');
    assert.equal(exit.code, 3);
  });

  test(`apply converges ${label}; a second plan says No changes and a second apply changes and restarts nothing`, async (t) => {
    const s = setup(t, example);
    const first = await s.cli('apply', '--yes', '--no-verify');
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.match(first.stdout, /Applied \d+ changes/);
    assert.deepEqual(s.fleet.stale(), [], 'a daemon runs an older config than the one on disk');
    // Every agent is a Ready node and MetalLB's pool is in place.
    for (const h of s.fleet.cluster.hosts.filter((x) => x.roles.includes('agent'))) assert.equal(s.fleet.k3s.nodeReady(h.name), true, `${h.name} is not a Ready node`);
    assert.ok(s.fleet.kube.objects.has('IPAddressPool/default'));

    const events = s.fleet.serviceEvents();
    const logAt = new Map([...s.fleet.hosts].map(([n, h]) => [n, h.log.length]));
    const plan = await s.cli('plan');
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /No changes\. Every host matches the cluster file\./);
    assert.equal((await s.cli('plan', '--detailed-exitcode')).code, 0);
    const again = await s.cli('apply', '--yes', '--no-verify');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /No changes/);
    assert.deepEqual(s.fleet.serviceEvents(), events, 'a service was started, restarted, reloaded or stopped');
    for (const [n, h] of s.fleet.hosts) {
      const later = h.log.slice(logAt.get(n));
      assert.deepEqual(later.filter((c) => /apt-get install|systemctl (start|restart|reload|stop|enable|disable)|--no-block restart|mariadb --batch.*(CREATE|ALTER|DROP)| apply /.test(c)), [], `${n} was changed`);
    }
    assert.equal(s.fleet.k3s.restarts.length, s.fleet.cluster.hosts.filter((x) => x.roles.includes('server')).length, 'each server started once');
  });
}

test('the state file is written 0600 beside the cluster file and its token is reused on the next run', async (t) => {
  const s = setup(t, SEED);
  assert.equal((await s.cli('apply', '--yes', '--no-verify')).code, 0);
  const path = join(s.dir, 'cluster.state.yaml');
  assert.equal(StateFile.pathFor(s.file), path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const { k3sToken, datastorePassword } = secretsOf(s);
  assert.ok(k3sToken && k3sToken.length >= 32);
  assert.ok(datastorePassword && datastorePassword.length >= 16);
  // The servers run with that token, and the datastore's bootstrap data is encrypted with it.
  assert.ok(s.fleet.hosts.get('server1')!.text('/etc/rancher/k3s/config.yaml')!.includes(k3sToken));
  assert.deepEqual([...s.fleet.mariadb('infra').bootstrap.values()], [k3sToken]);
  assert.equal((await s.cli('apply', '--yes', '--no-verify')).code, 0);
  assert.equal(secretsOf(s).k3sToken, k3sToken);
  assert.equal(secretsOf(s).datastorePassword, datastorePassword);
  assert.equal(statSync(path).mode & 0o777, 0o600);
});

test('an apply cut off by a dropped connection is re-run and converges', async (t) => {
  const s = setup(t, SEED);
  const server2 = s.fleet.hosts.get('server2')!;
  // In the middle of server2's changes: its files are written, systemd not told yet.
  s.fleet.dropConnectionAt('server2', /^systemctl daemon-reload$/);
  const cut = await s.cli('apply', '--yes', '--no-verify');
  assert.notEqual(cut.code, 0);
  assert.match(cut.stdout + cut.stderr, /server2.*connection was lost/s);
  assert.ok(server2.writes.includes('/etc/rancher/k3s/config.yaml'));
  assert.equal(s.fleet.hosts.get('agent1')!.writes.length, 0, 'the agents were changed after a server failed');
  server2.reconnect();
  const rerun = await s.cli('apply', '--yes', '--no-verify');
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.equal((await s.cli('plan', '--detailed-exitcode')).code, 0);
  assert.deepEqual(s.fleet.stale(), []);
  for (const a of ['agent1', 'agent2', 'agent3']) assert.equal(s.fleet.k3s.nodeReady(a), true);
});

test(
  'an apply cut off after nginx.conf was written but before nginx took it up plans the restart again',
  async (t) => {
    const s = setup(t, SEED);
    // The connection drops as the restart is sent: systemd never gets it.
    s.fleet.dropConnectionAt('infra', /^systemctl restart nginx$/);
    assert.notEqual((await s.cli('apply', '--yes', '--no-verify')).code, 0);
    s.fleet.hosts.get('infra')!.reconnect();
    assert.deepEqual(s.fleet.stale(), ['infra nginx: /etc/nginx/nginx.conf', 'infra nginx: /etc/nginx/k8s-ha-upstream.conf']);
    const plan = await s.cli('plan');
    // A re-run of apply would then fail: the agents cannot join through an nginx without the stream block.
    assert.match(plan.stdout, /(restart|reload) nginx/);
  },
);

test('--json plan is parseable and the token and the datastore password appear in no output, plan, event line or command', async (t) => {
  const s = setup(t, HA_VIP);
  const plan = await s.cli('plan', '--json');
  assert.equal(plan.code, 0);
  const parsed = JSON.parse(plan.stdout) as { steps: { changes: { summary: string; diff?: string }[] }[] };
  assert.match(JSON.stringify(parsed), /\*{8}/, 'the plan shows secrets masked');
  const apply = await s.cli('apply', '--yes', '--no-verify', '--json');
  assert.equal(apply.code, 0, apply.stderr);
  // JSON lines: every event line parses.
  const lines = apply.stderr.trim().split('\n');
  assert.ok(lines.length > 10);
  for (const l of lines) JSON.parse(l);
  await s.cli('plan', '--json');
  await s.cli('apply', '--yes', '--no-verify');
  const secrets = secretsOf(s);
  const shown = [...s.outputs.flatMap((r) => [r.stdout, r.stderr]), ...[...s.fleet.hosts.values()].flatMap((h) => h.log)].join('\n');
  for (const name of ['k3sToken', 'datastorePassword', 'vrrpPass']) {
    const v = secrets[name];
    assert.ok(v && v.length >= 8, `no ${name} in the state file`);
    assert.ok(!shown.includes(v), `${name} is visible`);
  }
  // They did reach the hosts: in 0600 files and on MariaDB's stdin.
  assert.ok(s.fleet.mariadb('db').scripts.some((x) => x.includes(secrets.datastorePassword!)));
  assert.equal(s.fleet.hosts.get('cp1')!.files.get('/etc/rancher/k3s/config.yaml')!.mode, 0o600);
});
