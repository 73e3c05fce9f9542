import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { parse } from 'yaml';
import { openArchive, spoolPart, writeArchive } from '../../src/backup/archive.js';
import { entryBuffer } from '../../src/backup/tar.js';
import { StateFile } from '../../src/cluster/state.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import { insertRow, type FakeKineTable } from '../support/fleet-kine.js';
import { kineTable } from '../support/fleet-mariadb.js';
import { offlineCluster, standInK3s } from '../support/offline-example.js';
import { runCli, tempDir, type CliResult } from './helpers.js';

/**
 * `k8s-ha restore` through the CLI in-process on the simulated fleet: onto
 * the same machines, onto fresh ones, cut off halfway, and each refusal.
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

interface Setup {
  dir: string;
  file: string;
  fleet: Fleet;
  outputs: CliResult[];
  cli(argv: string[], opts?: { tty?: boolean; answers?: string[] }): Promise<CliResult>;
}

function setup(t: { after: (fn: () => void) => void }, dir = tempDir(t), text?: string): Setup {
  const made = text ? { file: join(dir, 'cluster.yaml'), text } : offlineCluster(SEED, dir);
  const fleet = simulatedFleet(made.text, { env: { HOME: dir } });
  const outputs: CliResult[] = [];
  return {
    dir,
    file: made.file,
    fleet,
    outputs,
    async cli(argv, opts = {}) {
      const r = await runCli([...argv, '-f', made.file], { cwd: dir, hooks: { open: { connect: fleet.connect } }, ...opts });
      outputs.push(r);
      return r;
    },
  };
}

const table = (s: Setup): FakeKineTable => kineTable(s.fleet.machines.get('infra')!, s.fleet.mariadb('infra'), 'k3s')!;
const names = (t: FakeKineTable) => t.rows.filter((r) => r.name.startsWith('/registry/')).map((r) => `${r.id} ${r.name} ${r.value.toString()}`);
const secrets = (s: Setup) => (parse(readFileSync(StateFile.pathFor(s.file), 'utf8')) as { secrets: Record<string, string> }).secrets;

async function appliedWithBackup(t: { after: (fn: () => void) => void }): Promise<{ s: Setup; archive: string; atBackup: string[]; backupRows: number }> {
  const s = setup(t);
  const a = await s.cli(['apply', '--yes', '--no-verify']);
  assert.equal(a.code, 0, a.stderr + a.stdout);
  const tb = table(s);
  for (let i = 0; i < 40; i++) insertRow(tb, `/registry/configmaps/default/cm-${i}`, `v${i}`);
  const b = await s.cli(['backup', '-o', 'b.tar']);
  assert.equal(b.code, 0, b.stderr + b.stdout);
  return { s, archive: join(s.dir, 'b.tar'), atBackup: names(tb), backupRows: tb.rows.length };
}

test('restore onto the same machines: agents then servers stopped, the dump loaded, the revision moved above every one served, servers started one at a time, then agents', async (t) => {
  const { s, atBackup, backupRows } = await appliedWithBackup(t);
  // After the backup the cluster goes on: objects deleted, changed and added.
  const tb = table(s);
  tb.rows.splice(tb.rows.findIndex((r) => r.name.endsWith('cm-3')), 1);
  for (let i = 0; i < 25; i++) insertRow(tb, `/registry/configmaps/default/new-${i}`, 'later');
  const servedBefore = tb.autoIncrement - 1;
  const restartsBefore = s.fleet.k3s.restarts.length;
  const logLen = new Map([...s.fleet.hosts].map(([n, h]) => [n, h.log.length]));

  const dry = await s.cli(['restore', 'b.tar', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr + dry.stdout);
  assert.match(dry.stdout, new RegExp(`Restore b\\.tar: cluster seed, taken .*, ${backupRows} kine rows`));
  // Same machines: their node passwords are the backup's, nothing to write, no secret removed.
  assert.doesNotMatch(dry.stdout, /node password|node-password/);
  assert.match(dry.stdout, /stop k3s-agent \(until the datastore is restored\)/);
  assert.match(dry.stdout, new RegExp(`replace its ${tb.rows.length} rows \\(revision ${servedBefore}\\) in k3s with the backup's ${backupRows} rows`));
  assert.match(dry.stdout, /start k3s\b/);
  assert.equal(names(table(s)).length, atBackup.length - 1 + 25, '--dry-run changed the data');

  const r = await s.cli(['restore', 'b.tar', '--yes', '--no-verify']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const after = table(s);
  assert.deepEqual(names(after), atBackup, 'the objects are not exactly as at backup time');
  assert.ok(after.autoIncrement > servedBefore, `the next revision ${after.autoIncrement} reuses one already served (${servedBefore})`);
  assert.match(r.stdout, new RegExp(`the next kine revision is above ${servedBefore}`));
  assert.equal(s.fleet.hosts.get('infra')!.text('/var/lib/k8s-ha/kine-revision-floor'), `${servedBefore}\n`);

  // Order: every agent stopped before any server; the load after both; servers started one at a time, then agents.
  const order: string[] = [];
  for (const [n, h] of s.fleet.hosts) h.log.slice(logLen.get(n)).forEach((c, i) => order.push(`${String(i).padStart(4)} ${n} ${c}`));
  const stops = [...s.fleet.hosts].flatMap(([n, h]) => h.log.slice(logLen.get(n)).filter((c) => /^systemctl stop k3s/.test(c)).map(() => n));
  assert.deepEqual(stops.sort(), ['agent1', 'agent2', 'agent3', 'server1', 'server2']);
  const starts = s.fleet.k3s.restarts.slice(restartsBefore).filter((x) => x.host.startsWith('server'));
  assert.deepEqual(starts.map((x) => x.host), ['server1', 'server2']);
  assert.ok(starts[1]!.at >= starts[0]!.readyAt, 'server2 started before server1 was ready');
  for (const a of ['agent1', 'agent2', 'agent3']) assert.equal(s.fleet.k3s.nodeReady(a), true, `${a} is not Ready after the restore`);
  assert.deepEqual(s.fleet.stale(), []);

  // A second plan has nothing to do: the restored cluster is what the file says.
  const plan = await s.cli(['plan', '--detailed-exitcode']);
  assert.equal(plan.code, 0, plan.stdout);
  for (const o of s.outputs) for (const v of Object.values(secrets(s))) assert.ok(!(o.stdout + o.stderr).includes(v), 'a secret was printed');
});

test('restore onto fresh machines with the cluster file and the backup only: the datastore, servers and agents come back with the objects', async (t) => {
  const { s, archive, atBackup } = await appliedWithBackup(t);
  const freshDir = tempDir(t);
  writeFileSync(join(freshDir, 'b.tar'), readFileSync(archive), { mode: 0o600 });
  const fresh = setup(t, freshDir, readFileSync(s.file, 'utf8'));
  writeFileSync(fresh.file, readFileSync(s.file, 'utf8'));
  assert.equal(existsSync(StateFile.pathFor(fresh.file)), false);
  const r = await fresh.cli(['restore', 'b.tar', '--yes', '--no-verify']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.deepEqual(names(table(fresh)), atBackup);
  assert.equal(secrets(fresh).k3sToken, secrets(s).k3sToken, 'the backup\'s token is not in the new state file');
  for (const h of ['agent1', 'agent2', 'agent3', 'server1', 'server2']) {
    assert.equal(fresh.fleet.k3s.nodeReady(h), true, `${h} did not come back`);
    // The node password the restored datastore knows it by: the old machine's, 0600, before k3s started.
    const pw = fresh.fleet.hosts.get(h)!.files.get('/etc/rancher/node/password')!;
    assert.equal(pw.content.toString(), s.fleet.hosts.get(h)!.text('/etc/rancher/node/password'), `${h} has another node password than the machine backed up`);
    assert.equal(pw.mode, 0o600);
  }
  // The nodes came back as themselves: no node-password secret was made anew (the rows are the backup's).
  assert.match(r.stdout, /Put each node's k3s node password back\n  server1:\n    \+ create \/etc\/rancher\/node\/password/);
  const passwords = [...s.fleet.hosts.values()].map((h) => h.text('/etc/rancher/node/password')?.trim()).filter((p): p is string => !!p);
  assert.equal(passwords.length, 5);
  for (const o of [...fresh.outputs, ...s.outputs]) for (const v of passwords) assert.ok(!(o.stdout + o.stderr).includes(v), 'a node password was printed');
});

test('a backup without node passwords (scheduled, or from an older k8s-ha) restored onto fresh machines: the old node-password secrets go with the load, so the new machines join under the old names', async (t) => {
  const { s, archive, atBackup } = await appliedWithBackup(t);
  // The same archive, its secrets part without nodePasswords.
  const a = await openArchive(archive);
  const sec = JSON.parse((await entryBuffer(archive, a.entries.get('secrets.json')!)).toString()) as Record<string, unknown>;
  assert.equal(Object.keys(sec.nodePasswords as object).length, 5, 'the backup holds every node password');
  delete sec.nodePasswords;
  const freshDir = tempDir(t);
  const parts = [
    await spoolPart(Readable.from([await entryBuffer(archive, a.entries.get('kine.sql.gz')!)]), 'kine.sql.gz', join(freshDir, '.d'), null),
    await spoolPart(Readable.from([Buffer.from(JSON.stringify(sec))]), 'secrets.json', join(freshDir, '.s'), null),
  ];
  const { parts: _omit, ...rest } = a.manifest;
  await writeArchive(join(freshDir, 'old.tar'), { ...rest, source: 'scheduled' }, parts);
  const fresh = setup(t, freshDir, readFileSync(s.file, 'utf8'));
  writeFileSync(fresh.file, readFileSync(s.file, 'utf8'));
  const r = await fresh.cli(['restore', 'old.tar', '--yes', '--no-verify']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /remove the node-password secrets of server1, server2, agent1, agent2, agent3 \(the backup has no node password for them: they join as new machines\)/);
  for (const h of ['agent1', 'agent2', 'agent3', 'server1', 'server2']) assert.equal(fresh.fleet.k3s.nodeReady(h), true, `${h} was refused`);
  // Every object as at backup, except the node-password secrets: made anew by the new machines.
  const isPw = (n: string) => /\.node-password\.k3s /.test(n);
  assert.deepEqual(names(table(fresh)).filter((n) => !isPw(n)), atBackup.filter((n) => !isPw(n)));
  assert.equal(names(table(fresh)).filter(isPw).length, 5);
});

test('apply on a fresh machine that takes an old node\'s name stops at once with k3s\'s refusal and the way out; deleting the old node lets it join', async (t) => {
  const s = setup(t);
  const a = await s.cli(['apply', '--yes', '--no-verify']);
  assert.equal(a.code, 0, a.stderr + a.stdout);
  // agent2's machine replaced: k3s gone, a new node password (the old Node and its secret are still in the datastore).
  const h = s.fleet.hosts.get('agent2')!;
  for (const p of [...h.files.keys()]) if (/^\/(etc\/rancher|var\/lib\/rancher|usr\/local\/bin\/k3s|etc\/systemd\/system\/k3s)/.test(p)) h.files.delete(p);
  h.services.delete('k3s-agent');
  h.setFile('/etc/rancher/node/password', 'the new machine\'s password\n', { mode: 0o600 });
  const t0 = Date.now();
  const r = await s.cli(['apply', '--yes', '--no-verify']);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /agent2: k3s refused agent2's node password \("Node password rejected"\): the cluster keeps kube-system\/agent2\.node-password\.k3s/);
  assert.match(r.stderr, /hint: if this machine replaces the old agent2, delete the old node \(`k3s kubectl delete node agent2` on a server/);
  assert.ok(Date.now() - t0 < 20_000, 'the refusal waited for the whole bound');
  s.fleet.kube.onNodeDeleted('agent2');
  const again = await s.cli(['apply', '--yes', '--no-verify']);
  assert.equal(again.code, 0, again.stderr + again.stdout);
  assert.equal(s.fleet.k3s.nodeReady('agent2'), true);
});

test('a restore cut off while the dump loads converges when run again, and never hands out a revision the old cluster served', async (t) => {
  const { s, atBackup } = await appliedWithBackup(t);
  const tb = table(s);
  for (let i = 0; i < 100; i++) insertRow(tb, `/registry/configmaps/default/later-${i}`, 'x');
  const served = tb.autoIncrement - 1;
  s.fleet.dropConnectionAt('infra', /^mariadb --batch --default-character-set=utf8mb4 k3s$/);
  const cut = await s.cli(['restore', 'b.tar', '--yes', '--no-verify']);
  assert.equal(cut.code, 1, cut.stdout);
  assert.match(cut.stderr, /connection was lost/);
  s.fleet.hosts.get('infra')!.reconnect();
  // Between the two runs the old table is gone (as after a load cut halfway): only the floor remembers.
  s.fleet.mariadb('infra').kine.set('k3s', { rows: tb.rows.slice(0, 3), autoIncrement: 4 });
  const again = await s.cli(['restore', 'b.tar', '--yes', '--no-verify']);
  assert.equal(again.code, 0, again.stderr + again.stdout);
  assert.deepEqual(names(table(s)), atBackup);
  assert.ok(table(s).autoIncrement > served, `revision ${table(s).autoIncrement} is not above ${served}`);
  for (const a of ['agent1', 'agent2', 'agent3']) assert.equal(s.fleet.k3s.nodeReady(a), true);
});

test('restore refuses, before contacting any host and with the way out: another cluster\'s backup, a damaged archive, a token that does not open the dump, no --yes off a terminal', async (t) => {
  const { s, archive } = await appliedWithBackup(t);
  const before = s.fleet.hosts.get('infra')!.log.length;
  const refuse = async (argv: string[], msg: RegExp) => {
    const r = await s.cli(argv);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, msg);
  };

  await refuse(['restore', 'b.tar'], /off a terminal it asks nothing, so say so with --yes/);

  // Another cluster: the same archive with the manifest's name changed (and its checksum still fine).
  const a = await openArchive(archive);
  const parts = await Promise.all(
    a.manifest.parts.map(async (p, i) => spoolPart(Readable.from([await entryBuffer(archive, a.entries.get(p.name)!)]), p.name, join(s.dir, `.p${i}`), null)),
  );
  const { parts: _omit, ...rest } = a.manifest;
  await writeArchive(join(s.dir, 'other.tar'), { ...rest, cluster: 'other' }, parts);
  await refuse(['restore', 'other.tar', '--yes'], /is a backup of cluster "other", not of "seed"/);

  // Damaged: one byte of the dump changed.
  const buf = readFileSync(archive);
  buf[a.entries.get('kine.sql.gz')!.offset + 10] ^= 0x01;
  writeFileSync(join(s.dir, 'bad.tar'), buf, { mode: 0o600 });
  await refuse(['restore', 'bad.tar', '--yes'], /does not match its manifest.*\n  - kine\.sql\.gz: sha256/s);

  // A token that does not open the dump's bootstrap data: a consistent archive with another token.
  const wrong = await spoolPart(Readable.from([Buffer.from(JSON.stringify({ serverToken: 'K10abc::server:notTheClusterToken', state: {} }))]), 'secrets.json', join(s.dir, '.w'), null);
  const dump = await spoolPart(Readable.from([await entryBuffer(archive, a.entries.get('kine.sql.gz')!)]), 'kine.sql.gz', join(s.dir, '.d'), null);
  await writeArchive(join(s.dir, 'token.tar'), rest, [dump, wrong]);
  await refuse(['restore', 'token.tar', '--yes'], /the token belongs to another cluster.*could not start/s);

  assert.equal(s.fleet.hosts.get('infra')!.log.length, before, 'a refused restore contacted the datastore');
  // (.ssh is the test HOME's stand-in key, written by offlineCluster.)
  assert.deepEqual(readdirSync(s.dir).filter((n) => n.startsWith('.') && n !== '.ssh'), []);
});

test('on a terminal restore asks for the cluster\'s name and changes nothing (state file included) on another answer', async (t) => {
  const { s } = await appliedWithBackup(t);
  const state = readFileSync(StateFile.pathFor(s.file));
  const tb = table(s);
  insertRow(tb, '/registry/configmaps/default/after', 'x');
  const rows = tb.rows.length;
  const no = await s.cli(['restore', 'b.tar', '--no-verify'], { tty: true, answers: ['yes'] });
  assert.equal(no.code, 0, no.stderr);
  assert.match(no.stdout, /Nothing changed/);
  assert.equal(table(s).rows.length, rows);
  assert.deepEqual(readFileSync(StateFile.pathFor(s.file)), state);
  const yes = await s.cli(['restore', 'b.tar', '--no-verify'], { tty: true, answers: ['seed'] });
  assert.equal(yes.code, 0, yes.stderr + yes.stdout);
  assert.equal(table(s).rows.length, rows - 1 + 1, 'the restore did not run');
  rmSync(join(s.dir, 'b.tar'));
});

test('restore refuses while another apply holds the cluster lock, names it, and changes nothing', async (t) => {
  const { s } = await appliedWithBackup(t);
  const { LOCK_PATH } = await import('../../src/engine/lock.js');
  const infra = s.fleet.hosts.get('infra')!;
  infra.setFile(LOCK_PATH, JSON.stringify({ holder: 'bob@desk', pid: 777, command: 'apply', since: '2026-12-01T09:00:00Z', id: 'other' }) + '\n', { mode: 0o600 });
  const tb = table(s);
  insertRow(tb, '/registry/configmaps/default/during', 'x');
  const rows = tb.rows.length;
  const stops = () => [...s.fleet.hosts.values()].flatMap((h) => h.log.filter((c) => /^systemctl stop k3s/.test(c)));
  const before = stops().length;
  const r = await s.cli(['restore', 'b.tar', '--yes', '--no-verify']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /the cluster is locked by bob@desk \(pid 777, `k8s-ha apply` since 2026-12-01T09:00:00Z\).*another run is changing it now/s);
  assert.equal(table(s).rows.length, rows, 'the data was replaced under the lock');
  assert.equal(stops().length, before, 'k3s was stopped under the lock');
  assert.ok(infra.files.has(LOCK_PATH), "the other run's lock was taken away");
});

test('restore with a cluster file that also bumps k3s.version is refused with words saying a restore does not upgrade, and the way out', async (t) => {
  const { s } = await appliedWithBackup(t);
  const text = readFileSync(s.file, 'utf8');
  assert.match(text, /version: v1\.37\.2\+k3s1/);
  writeFileSync(s.file, text.replace('version: v1.37.2+k3s1', 'version: v1.37.3+k3s1'));
  writeFileSync(join(s.dir, 'k3s'), standInK3s('v1.37.3+k3s1'), { mode: 0o755 });
  const r = await s.cli(['restore', 'b.tar', '--yes', '--no-verify']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /a restore puts the cluster back as it was and does not upgrade it in the same run: server1 runs k3s v1\.37\.2\+k3s1, server2 runs k3s v1\.37\.2\+k3s1, the cluster file names v1\.37\.3\+k3s1 \(the backup was taken with v1\.37\.2\+k3s1\)/);
  assert.match(r.stderr, /restore with k3s\.version: v1\.37\.2\+k3s1 \(what the nodes run\), then set k3s\.version to v1\.37\.3\+k3s1 and run `k8s-ha apply` to upgrade/);
  assert.doesNotMatch(r.stderr, /k3s is not running|unhealthy cluster/);
  assert.ok(!s.fleet.hosts.get('server1')!.log.some((c) => /^systemctl stop k3s/.test(c)), 'k3s was stopped');
});
