import { sqlString } from '../render/mariadb.js';
import { sh, type Command } from '../transport/quote.js';

/**
 * The commands and SQL a backup and a restore send to the datastore host.
 * All run as root over MariaDB's local socket (Debian's unix_socket
 * authentication), so no password is needed or shown.
 */

const ident = (name: string): string => `\`${name.replace(/`/g, '``')}\``;

/**
 * A consistent dump of the kine database on stdout: one transaction's
 * snapshot (--single-transaction, no lock on kine's InnoDB table), rows
 * streamed rather than buffered (--quick), blobs as hex so the dump is plain
 * ASCII, no LOCK TABLES around the inserts (Galera does not support explicit
 * table locks; the load runs with k3s stopped anyway), no date line (the
 * manifest carries the time). No CREATE DATABASE:
 * the restore loads it into the database the cluster file names.
 */
export function dumpCommand(database: string): Command {
  return sh`mariadb-dump --single-transaction --quick --hex-blob --skip-add-locks --skip-dump-date --default-character-set=utf8mb4 ${database}`;
}

/** `mariadb` loading SQL from stdin into `database`. */
export function loadCommand(database: string): Command {
  return sh`mariadb --batch --default-character-set=utf8mb4 ${database}`;
}

/**
 * The highest kine revision: the largest row id and the table's
 * AUTO_INCREMENT (one above the highest id ever handed out, which may be
 * higher than any row still there). Rows `max\tN` and `next\tN`; neither
 * when the table does not exist.
 */
export function revisionSql(database: string): string {
  return [
    `SELECT 'max', COALESCE(MAX(id), 0) FROM ${ident(database)}.kine;`,
    `SELECT 'next', AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${sqlString(database)} AND TABLE_NAME = 'kine';`,
    '',
  ].join('\n');
}

/** Whether the kine table exists: the revision query fails without it, so ask first. */
export function tableExistsSql(database: string): string {
  return `SELECT 'table', COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${sqlString(database)} AND TABLE_NAME = 'kine';\n`;
}

export interface Revision {
  /** Largest row id (0 for an empty table). */
  maxId: number;
  /** Highest id ever handed out: AUTO_INCREMENT - 1, at least maxId. */
  highest: number;
}

export function parseRevision(stdout: string): Revision | null {
  let max: number | null = null;
  let next: number | null = null;
  for (const line of stdout.split('\n')) {
    const [tag, v] = line.split('\t');
    if (tag === 'max') max = Number(v);
    if (tag === 'next' && v !== 'NULL') next = Number(v);
  }
  if (max === null || !Number.isFinite(max)) return null;
  return { maxId: max, highest: Math.max(max, next !== null && Number.isFinite(next) ? next - 1 : 0) };
}

/**
 * After the dump is loaded: make `revision` the table's current revision so
 * that no revision a watcher or cache already saw is ever handed out again
 * (FACTS: etcd-io/etcd#16028; vcluster does the same). kine reads its
 * current revision as MAX(id) when it starts, so a filler row at `revision`
 * — the very row kine itself writes to close a gap (`gap-N`, deleted) — moves
 * it there without kine seeing a gap; AUTO_INCREMENT then follows. Nothing
 * to add when the dump already ends at that revision.
 */
export function bumpSql(revision: number, dumpMaxId: number): string {
  const out: string[] = [];
  if (revision > dumpMaxId) {
    out.push(
      `INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES (${revision}, ${sqlString(`gap-${revision}`)}, 0, 1, 0, 0, 0, NULL, NULL);`,
    );
  }
  out.push(`ALTER TABLE kine AUTO_INCREMENT = ${revision + 1};`, '');
  return out.join('\n');
}

/** The kine key of a node's password Secret (k3s lower-cases the node name; FACTS, k3s#802). */
export function nodePasswordKey(node: string): string {
  return `/registry/secrets/kube-system/${node.toLowerCase()}.node-password.k3s`;
}

/**
 * After a load, before any k3s starts: remove every row (all revisions) of
 * these keys, so the restored cluster never had them; prints `deleted\tN`.
 * Rows below the current revision may be missing in kine's table (its own
 * compaction removes superseded ones), so no revision is reused.
 */
export function deleteKeysSql(keys: string[]): string {
  if (!keys.length) return '';
  return `DELETE FROM kine WHERE name IN (${keys.map(sqlString).join(', ')});
SELECT 'deleted', ROW_COUNT();
`;
}

export function parseDeleted(stdout: string): number {
  const m = /^deleted\t(\d+)$/m.exec(stdout);
  return m ? Number(m[1]) : 0;
}

/** Rows and highest id after a load, to prove the load is complete. */
export function countSql(database: string): string {
  return `SELECT 'rows', COUNT(*), COALESCE(MAX(id), 0) FROM ${ident(database)}.kine;\n`;
}

export function parseCount(stdout: string): { rows: number; maxId: number } | null {
  const line = stdout.split('\n').find((l) => l.startsWith('rows\t'));
  if (!line) return null;
  const [, rows, max] = line.split('\t');
  return { rows: Number(rows), maxId: Number(max) };
}

/** `reset --datastore`: the database and the k3s user's accounts (their hosts as observed). */
export function dropDatastoreSql(database: string, user: string, accountHosts: string[]): string {
  return [
    `DROP DATABASE IF EXISTS ${ident(database)};`,
    ...accountHosts.map((h) => `DROP USER IF EXISTS ${sqlString(user)}@${sqlString(h)};`),
    '',
  ].join('\n');
}
