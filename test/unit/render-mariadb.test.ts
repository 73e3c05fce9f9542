import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  DatastoreSqlInput,
  MariadbCnfInput,
  RenderInputError,
  datastoreEndpoint,
  describeDatastoreEndpoint,
  renderDatastoreSql,
  renderMariadbCnf,
  renderUserHostsQuery,
  sqlString,
  staleUserHosts,
} from '../../src/render/index.js';
import { MASK, Secret } from '../../src/util/secret.js';
import { assertFieldErrors, assertGolden, run, which, withTempFile } from '../fixtures/render/helpers.js';

const cnf: MariadbCnfInput = {
  bindAddress: '10.0.0.2',
  port: 3306,
  maxConnections: 200,
  hasSnapshotIsolationSetting: true,
  tls: { caFile: '/etc/mysql/k8s-ha/ca.pem', certFile: '/etc/mysql/k8s-ha/server.pem', keyFile: '/etc/mysql/k8s-ha/server-key.pem', require: true },
};

const PASSWORD = `p'a\\ss"w@rd:/?#%40`;
const sql: DatastoreSqlInput = {
  database: 'k3s',
  user: 'k3s',
  password: new Secret(PASSWORD),
  serverAddresses: ['10.0.0.6', '10.0.0.5'],
  requireTls: true,
  existingUserHosts: ['10.0.0.5', '10.0.0.9', '%'],
};

test('the MariaDB drop-in matches the expected file', () => {
  assertGolden('60-k8s-ha.cnf', renderMariadbCnf(cnf));
  assertGolden('60-k8s-ha-plain.cnf', renderMariadbCnf({ ...cnf, tls: undefined, hasSnapshotIsolationSetting: false }));
});

test('the MariaDB drop-in pins auto_increment to 1 and sets snapshot isolation only where the server knows it', () => {
  const withFlag = renderMariadbCnf(cnf);
  assert.match(withFlag, /^auto_increment_increment = 1$/m);
  assert.match(withFlag, /^auto_increment_offset = 1$/m);
  assert.match(withFlag, /^innodb_snapshot_isolation = OFF$/m);
  assert.match(withFlag, /^require_secure_transport = ON$/m);
  assert.match(withFlag, /^skip-name-resolve$/m);
  assert.doesNotMatch(renderMariadbCnf({ ...cnf, hasSnapshotIsolationSetting: false }), /snapshot_isolation/);
  assert.doesNotMatch(renderMariadbCnf({ ...cnf, tls: { ...cnf.tls!, require: false } }), /require_secure_transport/);
});

test('the MariaDB drop-in refuses values that would break an option file', () => {
  const bad: [string, Partial<MariadbCnfInput>][] = [
    ['bindAddress', { bindAddress: '10.0.0.2\nskip-grant-tables' }],
    ['bindAddress', { bindAddress: 'db.example' }],
    ['tls.caFile', { tls: { ...cnf.tls!, caFile: '/etc/my ca.pem' } }],
    ['tls.keyFile', { tls: { ...cnf.tls!, keyFile: 'relative.pem' } }],
    ['maxConnections', { maxConnections: 0 }],
  ];
  assertFieldErrors(renderMariadbCnf, cnf, bad);
});

test('mariadbd parses the rendered drop-in and takes its values', (t) => {
  const mariadbd = which('mariadbd');
  if (mariadbd === undefined) return t.skip('mariadbd not installed');
  withTempFile('60-k8s-ha.cnf', renderMariadbCnf(cnf), (path) => {
    // --help --verbose reads the options and prints the resulting values
    // without starting the server; an unknown variable makes it fail.
    const r = run(mariadbd, [`--defaults-file=${path}`, '--help', '--verbose']);
    assert.equal(r.status, 0, r.stderr);
    const values = new Map(
      r.stdout
        .split('\n')
        .map((l) => /^(\S+)\s+(\S.*)$/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1]!, m[2]!.trim()]),
    );
    assert.equal(values.get('bind-address'), '10.0.0.2');
    assert.equal(values.get('max-connections'), '200');
    assert.equal(values.get('auto-increment-increment'), '1');
    assert.equal(values.get('innodb-snapshot-isolation'), 'FALSE');
    assert.equal(values.get('require-secure-transport'), 'TRUE');
    assert.equal(values.get('skip-name-resolve'), 'TRUE');
    assert.equal(values.get('ssl-key'), '/etc/mysql/k8s-ha/server-key.pem');
  });
});

