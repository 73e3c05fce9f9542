import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import type { AnyPhase, Change, Phase } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { datastoreEndpointTargets, hostsWithRole } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { parseServiceState, serviceState, systemctl } from '../transport/os.js';
import { dumpSqlStream } from '../backup/archive.js';
import type { RestoreSource } from '../backup/restore-prep.js';
import { bumpSql, countSql, deleteKeysSql, loadCommand, nodePasswordKey, parseCount, parseDeleted, parseRevision, revisionSql, tableExistsSql, type Revision } from '../backup/sql.js';
import type { Cluster } from '../spec/cluster.js';
import { Secret } from '../util/secret.js';
import { NODE_PASSWORD_PATH } from './k3s-token.js';
import { isUnhealthyUpgradeProblem } from './k3s-servers.js';
import type { K3sVersion } from './k3s-versions.js';
import { MARIADB_BATCH } from './infra-mariadb.js';
import { AGENT_UNIT } from './k3s-agents.js';
import { SERVER_UNIT } from './k3s-servers.js';

/**
 * The phases only `restore` has: stop k3s everywhere (agents, then
 * servers), then replace the kine database with the backup's dump and move
 * the revision above every one the cluster ever served. The rest of the
 * restore pipeline is apply's own phases (pipeline in backup/restore.ts).
 */

/** What one restore run knows and has done; made per run. */
export interface RestoreJob {
  source: RestoreSource;
  /** The dump was loaded in this run: k3s may start again, nothing is stopped any more. */
  loaded: boolean;
  /** The revision the table was moved to. */
  revision?: number;
  loadMs?: number;
  /** Node-password rows the load removed (nodes the backup has no password for). */
  deletedNodePasswordRows?: number;
}

/** The cluster file's k3s nodes (servers, then agents), by host name = node name. */
export function k3sNodes(c: Cluster): string[] {
  return [...hostsWithRole(c, 'server'), ...hostsWithRole(c, 'agent')].map((h) => h.name);
}

/**
 * Nodes of the cluster file the backup holds no node password for (a
 * scheduled backup, an older archive, a node added since): their old
 * node-password Secrets are removed with the load, so each joins as a new
 * machine and k3s makes a new Secret from the password it has (FACTS:
 * k3s#802; k3s's own etcd restore removes the restoring server's Secret too).
 */
export function nodesWithoutPassword(c: Cluster, src: RestoreSource): string[] {
  const have = src.secrets.nodePasswords ?? {};
  return k3sNodes(c).filter((n) => have[n] === undefined);
}

/**
 * The highest revision a restore on this datastore host ever set, kept on
 * the host before any data is replaced: a restore cut off after the load
 * (the old table gone) still knows on the re-run how high the old cluster's
 * revisions went.
 */
export const REVISION_FLOOR_PATH = '/var/lib/k8s-ha/kine-revision-floor';

function stopPhase(job: RestoreJob, role: 'agent' | 'server'): Phase<Deployment, { active: boolean }> {
  const unit = role === 'agent' ? AGENT_UNIT : SERVER_UNIT;
  return {
    id: `restore-stop-${role}s`,
    title: role === 'agent' ? 'Stop k3s on every agent' : 'Stop k3s on every server',
    targets: (ctx) => hostsWithRole(ctx.cluster.spec, role).map((h) => h.name),
    async observe(_ctx, host) {
      const r = await host.exec(serviceState([unit]), { allowFailure: true });
      return { active: parseServiceState(r.stdout, [unit]).get(unit)?.active ?? false };
    },
    diff(_ctx, hostName, o): Change[] {
      if (job.loaded || !o.active) return [];
      return [{ action: 'update', target: { host: hostName, unit }, before: 'active', after: 'inactive', summary: `stop ${unit} (until the datastore is restored)`, apply: async (h) => void (await h.exec(systemctl('stop', unit), { timeoutMs: 300_000 })) }];
    },
  };
}

interface LoadObserved {
  mariadbUp: boolean;
  /** null when the kine table does not exist (a fresh datastore). */
  current: { rows: number; revision: Revision } | null;
  floor: number;
}

async function readCurrent(host: Host, database: string): Promise<LoadObserved['current']> {
  const t = await host.exec(MARIADB_BATCH, { stdin: tableExistsSql(database) });
  if (!/^table\t1$/m.test(t.stdout)) return null;
  const rev = parseRevision((await host.exec(MARIADB_BATCH, { stdin: revisionSql(database) })).stdout);
  const count = parseCount((await host.exec(MARIADB_BATCH, { stdin: countSql(database) })).stdout);
  return rev && count ? { rows: count.rows, revision: rev } : null;
}

