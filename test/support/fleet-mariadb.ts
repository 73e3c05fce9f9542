import { ok } from '../../src/transport/memory.js';
import type { ExecResult } from '../../src/transport/host.js';
import type { Machine } from './fleet-debian.js';
import { bootstrapName, encryptBootstrap, insertRow, loadDump, renderDump, type FakeKineTable } from './fleet-kine.js';

/**
 * MariaDB as the datastore phase and the k3s servers see it: `mariadb
 * --batch` reading SQL on stdin (the variables, the database, the accounts
 * with a server-side password comparison, the grants), and the k3s
 * bootstrap data kine keeps in the database. openssl on the same host makes
 * the TLS files.
 */
export interface FakeMariadb {
  /** VERSION() as the server reports it. */
  version: string;
  /** Server defaults, upper-case names; what the running config sets wins (see variables()). */
  variables: Record<string, string>;
  databases: Set<string>;
  /** account host -> password and TLS rule of the k3s user's accounts. */
  users: Map<string, { password: string; ssl: string }>;
  grants: Set<string>;
  /** Every SQL script received on stdin. */
  scripts: string[];
  /** database -> the secret part of the token k3s's bootstrap data is encrypted with (FACTS). */
  bootstrap: Map<string, string>;
  /** database name -> its kine table (fleet-kine.ts); made when a server first bootstraps. */
  kine: Map<string, FakeKineTable>;
  /** /bootstrap/<hash> -> the passphrase, for every bootstrap row ever written (to read a loaded dump back). */
  passphrases: Map<string, string>;
  /** Every `mariadb-dump` run: the database dumped. */
  dumps: string[];
  /** `SET GLOBAL name = value` since the server last (re)started: upper-case name -> value and the start it applies to. */
  globals: Map<string, { value: string; start: number }>;
}

export function fakeMariadb(version = '10.11.14-MariaDB-0+deb12u2'): FakeMariadb {
  return {
    version,
    variables: { AUTO_INCREMENT_INCREMENT: '1', AUTO_INCREMENT_OFFSET: '1', MAX_CONNECTIONS: '151', INNODB_SNAPSHOT_ISOLATION: 'OFF' },
    databases: new Set(),
    users: new Map(),
    grants: new Set(),
    scripts: [],
    bootstrap: new Map(),
    kine: new Map(),
    passphrases: new Map(),
    globals: new Map(),
    dumps: [],
  };
}

const unescape = (s: string) => s.replace(/\\(.)/g, '$1');

const startsOf = (m: Machine): number => {
  const s = m.host.services.get('mariadb');
  return s ? s.starts + s.restarts : 0;
};

/** The variables of the running server: its defaults, then what the config it started with sets. */
export function variables(m: Machine, db: FakeMariadb): Record<string, string> {
  const out = { ...db.variables };
  for (const content of m.running.get('mariadb')?.values() ?? []) {
    for (const line of (content ?? '').split('\n')) {
      const kv = /^\s*([a-z_]+)\s*=\s*(\S+)\s*$/.exec(line);
      if (kv && ['max_connections', 'innodb_snapshot_isolation'].includes(kv[1]!)) out[kv[1]!.toUpperCase()] = kv[2]!;
    }
  }
  // A SET GLOBAL lasts until the server restarts.
  for (const [k, g] of db.globals) if (g.start === startsOf(m)) out[k] = g.value;
  return out;
}

/**
 * The kine table of `database`, with the bootstrap row k3s writes at its
 * first start (the k3s model records only which token bootstrapped it).
 * Undefined while no server has started on it.
 */
export function kineTable(m: Machine, db: FakeMariadb, database: string): FakeKineTable | undefined {
  const token = db.bootstrap.get(`${m.host.address}/${database}`);
  let t = db.kine.get(database);
  if (token !== undefined && db.databases.has(database)) {
    if (!t) db.kine.set(database, (t = { rows: [], autoIncrement: 1 }));
    const name = bootstrapName(token);
    if (!t.rows.some((r) => r.name === name && r.deleted === 0)) {
      db.passphrases.set(name, token);
      insertRow(t, name, encryptBootstrap(token, `simulated CA and keys of ${database}`));
    }
  }
  return t;
}

