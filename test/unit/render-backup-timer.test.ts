import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkArchive, dumpSqlStream, openArchive, readSecretsPart } from '../../src/backup/archive.js';
import { scanDump, tokenProblem } from '../../src/backup/bootstrap.js';
import { renderBackupScript, renderBackupSecrets, renderBackupSecretsRecord, renderBackupService, renderBackupTimer, type BackupScheduleInput } from '../../src/render/backup-timer.js';
import { encryptBuffer } from '../../src/backup/crypt.js';
import { Secret } from '../../src/util/secret.js';
import { bootstrapName, encryptBootstrap, insertRow, renderDump, type FakeKineTable } from '../support/fleet-kine.js';
import { tempDir } from '../cli/helpers.js';

const INPUT: BackupScheduleInput = { cluster: 'seed', database: 'k3s', host: 'infra', k3sVersion: 'v1.31.4+k3s1', schedule: 'daily', keep: 3, dir: '/var/backups/k8s-ha' };

test('the timer runs the oneshot service on the schedule, catching up a missed run at boot', () => {
  assert.equal(
    renderBackupTimer(INPUT),
    '# When k8s-ha-backup.service runs. Managed by k8s-ha.\n\n[Unit]\nDescription=k8s-ha backup of the seed datastore (daily)\n\n[Timer]\nOnCalendar=daily\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n',
  );
  assert.match(renderBackupService(INPUT), /\[Service\]\nType=oneshot\nExecStart=\/usr\/local\/lib\/k8s-ha\/backup\.sh\nUMask=0077\n/);
  assert.throws(() => renderBackupTimer({ ...INPUT, schedule: 'daily\nExecStart=/bin/evil' }), /schedule/);
  assert.throws(() => renderBackupScript({ ...INPUT, dir: '/var/../etc' }), /dir/);
});

test('the scheduled backup script writes an archive k8s-ha reads and checks (token included, mode 0600) and keeps the newest N', async (t) => {
  const dir = tempDir(t);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const token = 'scheduledTokenSecret0123456789';
  const table: FakeKineTable = { rows: [], autoIncrement: 1 };
  insertRow(table, bootstrapName(token), encryptBootstrap(token, 'CA and keys'));
  for (let i = 0; i < 30; i++) insertRow(table, `/registry/pods/default/p${i}`, `pod ${i}`);
  writeFileSync(join(dir, 'dump.sql'), renderDump(table));
  // Stand-ins for the two MariaDB clients the script calls (the lab test runs the real ones).
  writeFileSync(join(bin, 'mariadb-dump'), `#!/bin/sh\ncat ${join(dir, 'dump.sql')}\n`, { mode: 0o755 });
  writeFileSync(join(bin, 'mariadb'), `#!/bin/sh\nin=$(cat)\ncase "$in" in *VERSION*) echo 10.11.14-MariaDB ;; *) printf 'max\\t31\\nnext\\t40\\n' ;; esac\n`, { mode: 0o755 });
  const secrets = join(dir, 'backup-secrets.json');
  writeFileSync(secrets, renderBackupSecrets({ serverToken: new Secret(token), state: { k3sToken: new Secret(token), datastorePassword: new Secret('dbpw') } }), { mode: 0o600 });
  const out = join(dir, 'backups');
  const script = join(dir, 'backup.sh');
  writeFileSync(script, renderBackupScript({ ...INPUT, dir: out }));
  chmodSync(script, 0o700);
  const run = () => spawnSync('sh', [script], { env: { PATH: `${bin}:/usr/bin:/bin`, K8S_HA_BACKUP_SECRETS: secrets }, encoding: 'utf8' });

  const r = run();
  assert.equal(r.status, 0, r.stderr);
  const names = readdirSync(out).filter((n) => n.endsWith('.k8s-ha-backup.tar'));
  assert.equal(names.length, 1);
  assert.equal(statSync(out).mode & 0o777, 0o700);
  assert.equal(statSync(join(out, names[0]!)).mode & 0o777, 0o600);
  const a = await openArchive(join(out, names[0]!));
  assert.equal(a.manifest.source, 'scheduled');
  assert.equal(a.manifest.cluster, 'seed');
  assert.equal(a.manifest.kineRevision, 39, 'AUTO_INCREMENT - 1 is above MAX(id): the highest revision ever handed out');
  assert.deepEqual((await checkArchive(a)).problems, []);
  assert.equal((await readSecretsPart(a, {})).serverToken, token);
  const facts = await scanDump(await dumpSqlStream(a, {}));
  assert.equal(facts.rows, 31);
  assert.equal(tokenProblem(token, facts), null);

  // Rotation: older archives of this cluster beyond keep=3 go; other files stay.
  for (const stamp of ['20200101T000000Z', '20200102T000000Z', '20200103T000000Z']) writeFileSync(join(out, `seed-${stamp}.k8s-ha-backup.tar`), 'old', { mode: 0o600 });
  writeFileSync(join(out, 'other-20200101T000000Z.k8s-ha-backup.tar'), 'another cluster');
  assert.equal(run().status, 0);
  const second = readdirSync(out).filter((n) => n.startsWith('seed-202') && !n.startsWith('seed-2020')).sort();
  assert.ok(second.length >= 1 && second.length <= 2);
  const kept = ['seed-20200103T000000Z.k8s-ha-backup.tar', 'seed-20200102T000000Z.k8s-ha-backup.tar'].slice(0, 3 - second.length);
  assert.deepEqual(readdirSync(out).sort(), ['other-20200101T000000Z.k8s-ha-backup.tar', ...kept, ...second].sort());

  // A failing dump fails the run and leaves nothing behind.
  writeFileSync(join(bin, 'mariadb-dump'), '#!/bin/sh\necho "mariadb-dump: Got error: 2002" >&2\nexit 2\n', { mode: 0o755 });
  const bad = run();
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /mariadb-dump of k3s failed \(exit 2\)/);
  assert.equal(readdirSync(out).filter((n) => n.startsWith('.k8s-ha-backup.')).length, 0);
});