async function readFloor(host: Host): Promise<number> {
  const n = Number((await host.readFile(REVISION_FLOOR_PATH))?.toString('utf8').trim() ?? 0);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** The revision the restored table must stand at: above every one the old cluster, the backup and earlier restores served. */
export function targetRevision(manifestRevision: number, dumpMaxId: number, o: Pick<LoadObserved, 'current' | 'floor'>): number {
  return Math.max(manifestRevision, dumpMaxId, o.current?.revision.highest ?? 0, o.floor);
}

function loadPhase(job: RestoreJob): Phase<Deployment, LoadObserved> {
  const src = job.source;
  return {
    id: 'restore-datastore',
    title: 'Restore the kine database from the backup',
    targets: (ctx) => datastoreEndpointTargets(ctx.cluster.spec),
    async observe(ctx, host) {
      const v = await host.exec(MARIADB_BATCH, { stdin: "SELECT 'version', VERSION();\n", allowFailure: true });
      if (v.code !== 0) return { mariadbUp: false, current: null, floor: 0 };
      return { mariadbUp: true, current: await readCurrent(host, ctx.cluster.spec.datastore.database), floor: await readFloor(host) };
    },
    diff(ctx, hostName, o): Change[] {
      if (job.loaded) return [];
      const db = ctx.cluster.spec.datastore.database;
      const planned = targetRevision(src.manifest.kineRevision, src.facts.maxId, o);
      const stale = nodesWithoutPassword(ctx.cluster.spec, src);
      const staleText = stale.length ? `, and remove the node-password secrets of ${stale.join(', ')} (the backup has no node password for them: they join as new machines)` : '';
      // Not running yet on a fresh machine: the datastore phase before this one installs it.
      const now = o.current ? `its ${o.current.rows} rows (revision ${o.current.revision.highest})` : o.mariadbUp ? 'an empty database' : 'the database the datastore phase makes';
      return [
        {
          action: 'update',
          target: { host: hostName, object: `mariadb/${db} kine table` },
          before: o.current ? `${o.current.rows} rows, revision ${o.current.revision.highest}` : null,
          after: `${src.facts.rows} rows from the backup of ${src.manifest.createdAt}, next revision above ${planned}`,
          summary: `replace ${now} in ${db} with the backup's ${src.facts.rows} rows from ${src.manifest.createdAt}, then set the next revision above ${planned}${staleText}`,
          apply: async (h) => {
            const t0 = Date.now();
            // Read again: the servers are stopped now, so this is the last revision they served.
            const fresh: Pick<LoadObserved, 'current' | 'floor'> = { current: await readCurrent(h, db), floor: await readFloor(h) };
            const revision = targetRevision(src.manifest.kineRevision, src.facts.maxId, fresh);
            await h.writeFile(REVISION_FLOOR_PATH, `${revision}\n`, { mode: 0o600 });
            await h.exec(loadCommand(db), { stdin: await dumpSqlStream(src.archive, src.key), timeoutMs: 3_600_000 });
            const fix = await h.exec(MARIADB_BATCH, { stdin: `USE \`${db.replace(/`/g, '``')}\`;\n${deleteKeysSql(stale.map(nodePasswordKey))}${bumpSql(revision, src.facts.maxId)}` });
            const deleted = parseDeleted(fix.stdout);
            const after = parseCount((await h.exec(MARIADB_BATCH, { stdin: countSql(db) })).stdout);
            const want = src.facts.rows - deleted + (revision > src.facts.maxId ? 1 : 0);
            if (!after || after.rows !== want) throw new Error(`after loading the dump ${db} holds ${after?.rows ?? 'no'} rows, the backup has ${src.facts.rows}: the load did not complete; run restore again`);
            job.loaded = true;
            job.revision = revision;
            job.loadMs = Date.now() - t0;
            job.deletedNodePasswordRows = deleted;
          },
        },
      ];
    },
  };
}

function passwordDesired(password: string | undefined): Desired {
  // 0600 as k3s makes it; its folder is made by writeFile (0755, as k3s makes it).
  return { files: password === undefined ? [] : [{ path: NODE_PASSWORD_PATH, content: `${password}\n`, mode: 0o600, secretsIn: (c) => (c.trim() ? [c.trim()] : []) }] };
}

