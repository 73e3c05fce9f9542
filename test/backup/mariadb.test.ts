import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { scanDump, tokenProblem } from '../../src/backup/bootstrap.js';
import { bumpSql, countSql, dropDatastoreSql, dumpCommand, loadCommand, parseCount, parseRevision, revisionSql, tableExistsSql } from '../../src/backup/sql.js';
import { MARIADB_BATCH } from '../../src/phases/infra-mariadb.js';
import { bootstrapName, encryptBootstrap } from '../support/fleet-kine.js';

/**
 * The SQL and commands of backup and restore (backup/sql.ts) against a real
 * MariaDB (a private mariadbd on a socket in a temp folder, no network), with
 * kine's own table definition: what mariadb-dump really writes, what loading
 * it and moving the revision really do.
 */

const why = ['mariadbd', 'mariadb-install-db', 'mariadb-dump'].find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);

test('backup and restore SQL on a real MariaDB', { skip: why ? `${why} is not installed (scripts/setup.sh installs mariadb-server)` : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-mariadb-'));
  const sock = join(dir, 'mysqld.sock');
  const init = spawnSync('mariadb-install-db', ['--no-defaults', `--datadir=${dir}/data`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db'], { encoding: 'utf8' });
  assert.equal(init.status, 0, init.stderr);
  const server = spawn('mariadbd', ['--no-defaults', `--datadir=${dir}/data`, `--socket=${sock}`, '--skip-networking', '--user=root', '--innodb-buffer-pool-size=16M'], { stdio: 'ignore' });
  t.after(() => {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  // The clients read ~/.my.cnf after the system's files: it points them at this server.
  writeFileSync(join(dir, '.my.cnf'), `[client]\nsocket=${sock}\nuser=root\n`);
  const env = { ...process.env, HOME: dir };
  // Bounded: up to 60 s for the server to answer on this shared, busy machine.
  for (let i = 0; i < 300; i++) {
    if (existsSync(sock) && spawnSync('mariadb', ['-e', 'SELECT 1'], { env }).status === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const sh = (cmd: string, input = '') => {
    const r = spawnSync('sh', ['-c', cmd], { input, env, encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  const sql = (text: string) => sh(MARIADB_BATCH.text, text);
  const token = 'K10abcdef::server:theClusterSecret';
  sql(`CREATE DATABASE k3s;
USE k3s;
CREATE TABLE IF NOT EXISTS kine (id BIGINT UNSIGNED AUTO_INCREMENT, name VARCHAR(630) CHARACTER SET ascii, created INTEGER, deleted INTEGER, create_revision BIGINT UNSIGNED, prev_revision BIGINT UNSIGNED, lease INTEGER, value MEDIUMBLOB, old_value MEDIUMBLOB, PRIMARY KEY (id));
INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES ('compact_rev_key', 1, 0, 0, 0, 0, '', NULL);
INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES ('${bootstrapName('theClusterSecret')}', 1, 0, 0, 0, 0, 0x${encryptBootstrap('theClusterSecret', '{"ca":"..."}').toString('hex')}, NULL);
`);
  for (let i = 0; i < 30; i++) sql(`INSERT INTO k3s.kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES ('/registry/configmaps/default/cm-${i}', 1, 0, 0, 0, 0, 'it''s "${i}"\\n\\0', NULL);\n`);
  assert.match(sql(tableExistsSql('k3s')), /^table\t1$/m);

  const dump = sh(dumpCommand('k3s').text);
  const facts = await scanDump(Readable.from([dump]));
  assert.equal(facts.rows, 32);
  assert.equal(facts.maxId, 32);
  assert.equal(tokenProblem(token, facts), null);
  assert.match(tokenProblem('K10abcdef::server:another', facts) ?? '', /belongs to another cluster/);

  // The cluster goes on after the backup: up to revision 80, and compaction removed the newest rows.
  for (let i = 0; i < 48; i++) sql(`INSERT INTO k3s.kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES ('/registry/later/${i}', 1, 0, 0, 0, 0, 'x', NULL);\n`);
  sql('DELETE FROM k3s.kine WHERE id > 70;\n');
  const pre = parseRevision(sql(revisionSql('k3s')))!;
  assert.deepEqual(pre, { maxId: 70, highest: 80 }, 'AUTO_INCREMENT remembers revisions whose rows are gone');

  for (let run = 0; run < 2; run++) {
    // The second run is a restore cut off after the load and run again: the same end state.
    sh(loadCommand('k3s').text, dump);
    sql(`USE \`k3s\`;\n${bumpSql(80, facts.maxId)}`);
    assert.deepEqual(parseCount(sql(countSql('k3s'))), { rows: 33, maxId: 80 });
    assert.deepEqual(parseRevision(sql(revisionSql('k3s'))), { maxId: 80, highest: 80 });
  }
  const restored = await scanDump(Readable.from([sh(dumpCommand('k3s').text)]));
  assert.equal(restored.rows, 33);
  assert.match(sh(dumpCommand('k3s').text), /\(80,'gap-80',0,1,0,0,0,NULL,NULL\)/);
  // kine's next write gets the next revision: nothing it served before is handed out again.
  sql("INSERT INTO k3s.kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES ('/registry/new', 1, 0, 0, 0, 0, 'n', NULL);\n");
  assert.equal(sql("SELECT id FROM k3s.kine WHERE name = '/registry/new';\n").trim(), '81');
  assert.equal(sql("SELECT value FROM k3s.kine WHERE name = '/registry/configmaps/default/cm-7';\n").trim(), 'it\'s "7"\\n\\0');

  sql("CREATE USER 'k3s'@'10.0.0.5' IDENTIFIED BY 'pw';\n");
  sql(dropDatastoreSql('k3s', 'k3s', ['10.0.0.5']));
  assert.equal(sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'k3s';\n").trim(), '0');
  assert.equal(sql("SELECT COUNT(*) FROM mysql.user WHERE User = 'k3s';\n").trim(), '0');
});
