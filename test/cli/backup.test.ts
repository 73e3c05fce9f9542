import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { parse, parseDocument } from 'yaml';
import { openArchive, readSecretsPart } from '../../src/backup/archive.js';
import { scanDump, tokenProblem } from '../../src/backup/bootstrap.js';
import { dumpSqlStream } from '../../src/backup/archive.js';
import { StateFile } from '../../src/cluster/state.js';
import { Secret } from '../../src/util/secret.js';
import { simulatedFleet, type Fleet } from '../support/fleet.js';
import { insertRow } from '../support/fleet-kine.js';
import { kineTable } from '../support/fleet-mariadb.js';
import { offlineCluster } from '../support/offline-example.js';
import { runCli, tempDir, type CliResult } from './helpers.js';

/**
 * `k8s-ha backup` through the CLI in-process on the simulated fleet
 * (test/support/fleet.ts, its MariaDB answering mariadb-dump from a kine
 * table that holds k3s's encrypted bootstrap row).
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

interface Setup {
  dir: string;
  file: string;
  fleet: Fleet;
  outputs: CliResult[];
  cli(argv: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>;
}

async function applied(t: { after: (fn: () => void) => void }): Promise<Setup> {
  const dir = tempDir(t);
  const { file, text } = offlineCluster(SEED, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const outputs: CliResult[] = [];
  const s: Setup = {
    dir,
    file,
    fleet,
    outputs,
    async cli(argv, env) {
      const r = await runCli([...argv, '-f', file], { cwd: dir, env, hooks: { open: { connect: fleet.connect } } });
      outputs.push(r);
      return r;
    },
  };
  const r = await s.cli(['apply', '--yes', '--no-verify']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  return s;
}

function kine(s: Setup) {
  const m = s.fleet.machines.get('infra')!;
  const t = kineTable(m, s.fleet.mariadb('infra'), 'k3s');
  assert.ok(t, 'no kine table after apply');
  return t;
}

const archives = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.k8s-ha-backup.tar'));

test('backup writes one 0600 archive beside the cluster file with the dump, the server token and the state secrets, and a manifest with every checksum; nothing is left on any host', async (t) => {
  const s = await applied(t);
  const table = kine(s);
  for (let i = 0; i < 250; i++) insertRow(table, `/registry/configmaps/default/cm-${i}`, `value ${i}`);
  const highest = table.autoIncrement - 1;
  const writesBefore = new Map([...s.fleet.hosts].map(([n, h]) => [n, h.writes.length]));

  const r = await s.cli(['backup']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const names = archives(s.dir);
  assert.equal(names.length, 1);
  const path = join(s.dir, names[0]!);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.match(names[0]!, /^seed-\d{8}T\d{6}Z\.k8s-ha-backup\.tar$/);
  assert.deepEqual(readdirSync(s.dir).filter((n) => n.endsWith('.part') || n.endsWith('.tmp')), [], 'a spooled part was left behind');
  for (const [n, h] of s.fleet.hosts) assert.equal(h.writes.length, writesBefore.get(n), `backup wrote on ${n}`);
  assert.deepEqual(s.fleet.mariadb('infra').dumps, ['k3s']);
  assert.ok(s.fleet.hosts.get('infra')!.log.some((c) => c.startsWith('mariadb-dump --single-transaction ')));

  const a = await openArchive(path);
  assert.equal(a.manifest.cluster, 'seed');
  assert.equal(a.manifest.kineRevision, highest);
  assert.equal(a.manifest.source, 'cli');
  assert.equal(a.manifest.encryption, null);
  assert.deepEqual(a.manifest.parts.map((p) => p.name), ['kine.sql.gz', 'secrets.json']);
  const secrets = await readSecretsPart(a, {});
  const state = (parse(readFileSync(StateFile.pathFor(s.file), 'utf8')) as { secrets: Record<string, string> }).secrets;
  assert.deepEqual(secrets.state, state);
  assert.match(secrets.serverToken, /^K10[0-9a-f]{64}::server:/);
  assert.ok(secrets.serverToken.endsWith(state.k3sToken!));
  const facts = await scanDump(await dumpSqlStream(a, {}));
  assert.equal(facts.rows, table.rows.length);
  assert.equal(tokenProblem(secrets.serverToken, facts), null);
  assert.match(tokenProblem('another-token', facts) ?? '', /another cluster/);

  // --list and --check read the archive without any host.
  const logBefore = s.fleet.hosts.get('infra')!.log.length;
  const list = await s.cli(['backup', '--list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`${names[0]!.replace(/\./g, '\\.')}\\n  cluster seed, .*kine revision ${highest}, .*not encrypted`));
  const check = await s.cli(['backup', '--check', path]);
  assert.equal(check.code, 0, check.stderr + check.stdout);
  assert.match(check.stdout, /ok: every part's sha256 matches the manifest/);
  assert.equal(s.fleet.hosts.get('infra')!.log.length, logBefore, '--list/--check contacted the datastore');

  // No secret in any output.
  for (const o of s.outputs) for (const v of Object.values(state)) assert.ok(!(o.stdout + o.stderr).includes(v), 'a secret was printed');
});

test('backup --check finds a changed byte in a part and exits 1', async (t) => {
  const s = await applied(t);
  assert.equal((await s.cli(['backup', '-o', 'b.tar'])).code, 0);
  const path = join(s.dir, 'b.tar');
  const a = await openArchive(path);
  const dump = a.entries.get('kine.sql.gz')!;
  const buf = readFileSync(path);
  buf[dump.offset + Math.floor(dump.size / 2)] ^= 0xff;
  writeFileSync(path, buf, { mode: 0o600 });
  const r = await s.cli(['backup', '--check', path]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /FAILED: kine\.sql\.gz: sha256 [0-9a-f]{64} does not match the manifest's/);
  assert.match(r.stdout, /do not restore from it/);
});

test('an archive encrypted to a passphrase or an age recipient cannot be read without the key; --check without it checks the stored bytes only', async (t) => {
  const s = await applied(t);
  const env = { BACKUP_PASS: 'correct horse battery staple' };
  const r = await s.cli(['backup', '-o', 'pass.tar', '--passphrase-env', 'BACKUP_PASS'], env);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const a = await openArchive(join(s.dir, 'pass.tar'));
  assert.deepEqual(a.manifest.encryption, { to: 'passphrase' });
  assert.deepEqual(a.manifest.parts.map((p) => p.name), ['kine.sql.gz.age', 'secrets.json.age']);
  const raw = readFileSync(join(s.dir, 'pass.tar'));
  const token = (parse(readFileSync(StateFile.pathFor(s.file), 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken!;
  assert.ok(!raw.includes(token), 'the token is readable in the encrypted archive');
  assert.ok(raw.includes('age-encryption.org/v1'), 'the parts are not age files');
  await assert.rejects(readSecretsPart(a, {}), /is encrypted: give --passphrase-env/);
  await assert.rejects(readSecretsPart(a, { passphrase: new Secret('wrong') }), /cannot decrypt with the key given/);
  assert.equal((await readSecretsPart(a, { passphrase: new Secret(env.BACKUP_PASS) })).state.k3sToken, token);

  const noKey = await s.cli(['backup', '--check', 'pass.tar']);
  assert.equal(noKey.code, 0, noKey.stdout + noKey.stderr);
  assert.match(noKey.stdout, /encrypted content not checked/);
  const withKey = await s.cli(['backup', '--check', 'pass.tar', '--passphrase-env', 'BACKUP_PASS'], env);
  assert.equal(withKey.code, 0, withKey.stdout + withKey.stderr);
  assert.doesNotMatch(withKey.stdout, /not checked/);
  const wrong = await s.cli(['backup', '--check', 'pass.tar', '--passphrase-env', 'BACKUP_PASS'], { BACKUP_PASS: 'wrong' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /cannot decrypt with the key given/);

  const identity = await generateIdentity();
  const recipient = await identityToRecipient(identity);
  writeFileSync(join(s.dir, 'key.txt'), `${identity}\n`, { mode: 0o600 });
  const r2 = await s.cli(['backup', '-o', 'age.tar', '--recipient', recipient]);
  assert.equal(r2.code, 0, r2.stderr);
  const b = await openArchive(join(s.dir, 'age.tar'));
  assert.deepEqual(b.manifest.encryption, { to: 'recipients', recipients: [recipient] });
  await assert.rejects(readSecretsPart(b, { passphrase: new Secret(env.BACKUP_PASS) }), /cannot decrypt/);
  const ok = await s.cli(['backup', '--check', 'age.tar', '--identity', 'key.txt']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
});

test('backup refuses bad key flags and an existing output with exit 2, before contacting any host', async (t) => {
  const s = await applied(t);
  const before = s.fleet.hosts.get('infra')!.log.length;
  const cases: [string[], RegExp][] = [
    [['backup', '--recipient', 'not-a-key'], /--recipient not-a-key: not an age recipient/],
    [['backup', '--passphrase-env', 'NOPE'], /NOPE: that environment variable is not set/],
    [['backup', '--identity', 'x'], /--identity is for reading a backup/],
    [['backup', '-o', 'cluster.yaml'], /already exists; k8s-ha never overwrites a backup/],
  ];
  for (const [argv, msg] of cases) {
    const r = await s.cli(argv);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, msg);
  }
  assert.equal(s.fleet.hosts.get('infra')!.log.length, before);
});

test('datastore.backup installs a timer, its oneshot service, the script and the token (0600) on the datastore host; status reports the newest archive and a stale one as degraded; removing the section removes them', async (t) => {
  const dir = tempDir(t);
  const src = readFileSync(SEED, 'utf8').replace(/^datastore:\n/m, 'datastore:\n  backup: {schedule: hourly, keep: 5, dir: /srv/backups}\n');
  assert.match(src, /backup: \{schedule: hourly/, 'the seed example has no datastore: section to extend');
  const { file, text } = offlineCluster({ text: src }, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const cli = (...argv: string[]) => runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
  const plan = await cli('plan');
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /create \/etc\/systemd\/system\/k8s-ha-backup\.timer/);
  const applied = await cli('apply', '--yes', '--no-verify');
  assert.equal(applied.code, 0, applied.stderr + applied.stdout);
  const infra = fleet.hosts.get('infra')!;
  const token = (parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken!;
  for (const o of [plan, applied]) assert.ok(!(o.stdout + o.stderr).includes(token), 'the token was printed');
  assert.equal(infra.files.get('/etc/k8s-ha/backup-secrets.json')!.mode, 0o600);
  assert.ok(infra.text('/etc/k8s-ha/backup-secrets.json')!.includes(token), 'the scheduled backups would not hold the token');
  assert.equal(infra.files.get('/usr/local/lib/k8s-ha/backup.sh')!.mode, 0o700);
  assert.match(infra.text('/usr/local/lib/k8s-ha/backup.sh')!, /^KEEP=5$/m);
  assert.match(infra.text('/etc/systemd/system/k8s-ha-backup.timer')!, /^OnCalendar=hourly$/m);
  assert.deepEqual([infra.services.get('k8s-ha-backup.timer')?.enabled, infra.services.get('k8s-ha-backup.timer')?.active], [true, true]);
  assert.equal(infra.services.get('k8s-ha-backup')?.active ?? false, false, 'the backup ran at apply');
  const again = await cli('plan', '--detailed-exitcode');
  assert.equal(again.code, 0, again.stdout);

  // status: the host's clock and folder, answered as the real commands would.
  let listing: string[] = [];
  const now = Date.UTC(2026, 11, 1, 12, 0, 0) / 1000;
  infra.handle(/^date \+%s; stat -c %Y /, () => ({ code: 0, stdout: `${now}\n${now - 600}\n${listing.join('\n')}\n`, stderr: '' }));
  const { collectBackup } = await import('../../src/status/collect.js');
  const fresh = await collectBackup(fleet.cluster, infra);
  assert.deepEqual(fresh, { dir: '/srv/backups', newest: null, ageS: 600, count: 0, staleAfterS: 7200, stale: false });
  listing = ['seed-20261201T113000Z.k8s-ha-backup.tar', 'seed-20261201T103000Z.k8s-ha-backup.tar', 'other-20261201T115900Z.k8s-ha-backup.tar', 'notes.txt'];
  const ok = await collectBackup(fleet.cluster, infra);
  assert.deepEqual(ok, { dir: '/srv/backups', newest: 'seed-20261201T113000Z.k8s-ha-backup.tar', ageS: 1800, count: 2, staleAfterS: 7200, stale: false });
  listing = ['seed-20261201T083000Z.k8s-ha-backup.tar'];
  const old = (await collectBackup(fleet.cluster, infra))!;
  assert.equal(old.stale, true);
  const { degradations } = await import('../../src/status/model.js');
  const snap = { cluster: 'seed', apiServerUrl: '', at: '', ms: 0, hosts: [], loadBalancers: [], vip: null, datastores: [{ host: 'infra', active: true, reachable: true, version: null, sizeBytes: null, kineRows: null, backup: old }], kube: { via: 'server1', nodes: [], expected: [] }, metallb: null };
  assert.deepEqual(degradations(snap), ['datastore on infra: the newest scheduled backup is 4h old (stale after 2h): look at `journalctl -u k8s-ha-backup`']);

  writeFileSync(file, readFileSync(file, 'utf8').replace(/\n  backup: \{[^}]*\}/, ''));
  const removed = await cli('apply', '--yes', '--no-verify');
  assert.equal(removed.code, 0, removed.stderr + removed.stdout);
  for (const p of ['/etc/k8s-ha/backup-secrets.json', '/usr/local/lib/k8s-ha/backup.sh', '/etc/systemd/system/k8s-ha-backup.timer', '/etc/systemd/system/k8s-ha-backup.service']) assert.equal(infra.files.has(p), false, `${p} is still there`);
  assert.deepEqual([infra.services.get('k8s-ha-backup.timer')?.enabled, infra.services.get('k8s-ha-backup.timer')?.active], [false, false]);
});

test('datastore.backup.recipients: the secrets part reaches the datastore host only encrypted (by k8s-ha, to the recipients; no plaintext token there), age is installed for the dump, a second plan is empty, a new recipient re-encrypts; validate refuses a bad recipient with exit 2', async (t) => {
  const dir = tempDir(t);
  const id1 = await generateIdentity();
  const r1 = await identityToRecipient(id1);
  const src = readFileSync(SEED, 'utf8').replace(/^datastore:\n/m, `datastore:\n  backup: {schedule: hourly, keep: 5, dir: /srv/backups}\n`);
  const { file, text } = offlineCluster({ text: src }, dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  const cli = (...argv: string[]) => runCli([...argv, '-f', file], { cwd: dir, hooks: { open: { connect: fleet.connect } } });
  assert.equal((await cli('apply', '--yes', '--no-verify')).code, 0);
  const infra = fleet.hosts.get('infra')!;
  assert.ok(infra.files.has('/etc/k8s-ha/backup-secrets.json'), 'unencrypted first: the plaintext part is there');
  const setRecipients = (rs: string[]) => {
    const doc = parseDocument(readFileSync(file, 'utf8'));
    doc.setIn(['datastore', 'backup', 'recipients'], doc.createNode(rs));
    writeFileSync(file, doc.toString());
  };
  setRecipients([r1]);
  const plan = await cli('plan');
  assert.match(plan.stdout, /\+ install age/);
  assert.match(plan.stdout, /create \/etc\/k8s-ha\/backup-secrets\.json\.age \(mode 0600\): the token and the state file's secrets, encrypted here to 1 age recipient; the plaintext is never on the host/);
  assert.match(plan.stdout, /- remove \/etc\/k8s-ha\/backup-secrets\.json/);
  const a = await cli('apply', '--yes', '--no-verify');
  assert.equal(a.code, 0, a.stderr + a.stdout);
  const token = (parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken!;
  assert.equal(infra.files.has('/etc/k8s-ha/backup-secrets.json'), false, 'the plaintext secrets are still on the host');
  for (const [p, f] of infra.files) assert.ok(!f.content.toString('latin1').includes(token), `${p} holds the token in plaintext`);
  const enc = infra.files.get('/etc/k8s-ha/backup-secrets.json.age')!;
  assert.equal(enc.mode, 0o600);
  const { decryptBuffer } = await import('../../src/backup/crypt.js');
  const opened = JSON.parse((await decryptBuffer(Buffer.from(enc.content), { identities: [new Secret(id1)] }, 'secrets')).toString()) as { serverToken: string };
  assert.equal(opened.serverToken, token);
  assert.match(infra.text('/etc/k8s-ha/backup-secrets.json.sha256')!, new RegExp(`^[0-9a-f]{64} ${r1}\\n$`));
  assert.match(infra.text('/usr/local/lib/k8s-ha/backup.sh')!, new RegExp(`^RECIPIENTS="-r ${r1}"$`, 'm'));
  assert.ok(infra.packages.has('age'));
  for (const o of [plan, a]) assert.ok(!(o.stdout + o.stderr).includes(token), 'the token was printed');
  // Deterministic although age output is not: nothing to do on a second run.
  const again = await cli('plan', '--detailed-exitcode');
  assert.equal(again.code, 0, again.stdout);
  // Another recipient: encrypted again, to both.
  const r2 = await identityToRecipient(await generateIdentity());
  setRecipients([r1, r2]);
  const more = await cli('apply', '--yes', '--no-verify');
  assert.equal(more.code, 0, more.stderr);
  assert.match(more.stdout, /update \/etc\/k8s-ha\/backup-secrets\.json\.age .*encrypted here to 2 age recipients/);
  assert.notDeepEqual(infra.files.get('/etc/k8s-ha/backup-secrets.json.age')!.content, enc.content);
  // A typo in a key: refused before any host is contacted.
  setRecipients([r1, `${r2.slice(0, -1)}${r2.endsWith('q') ? 'p' : 'q'}`]);
  const bad = await cli('validate');
  assert.equal(bad.code, 2, bad.stdout + bad.stderr);
  assert.match(bad.stdout + bad.stderr, /datastore\.backup\.recipients\[1\].*is not a valid age recipient/);
});