/** The statements of backup/sql.ts, and a dump loaded into `database`. Null when the SQL is none of them. */
function answerKineSql(m: Machine, db: FakeMariadb, sql: string, database: string | undefined): string | null {
  let r = /SELECT 'table', COUNT\(\*\) FROM information_schema\.TABLES WHERE TABLE_SCHEMA = '([^']+)'/.exec(sql);
  if (r) return `table\t${kineTable(m, db, r[1]!) ? 1 : 0}\n`;
  r = /SELECT 'max', COALESCE\(MAX\(id\), 0\) FROM `([^`]+)`\.kine/.exec(sql);
  if (r) {
    const t = kineTable(m, db, r[1]!);
    if (!t) throw new SqlError(`ERROR 1146 (42S02) at line 1: Table '${r[1]}.kine' doesn't exist`);
    return `max\t${Math.max(0, ...t.rows.map((x) => x.id))}\nnext\t${t.autoIncrement}\n`;
  }
  r = /SELECT 'rows', COUNT\(\*\), COALESCE\(MAX\(id\), 0\) FROM `([^`]+)`\.kine/.exec(sql);
  if (r) {
    const t = kineTable(m, db, r[1]!);
    if (!t) throw new SqlError(`ERROR 1146 (42S02) at line 1: Table '${r[1]}.kine' doesn't exist`);
    return `rows\t${t.rows.length}\t${Math.max(0, ...t.rows.map((x) => x.id))}\n`;
  }
  // reset's look at the database and the accounts (phases/reset.ts).
  r = /^SELECT 'db', SCHEMA_NAME FROM information_schema\.SCHEMATA WHERE SCHEMA_NAME = '([^']+)';\nSELECT 'user', Host FROM mysql\.user/.exec(sql);
  if (r && !sql.includes("SELECT 'version'")) return [...(db.databases.has(r[1]!) ? [`db\t${r[1]}`] : []), ...[...db.users.keys()].map((h) => `user\t${h}`)].map((l) => `${l}\n`).join('');
  r = /^DROP DATABASE IF EXISTS `([^`]+)`;/m.exec(sql);
  if (r) {
    db.databases.delete(r[1]!);
    db.kine.delete(r[1]!);
    db.bootstrap.delete(`${m.host.address}/${r[1]}`);
    for (const u of sql.matchAll(/^DROP USER IF EXISTS '[^']+'@'([^']+)';/gm)) {
      db.users.delete(u[1]!);
      db.grants.delete(u[1]!);
    }
    return '';
  }
  database ??= /^USE `([^`]+)`;/m.exec(sql)?.[1];
  if (!database) return null;
  if (!db.databases.has(database)) throw new SqlError(`ERROR 1049 (42000): Unknown database '${database}'`);
  if (/CREATE TABLE `kine`/.test(sql)) {
    const t = loadDump(sql)!;
    db.kine.set(database, t);
    const key = `${m.host.address}/${database}`;
    db.bootstrap.delete(key);
    const boot = t.rows.filter((x) => x.name.startsWith('/bootstrap/') && x.deleted === 0).pop();
    const pass = boot && db.passphrases.get(boot.name);
    if (pass !== undefined) db.bootstrap.set(key, pass);
    return '';
  }
  const t = db.kine.get(database);
  // restore: every row of the named keys removed, ROW_COUNT() reported
  let out = '';
  r = /^DELETE FROM kine WHERE name IN \((.*)\);$/m.exec(sql);
  if (r && t) {
    const keys = new Set([...r[1]!.matchAll(/'([^']*)'/g)].map((x) => x[1]!));
    const before = t.rows.length;
    t.rows = t.rows.filter((x) => !keys.has(x.name));
    if (/^SELECT 'deleted', ROW_COUNT\(\);$/m.test(sql)) out = `deleted\t${before - t.rows.length}\n`;
  }
  r = /^INSERT INTO kine \(id, name, created, deleted, create_revision, prev_revision, lease, value, old_value\) VALUES \((\d+), '([^']+)', 0, 1,/m.exec(sql);
  if (r && t) {
    const id = Number(r[1]);
    if (t.rows.some((x) => x.id === id)) throw new SqlError(`ERROR 1062 (23000) at line 1: Duplicate entry '${id}' for key 'PRIMARY'`);
    t.rows.push({ id, name: r[2]!, deleted: 1, value: Buffer.alloc(0) });
    t.autoIncrement = Math.max(t.autoIncrement, id + 1);
  }
  r = /^ALTER TABLE kine AUTO_INCREMENT = (\d+);/m.exec(sql);
  if (r && t) t.autoIncrement = Math.max(Number(r[1]), ...t.rows.map((x) => x.id + 1));
  return out;
}

/** A failing statement: `mariadb` exits 1 with this on stderr. */
export class SqlError extends Error {}

export function answerSql(m: Machine, db: FakeMariadb, sql: string, database?: string): string {
  db.scripts.push(sql);
  const kine = answerKineSql(m, db, sql, database);
  if (kine !== null) return kine;
  for (const g of sql.matchAll(/^SET GLOBAL ([a-z_]+) = (\d+);$/gm)) {
    db.globals.set(g[1]!.toUpperCase(), { value: g[2]!, start: startsOf(m) });
    // The daemon now runs with that value, as a file saying so would give it at start (for stale()).
    const files = m.running.get('mariadb');
    for (const [path, content] of files ?? []) if (content) files!.set(path, content.replace(new RegExp(`^(\\s*${g[1]}\\s*=\\s*)\\S+`, 'm'), `$1${g[2]}`));
  }
  return answerAccountSql(db, variables(m, db), sql);
}

/**
 * The datastore phase's own SQL, without a machine: the read-back query (the
 * version, the variables given, the database, the accounts with a
 * server-side password comparison, the grants) and the account statements.
 * The engine tests of the infrastructure phases use it on memory hosts.
 */
export function answerAccountSql(db: FakeMariadb, vars: Record<string, string>, sql: string): string {
  if (sql.includes("SELECT 'version'")) {
    const pw = unescape(/PASSWORD\('((?:[^'\\]|\\.)*)'\)/.exec(sql)?.[1] ?? '');
    const dbName = /SCHEMA_NAME = '([^']+)'/.exec(sql)?.[1] ?? '';
    const rows = [`version\t${db.version}`];
    for (const [k, v] of Object.entries(vars)) rows.push(`var\t${k}\t${v}`);
    if (db.databases.has(dbName)) rows.push(`db\t${dbName}`);
    for (const [h, u] of db.users) rows.push(`user\t${h}\t${u.password === pw ? 'same' : 'differs'}\t${u.ssl}`);
    for (const h of db.grants) rows.push(`grant\t${h}`);
    return rows.join('\n') + '\n';
  }
  for (const line of sql.split('\n')) {
    let r = /^CREATE DATABASE IF NOT EXISTS `([^`]+)`/.exec(line);
    if (r) db.databases.add(r[1]!);
    r = /^(CREATE USER IF NOT EXISTS|ALTER USER) '[^']+'@'([^']+)' IDENTIFIED BY '((?:[^'\\]|\\.)*)' REQUIRE (SSL|NONE)/.exec(line);
    if (r) {
      const exists = db.users.has(r[2]!);
      if (r[1] === 'ALTER USER' || !exists) db.users.set(r[2]!, { password: unescape(r[3]!), ssl: r[4] === 'SSL' ? 'ANY' : 'NONE' });
    }
    r = /^GRANT ALL PRIVILEGES ON .* TO '[^']+'@'([^']+)'/.exec(line);
    if (r) db.grants.add(r[1]!);
    r = /^DROP USER IF EXISTS '[^']+'@'([^']+)'/.exec(line);
    if (r) {
      db.users.delete(r[1]!);
      db.grants.delete(r[1]!);
    }
  }
  return '';
}

/** Why a k3s server at `from` cannot use the database, or null (kine's view of the DSN). */
export function loginProblem(m: Machine, db: FakeMariadb, dsn: { user: string; password: string; database: string }, from: string, caFile: string | null, caOnClient: string | null): string | null {
  if (!m.host.services.get('mariadb')?.active) return `dial tcp ${m.host.address}:3306: connect: connection refused`;
  const bind = variablesBind(m);
  if (bind !== m.host.address && bind !== '0.0.0.0') return `dial tcp ${m.host.address}:3306: connect: connection refused`;
  const acct = db.users.get(from);
  if (!acct || acct.password !== dsn.password) return `Error 1045 (28000): Access denied for user '${dsn.user}'@'${from}' (using password: YES)`;
  if (acct.ssl === 'ANY' && (!caFile || caOnClient === null || caOnClient !== m.text('/etc/mysql/k8s-ha-tls/ca.pem'))) {
    return `Error 1045 (28000): Access denied for user '${dsn.user}'@'${from}' (TLS required; datastore-cafile ${caFile ? 'does not verify the server' : 'not set'})`;
  }
  if (!db.grants.has(from)) return `Error 1044 (42000): Access denied for user '${dsn.user}'@'${from}' to database '${dsn.database}'`;
  return null;
}

/** bind-address of the running server: the last file that sets it wins (60-k8s-ha.cnf after 50-server.cnf). */
function variablesBind(m: Machine): string {
  let bind = '127.0.0.1';
  for (const content of m.running.get('mariadb')?.values() ?? []) {
    const b = /^\s*bind-address\s*=\s*(\S+)/m.exec(content ?? '');
    if (b) bind = b[1]!;
  }
  return bind;
}

const TLS_DIR = '/etc/mysql/k8s-ha-tls';

/** `mariadb --batch`, the TLS status and issue commands, on one host. */
export function attachMariadb(m: Machine, db: FakeMariadb): void {
  const h = m.host;
  const down = (): ExecResult | null => {
    if (!m.has('/usr/bin/mariadb')) return { code: 127, stdout: '', stderr: 'bash: line 1: mariadb: command not found' };
    if (!h.services.get('mariadb')?.active) return { code: 1, stdout: '', stderr: "ERROR 2002 (HY000): Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)" };
    return null;
  };
  h.handle(/^mariadb --batch/, (cmd, stdin): ExecResult => {
    const fail = down();
    if (fail) return fail;
    // `mariadb --batch [options] [DB]`: a last word that is not an option names the database.
    const last = cmd.text.split(' ').pop()!;
    try {
      return ok(answerSql(m, db, stdin, last.startsWith('-') ? undefined : last));
    } catch (e) {
      if (e instanceof SqlError) return { code: 1, stdout: '', stderr: e.message };
      throw e;
    }
  });
  h.handle(/^mariadb-dump /, (cmd): ExecResult => {
    const fail = down();
    if (fail) return fail;
    const database = cmd.text.split(' ').pop()!;
    if (!db.databases.has(database)) return { code: 2, stdout: '', stderr: `mariadb-dump: Got error: 1049: "Unknown database '${database}'" when selecting the database` };
    db.dumps.push(database);
    const t = kineTable(m, db, database);
    return ok(t ? renderDump(t) : '');
  });
  h.handle((t) => t.startsWith(`if [ -s ${TLS_DIR}/ca.pem ]`), (cmd) => {
    const address = /-checkip (\S+)/.exec(cmd.text)?.[1] ?? '';
    const ca = m.has(`${TLS_DIR}/ca.pem`) && m.has(`${TLS_DIR}/ca-key.pem`);
    const cert = m.text(`${TLS_DIR}/server.pem`);
    const state = cert === null || !m.has(`${TLS_DIR}/server-key.pem`) ? 'missing' : ca && cert.includes(`IP:${address}`) && cert.includes(m.text(`${TLS_DIR}/ca.pem`)!.split('\n')[0]!) ? 'ok' : 'invalid';
    return ok(`ca=${ca ? 'yes' : 'no'}\ncert=${state}\n`);
  });
  h.handle((t) => t.startsWith('set -e; umask 077;') && t.includes('openssl'), (cmd) => {
    if (!m.has('/usr/bin/openssl')) return { code: 127, stdout: '', stderr: 'bash: line 2: openssl: command not found' };
    const address = /subjectAltName=IP:([^' ]+)/.exec(cmd.text)?.[1] ?? '';
    if (!m.has(`${TLS_DIR}/ca.pem`) || !m.has(`${TLS_DIR}/ca-key.pem`)) {
      h.setFile(`${TLS_DIR}/ca-key.pem`, '-----BEGIN PRIVATE KEY----- simulated CA key\n', { mode: 0o600 });
      h.setFile(`${TLS_DIR}/ca.pem`, `-----BEGIN CERTIFICATE----- simulated CA of ${h.name}\n`, { mode: 0o644 });
    }
    const caLine = m.text(`${TLS_DIR}/ca.pem`)!.split('\n')[0]!;
    h.setFile(`${TLS_DIR}/server-key.pem`, '-----BEGIN PRIVATE KEY----- simulated server key\n', { mode: 0o600, owner: 'mysql', group: 'mysql' });
    h.setFile(`${TLS_DIR}/server.pem`, `-----BEGIN CERTIFICATE----- simulated, IP:${address}, issuer:\n${caLine}\n`, { mode: 0o644 });
    return ok();
  });
}
