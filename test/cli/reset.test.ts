import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { StateFile } from '../../src/cluster/state.js';
import { simulatedFleet } from '../support/fleet.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir } from './helpers.js';

/** `k8s-ha reset` through the CLI in-process on the simulated fleet; the lab runs the real scripts. */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');
const K3S_FILES = /^\/(etc\/rancher|var\/lib\/rancher|usr\/local\/bin\/k3s|etc\/systemd\/system\/k3s)/;

function setup(t: { after: (fn: () => void) => void }) {
  const dir = tempDir(t);
  const src = readFileSync(SEED, 'utf8').replace(/^datastore:\n/m, 'datastore:\n  backup: {schedule: daily, keep: 3}\n');
  const { file, text } = offlineCluster({ text: src }, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const cli = (argv: string[], o: { tty?: boolean; answers?: string[] } = {}) => runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } }, ...o });
  return { dir, file, fleet, cli };
}

test('reset deletes the agents\' Node objects while the API answers, then uninstalls k3s from agents and servers; the datastore is kept and apply builds the cluster again on it', async (t) => {
  const s = setup(t);
  assert.equal((await s.cli(['apply', '--yes', '--no-verify'])).code, 0);
  const dry = await s.cli(['reset', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  for (const a of ['agent1', 'agent2', 'agent3']) assert.match(dry.stdout, new RegExp(`- delete Node ${a} \\(through server1's API`));
  assert.match(dry.stdout, /run \/usr\/local\/bin\/k3s-agent-uninstall\.sh/);
  assert.match(dry.stdout, /run \/usr\/local\/bin\/k3s-uninstall\.sh/);
  assert.doesNotMatch(dry.stdout, /drop database/);
  assert.equal(s.fleet.kube.deletedNodes.length, 0, '--dry-run deleted nodes');

  const off = await s.cli(['reset']);
  assert.equal(off.code, 2);
  assert.match(off.stderr, /say so with --yes/);

  const r = await s.cli(['reset', '--yes']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.deepEqual(s.fleet.kube.deletedNodes, ['agent1', 'agent2', 'agent3']);
  for (const n of ['server1', 'server2', 'agent1', 'agent2', 'agent3']) {
    const h = s.fleet.hosts.get(n)!;
    // k3s's uninstall keeps the node password, so the machine can join again as itself (FACTS).
    assert.deepEqual([...h.files.keys()].filter((p) => K3S_FILES.test(p) && p !== '/etc/rancher/node/password'), [], `${n} still has k3s files`);
    assert.ok(h.files.has('/etc/rancher/node/password'), `${n} lost its node password`);
    assert.equal(h.services.has('k3s') || h.services.has('k3s-agent'), false, `${n} still has a k3s unit`);
  }
  assert.ok(s.fleet.mariadb('infra').databases.has('k3s'), 'reset without --datastore dropped the database');
  assert.ok(existsSync(StateFile.pathFor(s.file)), 'the state file went without --forget');
  const again = await s.cli(['reset', '--yes']);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /Nothing to reset/);
  const rebuilt = await s.cli(['apply', '--yes', '--no-verify']);
  assert.equal(rebuilt.code, 0, rebuilt.stderr + rebuilt.stdout);
  for (const a of ['agent1', 'agent2', 'agent3']) assert.equal(s.fleet.k3s.nodeReady(a), true);
});

test('reset --datastore asks for the cluster name on a terminal, then drops the database, the accounts and the backup timer; --forget removes the state file', async (t) => {
  const s = setup(t);
  assert.equal((await s.cli(['apply', '--yes', '--no-verify'])).code, 0);
  const infra = s.fleet.hosts.get('infra')!;
  assert.ok(infra.files.has('/etc/systemd/system/k8s-ha-backup.timer'));
  const no = await s.cli(['reset', '--datastore'], { tty: true, answers: ['y'] });
  assert.equal(no.code, 0);
  assert.match(no.stdout, /Nothing changed/);
  assert.ok(s.fleet.mariadb('infra').databases.has('k3s'));
  assert.ok(s.fleet.hosts.get('server1')!.files.has('/usr/local/bin/k3s'));

  const yes = await s.cli(['reset', '--datastore', '--forget'], { tty: true, answers: ['seed'] });
  assert.equal(yes.code, 0, yes.stderr + yes.stdout);
  const db = s.fleet.mariadb('infra');
  assert.equal(db.databases.has('k3s'), false);
  assert.equal(db.users.size, 0);
  for (const p of ['/etc/systemd/system/k8s-ha-backup.timer', '/etc/k8s-ha/backup-secrets.json', '/etc/mysql/mariadb.conf.d/60-k8s-ha.cnf']) assert.equal(infra.files.has(p), false, `${p} is still there`);
  assert.equal(existsSync(StateFile.pathFor(s.file)), false);
});

test('apply records on each host the packages it installed (absent before); reset purges those once it removes everything k8s-ha runs there, and leaves the packages that were there before', async (t) => {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  // curl was on every machine before k8s-ha; nginx and MariaDB were not.
  const fleet = simulatedFleet(text, { env: { HOME: dir }, preinstalled: ['curl'] });
  const cli = (argv: string[]) => runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
  assert.equal((await cli(['apply', '--yes', '--no-verify'])).code, 0);
  const infra = fleet.hosts.get('infra')!;
  const record = infra.text('/var/lib/k8s-ha/installed-packages')!.split('\n').filter(Boolean);
  assert.ok(record.includes('mariadb-server') && record.includes('nginx-light'), record.join(' '));
  assert.ok(!record.includes('curl'), 'curl was there before: not k8s-ha\'s');
  const installed = [...infra.packages.keys()].filter((p) => p !== 'curl');

  // infra is the load balancer and the datastore: --datastore alone keeps its packages (the LB still uses them).
  const half = await cli(['reset', '--datastore', '--yes']);
  assert.equal(half.code, 0, half.stderr + half.stdout);
  assert.doesNotMatch(half.stdout, /purge/);
  for (const p of installed) assert.ok(infra.packages.has(p), `${p} went with --datastore alone`);

  const dry = await cli(['reset', '--datastore', '--loadbalancer', '--dry-run']);
  assert.match(dry.stdout, new RegExp(`purge ${record.join(' ')} \\(k8s-ha installed them: they were not on infra before\\), and MariaDB's data folder /var/lib/mysql`));
  const full = await cli(['reset', '--datastore', '--loadbalancer', '--yes']);
  assert.equal(full.code, 0, full.stderr + full.stdout);
  assert.deepEqual([...infra.packages.keys()], ['curl'], 'only what was there before stays');
  assert.equal(infra.files.has('/var/lib/k8s-ha/installed-packages'), false);
  assert.equal(infra.services.has('nginx') || infra.services.has('mariadb'), false);
  for (const n of ['server1', 'agent1']) assert.deepEqual([...fleet.hosts.get(n)!.packages.keys()], ['curl']);
  // A second reset has nothing left to remove.
  const again = await cli(['reset', '--datastore', '--loadbalancer', '--dry-run']);
  assert.doesNotMatch(again.stdout, /purge/);
});