test('my_print_defaults reads every line of the rendered drop-in', (t) => {
  const mpd = which('my_print_defaults');
  if (mpd === undefined) return t.skip('my_print_defaults not installed');
  const text = renderMariadbCnf(cnf);
  const settings = text.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('['));
  withTempFile('60-k8s-ha.cnf', text, (path) => {
    const r = run(mpd, [`--defaults-file=${path}`, 'mysqld']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, settings.length, r.stdout);
    assert.match(r.stdout, /^--innodb_snapshot_isolation=OFF$/m);
  });
});

test('SQL strings escape backslash, quotes and control characters', () => {
  assert.equal(sqlString(`a'b`), `'a\\'b'`);
  assert.equal(sqlString(`a\\b`), `'a\\\\b'`);
  assert.equal(sqlString(`a"b`), `'a\\"b'`);
  assert.equal(sqlString('a\nb\0c\rd\x1ae'), `'a\\nb\\0c\\rd\\Ze'`);
  assert.equal(sqlString(`\\'`), `'\\\\\\''`);
});

test('the datastore SQL matches the expected file, masked for plans', () => {
  assertGolden('datastore.sql', renderDatastoreSql(sql, { maskSecrets: true }));
  const masked = renderDatastoreSql(sql, { maskSecrets: true });
  assert.ok(!masked.includes('p\\\'a'), 'masked SQL must not hold the password');
  assert.ok(masked.includes(`IDENTIFIED BY '${MASK}'`));
  assert.ok(renderDatastoreSql(sql).includes(`IDENTIFIED BY ${sqlString(PASSWORD)}`));
});

test('the datastore SQL creates, converges and grants per server and drops accounts of former servers', () => {
  const out = renderDatastoreSql(sql, { maskSecrets: true });
  const creates = [...out.matchAll(/^CREATE USER IF NOT EXISTS 'k3s'@'([^']+)'/gm)].map((m) => m[1]);
  assert.deepEqual(creates, ['10.0.0.5', '10.0.0.6']);
  assert.match(out, /^ALTER USER 'k3s'@'10\.0\.0\.6' IDENTIFIED BY '\*+' REQUIRE SSL;$/m);
  assert.match(out, /^GRANT ALL PRIVILEGES ON `k3s`\.\* TO 'k3s'@'10\.0\.0\.5';$/m);
  const drops = [...out.matchAll(/^DROP USER IF EXISTS 'k3s'@'([^']+)';$/gm)].map((m) => m[1]);
  assert.deepEqual(drops, ['%', '10.0.0.9']);
  assert.deepEqual(staleUserHosts(sql.serverAddresses, sql.existingUserHosts!), ['%', '10.0.0.9']);
  assert.match(renderDatastoreSql({ ...sql, requireTls: false }, { maskSecrets: true }), /REQUIRE NONE;/);
  assert.equal(renderDatastoreSql({ ...sql, serverAddresses: ['10.0.0.5', '10.0.0.6'] }), renderDatastoreSql(sql));
});

test('the datastore SQL refuses names that are not plain identifiers and passwords with control characters', () => {
  const bad: [string, Partial<DatastoreSqlInput>][] = [
    ['database', { database: 'k3s`; DROP DATABASE mysql; --' }],
    ['database', { database: '1k3s' }],
    ['user', { user: 'k3s:x' }],
    ['user', { user: "k3s'" }],
    ['password', { password: new Secret('line\nbreak') }],
    ['password', { password: new Secret('') }],
    ['serverAddresses[0]', { serverAddresses: ["10.0.0.5' OR 1=1"] }],
    ['serverAddresses', { serverAddresses: [] }],
  ];
  assertFieldErrors(renderDatastoreSql, sql, bad);
  assert.throws(() => renderUserHostsQuery("k3s' OR '1"), RenderInputError);
});