test('with recipients the script encrypts every part to them with the real age as it writes it: nothing readable without the identity, and k8s-ha --check and restore open it with the identity', { skip: spawnSync('age', ['--version']).status === 0 ? false : 'the age package is not installed (scripts/setup.sh installs it)' }, async (t) => {
  const dir = tempDir(t);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const keygen = spawnSync('age-keygen', [], { encoding: 'utf8' });
  const identity = keygen.stdout.trim();
  const recipient = /# public key: (age1\S+)/.exec(identity)![1]!;
  const token = 'encryptedScheduledToken0123456789';
  const table: FakeKineTable = { rows: [], autoIncrement: 1 };
  insertRow(table, bootstrapName(token), encryptBootstrap(token, 'CA and keys'));
  for (let i = 0; i < 30; i++) insertRow(table, `/registry/secrets/default/s${i}`, `secret value ${i}`);
  writeFileSync(join(dir, 'dump.sql'), renderDump(table));
  writeFileSync(join(bin, 'mariadb-dump'), `#!/bin/sh\ncat ${join(dir, 'dump.sql')}\n`, { mode: 0o755 });
  writeFileSync(join(bin, 'mariadb'), `#!/bin/sh\nin=$(cat)\ncase "$in" in *VERSION*) echo 10.11.14-MariaDB ;; *) printf 'max\\t31\\nnext\\t32\\n' ;; esac\n`, { mode: 0o755 });
  // What apply puts on the host: the secrets part encrypted by k8s-ha, and the record beside it.
  const plain = renderBackupSecrets({ serverToken: new Secret(token), state: { k3sToken: new Secret(token) } });
  writeFileSync(join(dir, 'secrets.age'), await encryptBuffer(Buffer.from(plain), { recipients: [recipient] }), { mode: 0o600 });
  writeFileSync(join(dir, 'secrets.sha256'), renderBackupSecretsRecord(createHash('sha256').update(plain).digest('hex'), [recipient]), { mode: 0o600 });
  const out = join(dir, 'backups');
  const script = join(dir, 'backup.sh');
  writeFileSync(script, renderBackupScript({ ...INPUT, dir: out, recipients: [recipient] }));
  const r = spawnSync('sh', [script], { env: { PATH: `${bin}:/usr/bin:/bin`, K8S_HA_BACKUP_SECRETS_AGE: join(dir, 'secrets.age'), K8S_HA_BACKUP_SECRETS_RECORD: join(dir, 'secrets.sha256') }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const name = readdirSync(out).find((n) => n.endsWith('.k8s-ha-backup.tar'))!;
  const file = join(out, name);
  // Nothing of the plaintext in the archive: no token, no row name, no gzip stream.
  const raw = readFileSync(file);
  for (const needle of [token, '/registry/secrets', 'secret value', '/bootstrap/']) assert.ok(!raw.includes(needle), `${needle} is readable in the archive`);
  const a = await openArchive(file);
  assert.deepEqual(a.manifest.encryption, { to: 'recipients', recipients: [recipient] });
  assert.deepEqual(a.manifest.parts.map((p) => p.name), ['kine.sql.gz.age', 'secrets.json.age']);
  // Without the identity: the checksums of what is stored only; the content cannot be read.
  const noKey = await checkArchive(a);
  assert.deepEqual(noKey.problems, []);
  assert.equal(noKey.contentChecked, false);
  await assert.rejects(readSecretsPart(a, {}), /is encrypted: give --passphrase-env NAME, --passphrase-file FILE or --identity FILE/);
  const other = /AGE-SECRET-KEY-\S+/.exec(spawnSync('age-keygen', [], { encoding: 'utf8' }).stdout)![0];
  await assert.rejects(readSecretsPart(a, { identities: [new Secret(other)] }), /cannot decrypt with the key given/);
  // With it: every decrypted part matches the manifest's plainSha256, the token and the dump are there.
  const key = { identities: [new Secret(/AGE-SECRET-KEY-\S+/.exec(identity)![0])] };
  const withKey = await checkArchive(a, key);
  assert.deepEqual(withKey.problems, []);
  assert.equal(withKey.contentChecked, true);
  assert.equal((await readSecretsPart(a, key)).serverToken, token);
  const facts = await scanDump(await dumpSqlStream(a, key));
  assert.equal(facts.rows, 31);
  assert.equal(tokenProblem(token, facts), null);
  // The real age opens a part without k8s-ha.
  writeFileSync(join(dir, 'id.txt'), identity, { mode: 0o600 });
  const tarx = spawnSync('tar', ['-xf', file, '-C', dir, 'secrets.json.age']);
  assert.equal(tarx.status, 0);
  const dec = spawnSync('age', ['-d', '-i', join(dir, 'id.txt'), join(dir, 'secrets.json.age')], { encoding: 'utf8' });
  assert.equal(dec.stdout, plain);
});
