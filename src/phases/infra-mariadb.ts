import { sqlString } from '../render/mariadb.js';
import { sh, type Command } from '../transport/quote.js';
import { tabLines } from './infra-common.js';

/**
 * Reading a running MariaDB for the datastore phase: the variables the
 * preflight checks, the k3s database, its accounts and grants. Every query
 * goes to `mariadb` on standard input (it carries the password for the hash
 * comparison), as root over the local socket (Debian's root@localhost uses
 * unix_socket authentication, so no admin password exists to leak).
 */

/** `mariadb` reading SQL from stdin; tab-separated rows, no headers. */
export const MARIADB_BATCH: Command = sh`mariadb --batch --skip-column-names`;

/** Variables the preflight reads (FACTS: kine's needs). Absent ones are simply not returned. */
export const CHECKED_VARIABLES = [
  'AUTO_INCREMENT_INCREMENT',
  'AUTO_INCREMENT_OFFSET',
  'INNODB_SNAPSHOT_ISOLATION',
  'MAX_CONNECTIONS',
  'WSREP_ON',
  'WSREP_AUTO_INCREMENT_CONTROL',
  // Galera's running options: whether it talks TLS (socket.ssl), for the Galera phase's preflight.
  'WSREP_PROVIDER_OPTIONS',
] as const;

// Same session sql_mode as renderDatastoreSql: sqlString's backslash
// escapes must mean what they say.
const SQL_MODE = "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION';";

/**
 * One script, one round trip; each row starts with a tag. The password is
 * compared server-side: `authentication_string = PASSWORD(...)` is true
 * exactly when the account's mysql_native_password hash is the current
 * password's, so a changed password is converged and an unchanged one is
 * not touched, without the hash ever leaving the host.
 */
export function observeSql(database: string, user: string, password: string): string {
  return [
    SQL_MODE,
    "SELECT 'version', VERSION();",
    `SELECT 'var', VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME IN (${CHECKED_VARIABLES.map((v) => sqlString(v)).join(', ')});`,
    `SELECT 'db', SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${sqlString(database)};`,
    `SELECT 'user', Host, IF(authentication_string = PASSWORD(${sqlString(password)}), 'same', 'differs'), IF(ssl_type = '', 'NONE', ssl_type) FROM mysql.user WHERE User = ${sqlString(user)};`,
    // GRANT ALL ON db.* is one mysql.db row; kine needs at least these.
    `SELECT 'grant', Host FROM mysql.db WHERE User = ${sqlString(user)} AND Db = ${sqlString(database)} AND Select_priv = 'Y' AND Insert_priv = 'Y' AND Update_priv = 'Y' AND Delete_priv = 'Y' AND Create_priv = 'Y' AND Index_priv = 'Y' AND Alter_priv = 'Y';`,
    '',
  ].join('\n');
}

export interface MariadbAccount {
  host: string;
  passwordMatches: boolean;
  /** `NONE` or `ANY` (REQUIRE SSL) or X509/SPECIFIED. */
  ssl: string;
}

export interface MariadbObserved {
  /** e.g. `10.11.6-MariaDB-0+deb12u1`. */
  version: string;
  /** Upper-case variable name -> value. */
  variables: Map<string, string>;
  databaseExists: boolean;
  accounts: MariadbAccount[];
  /** Hosts whose account holds the grants on the database. */
  granted: Set<string>;
}

export function parseObserveOutput(stdout: string): MariadbObserved {
  const o: MariadbObserved = { version: '', variables: new Map(), databaseExists: false, accounts: [], granted: new Set() };
  for (const f of tabLines(stdout)) {
    switch (f[0]) {
      case 'version':
        o.version = f[1] ?? '';
        break;
      case 'var':
        if (f[1]) o.variables.set(f[1].toUpperCase(), f[2] ?? '');
        break;
      case 'db':
        o.databaseExists = true;
        break;
      case 'user':
        if (f[1] !== undefined) o.accounts.push({ host: f[1], passwordMatches: f[2] === 'same', ssl: f[3] ?? 'NONE' });
        break;
      case 'grant':
        if (f[1] !== undefined) o.granted.add(f[1]);
        break;
    }
  }
  return o;
}

/** `1:10.11.6-0+deb12u1` or `10.11.6-MariaDB-0+deb12u1` -> [10, 11, 6]; null when unreadable. */
export function parseMariadbVersion(text: string): [number, number, number] | null {
  const m = /^(?:\d+:)?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/**
 * Whether this MariaDB knows `innodb_snapshot_isolation` (renderer note:
 * 10.6.18+, 10.11.8+, 11.4.2+, and every release after 11.4). Releases we
 * are unsure of count as not having it: an unknown variable stops MariaDB
 * from starting, while leaving the line out only matters from 11.8, where
 * the default turns ON, and every 11.8 has the variable.
 */
export function hasSnapshotIsolation(v: [number, number, number] | null): boolean {
  if (!v) return false;
  const [maj, min, patch] = v;
  if (maj > 11 || (maj === 11 && min >= 5)) return true;
  const need: Record<string, number> = { '10.6': 18, '10.11': 8, '11.4': 2 };
  const p = need[`${maj}.${min}`];
  return p !== undefined && patch >= p;
}

/** The MariaDB series k3s certifies (FACTS). */
export const CERTIFIED_SERIES = ['10.11', '11.4'] as const;

/** `apt-cache policy mariadb-server` -> the candidate version, or null. */
export function parseCandidate(stdout: string): string | null {
  const m = /Candidate:\s*(\S+)/.exec(stdout);
  return m && m[1] !== '(none)' ? m[1]! : null;
}