test('the datastore endpoint carries user and password unencoded, with no tls=, as a Secret', () => {
  const input = { user: 'k3s', password: new Secret(PASSWORD), host: '10.0.0.2', database: 'k3s' };
  const ep = datastoreEndpoint(input);
  assert.ok(ep instanceof Secret);
  assert.equal(String(ep), MASK);
  // go-sql-driver's ParseDSN (kine) splits at the first ':' and the last '@'
  // before the last '/', and does not percent-decode: the raw password is
  // what reaches MariaDB. (Checked against go-sql-driver/mysql v1.10.1.)
  assert.equal(ep.reveal(), `mysql://k3s:${PASSWORD}@tcp(10.0.0.2:3306)/k3s`);
  assert.doesNotMatch(ep.reveal(), /tls=/);
  assert.equal(datastoreEndpoint({ ...input, host: 'fd00::2', port: 3307 }).reveal(), `mysql://k3s:${PASSWORD}@tcp([fd00::2]:3307)/k3s`);
  assert.equal(describeDatastoreEndpoint(input), `mysql://k3s:${MASK}@tcp(10.0.0.2:3306)/k3s`);
  assert.throws(() => datastoreEndpoint({ ...input, database: 'a/b' }), RenderInputError);
  assert.throws(() => datastoreEndpoint({ ...input, host: '10.0.0.2)/x' }), RenderInputError);
});

/** A throwaway MariaDB on a Unix socket in a temp dir; stopped by its pid. */
async function withScratchMariadb(fn: (client: (sqlText: string) => ReturnType<typeof run>) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-mariadb-'));
  const sock = join(dir, 'sock');
  const install = run('mariadb-install-db', ['--no-defaults', `--datadir=${dir}/data`, '--user=root', '--auth-root-authentication-method=socket', '--skip-test-db']);
  assert.equal(install.status, 0, install.stderr);
  const server = spawn(
    'mariadbd',
    ['--no-defaults', `--datadir=${dir}/data`, `--socket=${sock}`, '--skip-networking', '--user=root', `--pid-file=${dir}/pid`, `--log-error=${dir}/err.log`, '--innodb-buffer-pool-size=16M',
      // The SQL must set its own sql_mode: with this, unescaped backslashes would change the password.
      '--sql-mode=NO_BACKSLASH_ESCAPES'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(existsSync(sock), 'scratch mariadbd did not start');
    fn((sqlText) => run('mariadb', [`--socket=${sock}`, '-u', 'root', '--batch', '--skip-column-names'], sqlText));
  } finally {
    if (server.pid !== undefined) process.kill(server.pid, 'SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

test('MariaDB runs the datastore SQL twice, converges a new password and drops a former server', async (t) => {
  if (which('mariadbd') === undefined || which('mariadb-install-db') === undefined || which('mariadb') === undefined) {
    return t.skip('mariadbd, mariadb-install-db or mariadb not installed');
  }
  await withScratchMariadb((client) => {
    const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex');
    // The password is compared through a hex literal, so this check does not
    // depend on the escaping under test.
    const passwordMatches = (pw: string): string =>
      client(`SELECT COUNT(*) FROM mysql.user WHERE User='k3s' AND authentication_string = PASSWORD(CONVERT(X'${hex(pw)}' USING utf8mb4));`).stdout.trim();

    const first = { ...sql, existingUserHosts: [] };
    for (let i = 0; i < 2; i++) {
      const r = client(renderDatastoreSql(first));
      assert.equal(r.status, 0, r.stderr);
    }
    assert.equal(client(renderUserHostsQuery('k3s')).stdout, '10.0.0.5\n10.0.0.6\n');
    assert.equal(passwordMatches(PASSWORD), '2');
    assert.equal(client("SELECT ssl_type FROM mysql.user WHERE User='k3s' AND Host='10.0.0.5';").stdout.trim(), 'ANY');
    assert.match(client("SHOW GRANTS FOR 'k3s'@'10.0.0.5';").stdout, /GRANT ALL PRIVILEGES ON `k3s`\.\* TO `k3s`@`10\.0\.0\.5`/);
    assert.equal(client("SHOW DATABASES LIKE 'k3s';").stdout.trim(), 'k3s');

    // Server 10.0.0.6 replaced by 10.0.0.7, new password, TLS no longer required.
    const hosts = client(renderUserHostsQuery('k3s')).stdout.trim().split('\n');
    const next = { ...sql, password: new Secret('n3w\\pa$$'), serverAddresses: ['10.0.0.5', '10.0.0.7'], existingUserHosts: hosts, requireTls: false };
    const r = client(renderDatastoreSql(next));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(client(renderUserHostsQuery('k3s')).stdout, '10.0.0.5\n10.0.0.7\n');
    assert.equal(passwordMatches('n3w\\pa$$'), '2');
    assert.equal(client("SELECT ssl_type FROM mysql.user WHERE User='k3s' AND Host='10.0.0.5';").stdout.trim(), '');
  });
});
