import type { Lab } from './index.js';

/**
 * What burnt the auto-increment ids behind kine's gap rows in a drill
 * (issue 14). kine's revision is the row id; when an id is missing while a
 * later one is committed, kine's poll loop fills it with a `gap-<id>` row. An
 * id goes missing when a statement took it and did not commit. Measured in
 * the lab (g-gap, 2026-12-01: MariaDB's statement error log, binlogs and the
 * kine table): every gap row a drill left was the id of kine's own INSERT
 * that failed on the unique index (name, prev_revision) on the writer — two
 * k3s servers writing one key at once, e.g. both servers' kine deleting the
 * same expired lease (each runs its own TTL loop) — which burns the id it
 * took (InnoDB allocates it before the duplicate check, in every
 * innodb_autoinc_lock_mode), with one MariaDB as much as with Galera. A
 * transaction of the failover (cut on the old writer, or failing
 * certification at the view change) would show as a gap row with no such
 * failed INSERT, or as a certification failure: these helpers count both.
 *
 * MariaDB's `sql_errlog` plugin (shipped with Debian's mariadb-server) logs
 * every statement that failed, with its error; the drill installs it on the
 * data nodes (observation only: nothing of k8s-ha's reads it).
 */

/** Where sql_errlog writes (its default name, in the data directory). */
export const STATEMENT_ERROR_LOG = '/var/lib/mysql/sql_errors.log';
/** kine's unique index on (name, prev_revision): a failed INSERT on it burnt an id. */
export const KINE_UNIQUE_INDEX = 'kine_name_prev_revision_uindex';

const NODES = ['infra1', 'infra2'];

async function sql(lab: Lab, node: string, q: string): Promise<string> {
  return (await lab.exec(node, ['mariadb', '--batch', '--skip-column-names', '-e', q])).stdout.trim();
}

/** Load sql_errlog on a data node if it is not loaded (INSTALL SONAME persists across restarts). */
export async function logFailedStatements(lab: Lab, node: string): Promise<void> {
  const on = await sql(lab, node, "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'SQL_ERROR_LOG' AND PLUGIN_STATUS = 'ACTIVE'");
  if (on !== '1') await sql(lab, node, "INSTALL SONAME 'sql_errlog'");
}

async function errorLines(lab: Lab, node: string): Promise<string[]> {
  const r = await lab.exec(node, ['sh', '-c', `cat ${STATEMENT_ERROR_LOG} 2>/dev/null || true`], { allowFailure: true });
  return r.stdout.split('\n').filter((l) => / ERROR \d+:/.test(l));
}

/** Null while the node's MariaDB does not answer (the failed node, before `apply` brings it back). */
async function certFailures(lab: Lab, node: string): Promise<number | null> {
  const r = await lab.exec(node, ['mariadb', '--batch', '--skip-column-names', '-e', "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_CERT_FAILURES'"], { allowFailure: true });
  return r.code === 0 ? Number(r.stdout.trim()) : null;
}

export interface GapSnapshot {
  /** The kine table's highest id, on the node read. */
  maxId: number;
  /** Lines in each node's statement error log, and its certification failures (counters reset at a restart). */
  errorLines: Record<string, number>;
  certFailures: Record<string, number | null>;
}

/** Before a drill: every data node logs its failed statements; where its counters stand. `node` is the one that stays up. */
export async function gapSnapshot(lab: Lab, node: string): Promise<GapSnapshot> {
  const s: GapSnapshot = { maxId: Number(await sql(lab, node, 'SELECT COALESCE(MAX(id), 0) FROM k3s.kine')), errorLines: {}, certFailures: {} };
  for (const n of NODES) {
    await logFailedStatements(lab, n);
    s.errorLines[n] = (await errorLines(lab, n)).length;
    s.certFailures[n] = await certFailures(lab, n);
  }
  return s;
}

export interface GapAccount {
  /** New gap rows' ids. */
  gapIds: number[];
  /** kine's INSERTs that failed on its unique index during the drill (each burnt one id), as logged. */
  duplicateInserts: string[];
  /**
   * Certification failures during the drill on the nodes that answer
   * afterwards (a restarted node counts from 0; the failed node is read once
   * it is back only if it already is — the survivor, the node whose counter
   * later ids come from, always is).
   */
  certFailures: number;
}

/** After a drill: the new gap rows and what could have burnt their ids, from `before` on. */
export async function gapAccount(lab: Lab, node: string, before: GapSnapshot): Promise<GapAccount> {
  const ids = await sql(lab, node, `SELECT id FROM k3s.kine WHERE name LIKE 'gap-%' AND id > ${before.maxId} ORDER BY id`);
  const duplicateInserts: string[] = [];
  let cert = 0;
  for (const n of NODES) {
    const lines = await errorLines(lab, n);
    // A log shorter than before was replaced (it is not rotated at this size): read it whole.
    const from = lines.length >= (before.errorLines[n] ?? 0) ? (before.errorLines[n] ?? 0) : 0;
    for (const l of lines.slice(from)) {
      if (l.includes('ERROR 1062:') && l.includes(`'${KINE_UNIQUE_INDEX}'`)) duplicateInserts.push(`${n}: ${l.replace(/ : INSERT INTO .*/, '')}`);
    }
    const now = await certFailures(lab, n);
    const was = before.certFailures[n] ?? null;
    if (now !== null) cert += was !== null && now >= was ? now - was : now;
  }
  return { gapIds: ids ? ids.split('\n').map(Number) : [], duplicateInserts, certFailures: cert };
}