/**
 * Each node's /etc/rancher/node/password as the backup has it, written
 * after the load and before k3s starts there: the restored datastore holds
 * the hash of exactly that password (FACTS: k3s#802), so a fresh machine
 * comes back as the node it replaces, with its Node object, labels and pods.
 * On the machines that were backed up the file is already the same: no change.
 */
function nodePasswordsPhase(job: RestoreJob): Phase<Deployment, { state: ObservedState }> {
  const passwordOf = (name: string): string | undefined => job.source.secrets.nodePasswords?.[name];
  return {
    id: 'restore-node-passwords',
    title: "Put each node's k3s node password back",
    targets: (ctx) => k3sNodes(ctx.cluster.spec).filter((n) => passwordOf(n) !== undefined),
    async observe(ctx, host) {
      const pw = passwordOf(host.name);
      if (pw !== undefined) ctx.secrets.add(new Secret(pw));
      return { state: await observeDesired(host, passwordDesired(pw)) };
    },
    diff(ctx, hostName, o): Change[] {
      return diffDesired(passwordDesired(passwordOf(hostName)), o.state, ctx.secrets).map((c) => ({ ...c, summary: `${c.summary} (the node password the restored datastore knows ${hostName} by)` }));
    },
  };
}

/**
 * Apply's servers or agents phase, seen as it will be once the restore has
 * stopped k3s: before the load its unit counts as stopped, so the plan shows
 * the start that follows the load; afterwards it is the phase as it is.
 */
function afterStop<O extends { state: ObservedState; version: K3sVersion | null }>(job: RestoreJob, phase: Phase<Deployment, O>, unit: string): Phase<Deployment, O> {
  return {
    ...phase,
    /**
     * A restore puts the cluster back; an upgrade in the same run would be
     * checked as a rollout through a running cluster, which the restore has
     * stopped ("k3s is not running"): refuse it in words that say so.
     */
    preflight(ctx, observed) {
      const problems = phase.preflight?.(ctx, observed) ?? [];
      const target = ctx.cluster.spec.k3s.version;
      // In the cluster file's order (the map is filled as observations finish).
      const order = (n: string) => ctx.cluster.spec.hosts.findIndex((h) => h.name === n);
      const differ = [...observed].filter(([, o]) => o.version && target && o.version.text !== target).sort(([a], [b]) => order(a) - order(b));
      if (job.loaded || !target || !differ.length) return problems;
      const running = [...new Set(differ.map(([, o]) => o.version!.text))];
      return [
        ...problems.filter((p) => !isUnhealthyUpgradeProblem(p)),
        {
          severity: 'error',
          path: 'k3s.version',
          message:
            `a restore puts the cluster back as it was and does not upgrade it in the same run: ${differ.map(([n, o]) => `${n} runs k3s ${o.version!.text}`).join(', ')}, ` +
            `the cluster file names ${target} (the backup was taken with ${job.source.manifest.k3sVersion})`,
          hint: `restore with k3s.version: ${running.join(' / ')} (what the nodes run), then set k3s.version to ${target} and run \`k8s-ha apply\` to upgrade`,
        },
      ];
    },
    /**
     * Never the re-join's deletion of an old Node (k3s-nodes.ts): in a
     * restore the node comes back as itself — its password was put back, or
     * (no password in the backup) its stale node-password secret went with
     * the load — so the restored Node object, its labels and taints stay.
     */
    diff(ctx, host, o, all) {
      return phase.diff(ctx, host, o, all).filter((c) => !(c.action === 'delete' && 'object' in c.target && /^(Node|Secret)\//.test(c.target.object)));
    },
    async observe(ctx, host) {
      const o = await phase.observe(ctx, host);
      if (job.loaded) return o;
      const services = new Map(o.state.services);
      const cur = services.get(unit);
      if (cur) services.set(unit, { ...cur, active: false });
      return { ...o, state: { ...o.state, services } };
    },
  };
}

export function stopPhases(job: RestoreJob): AnyPhase<Deployment>[] {
  return [stopPhase(job, 'agent'), stopPhase(job, 'server')];
}

export function restoreLoadPhase(job: RestoreJob): AnyPhase<Deployment> {
  return loadPhase(job);
}

export function restoreNodePasswordsPhase(job: RestoreJob): AnyPhase<Deployment> {
  return nodePasswordsPhase(job);
}

export { afterStop };
