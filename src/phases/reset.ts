import type { AnyPhase, Change, Phase } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { datastoreEndpointTargets, hostsWithRole, type Cluster, type ClusterHost } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { INSTALLED_PACKAGES_PATH, aptPurge, parsePkgQuery, pkgQuery, parseServiceState, serviceState, systemctl } from '../transport/os.js';
import { sh } from '../transport/quote.js';
import { sqlString } from '../render/mariadb.js';
import { K3S_BINARY_PATH, K3S_CONFIG_PATH } from '../render/k3s.js';
import { KILLALL_PATH, renderKillall, renderUninstall, uninstallPath } from '../render/k3s-scripts.js';
import { KEEPALIVED_CONF_PATH } from '../render/keepalived.js';
import { LBCHECK_SCRIPT_PATH, LBCHECK_STATE_PATH, LBCHECK_UNIT, LBCHECK_UNIT_PATH } from '../render/lbcheck.js';
import { NGINX_DATASTORE_STATE_PATH, NGINX_WRITER_PATH } from '../render/nginx-datastore.js';
import { VIP_HOLD_SCRIPT_PATH } from '../render/haproxy-datastore.js';
import { LB_DOCKER_UNIT_PATH } from '../render/docker.js';
import { MARIADB_CNF_PATH } from '../render/mariadb.js';
import { dropDatastoreSql } from '../backup/sql.js';
import { MARIADB_BATCH } from './infra-mariadb.js';
import { DATASTORE_TLS } from './infra-tls.js';
import { datastoreBackupPhase } from './datastore-backup.js';
import { REVISION_FLOOR_PATH } from './restore.js';

/**
 * The phases of `k8s-ha reset` (STYLE.md 1). k3s goes from the agents
 * first, each Node object deleted while the API still answers, then from the
 * servers, through the same k3s-(agent-)uninstall.sh every node has (so
 * reset and the scripts do the same thing). On request the datastore's
 * database and accounts, and the load balancer and virtual IP.
 */

export interface ResetJob {
  loadBalancer: boolean;
  datastore: boolean;
}

/** /etc/rancher/node/password: kept by k3s's uninstall for a re-join; only a reset that drops the database removes it. */
const NODE_PASSWORD_DIR = '/etc/rancher/node';

interface NodesObserved {
  /** The server whose API answered, and the Node names it has; null when none answered. */
  via: string | null;
  nodes: string[];
}

/** The k3s nodes of `role` reset takes apart: the cluster's, and those marked `remove: true` not yet removed. */
function nodesOf(c: Cluster, role: 'agent' | 'server'): ClusterHost[] {
  return [...hostsWithRole(c, role), ...c.removing.filter((h) => h.roles.includes(role))];
}

/** Which of the paths exist (files or folders). */
async function existing(host: Host, paths: string[]): Promise<Set<string>> {
  const metas = await Promise.all(paths.map((p) => host.stat(p)));
  return new Set(paths.filter((_, i) => metas[i] !== null));
}

const kubectl = (args: string[]) => sh`${K3S_BINARY_PATH} kubectl ${args}`;

/** Delete the Node objects of the hosts with `role` through the first server whose API answers. */
function deleteNodesPhase(role: 'agent'): Phase<Deployment, NodesObserved> {
  return {
    id: `reset-nodes-${role}s`,
    title: "Delete the agents' Node objects",
    // One step, on the first server; the API may answer on another.
    targets: (ctx) => hostsWithRole(ctx.cluster.spec, 'server').slice(0, 1).map((h) => h.name),
    async observe(ctx): Promise<NodesObserved> {
      for (const s of hostsWithRole(ctx.cluster.spec, 'server')) {
        try {
          const h = await ctx.host(s.name);
          const r = await h.exec(kubectl(['get', 'nodes', '-o', 'name']), { allowFailure: true, timeoutMs: 20_000 });
          if (r.code === 0) return { via: s.name, nodes: r.stdout.split('\n').map((l) => l.trim().replace(/^node\//, '')).filter(Boolean) };
        } catch {
          // not reachable: try the next server
        }
      }
      return { via: null, nodes: [] };
    },
    diff(ctx, _host, o): Change[] {
      if (!o.via) return [];
      const mine = nodesOf(ctx.cluster.spec, role).map((h) => h.name);
      // Through the server whose API answered: the change runs there (target.host).
      return o.nodes
        .filter((n) => mine.includes(n))
        .map((n) => ({
          action: 'delete' as const,
          target: { host: o.via!, object: `Node/${n}` },
          before: 'present',
          after: null,
          summary: `delete Node ${n} (through ${o.via}'s API, with its node-password secret)`,
          apply: async (h: Host) => void (await h.exec(kubectl(['delete', 'node', '--wait=true', '--timeout=60s', n]), { timeoutMs: 90_000 })),
        }));
    },
  };
}

export interface K3sOnHost {
  installed: boolean;
  script: boolean;
  nodePassword: boolean;
}

/** What of k3s is on the host (either role's files count: a host may have changed roles). */
export async function observeK3sOnHost(host: Host, role: 'agent' | 'server'): Promise<K3sOnHost> {
  const script = uninstallPath(role);
  const unit = role === 'server' ? '/etc/systemd/system/k3s.service' : '/etc/systemd/system/k3s-agent.service';
  const has = await existing(host, [K3S_BINARY_PATH, unit, K3S_CONFIG_PATH, '/var/lib/rancher/k3s', script, `${NODE_PASSWORD_DIR}/password`]);
  return { installed: [K3S_BINARY_PATH, unit, K3S_CONFIG_PATH, '/var/lib/rancher/k3s'].some((p) => has.has(p)), script: has.has(script), nodePassword: has.has(`${NODE_PASSWORD_DIR}/password`) };
}

/** k3s-(agent-)uninstall.sh on the host, as reset and node removal run it. */
export function uninstallChange(hostName: string, role: 'agent' | 'server', o: K3sOnHost): Change {
  const script = uninstallPath(role);
  return {
    action: 'delete',
    target: { host: hostName, object: role === 'server' ? 'k3s server' : 'k3s agent' },
    before: 'installed',
    after: null,
    summary: `run ${script}${o.script ? '' : ' (written first: an older k8s-ha left none)'}: k3s, its units, data, mounts, interfaces and iptables rules go`,
    apply: async (h) => {
      // The same scripts apply leaves on every node.
      await h.writeFile(KILLALL_PATH, renderKillall(), { mode: 0o755 });
      await h.writeFile(script, renderUninstall(role), { mode: 0o755 });
      await h.exec(sh`${script}`, { timeoutMs: 600_000 });
    },
  };
}

function uninstallPhase(job: ResetJob, role: 'agent' | 'server'): Phase<Deployment, K3sOnHost> {
  return {
    id: `reset-k3s-${role}s`,
    title: role === 'agent' ? 'Uninstall k3s from the agents' : 'Uninstall k3s from the servers',
    targets: (ctx) => nodesOf(ctx.cluster.spec, role).map((h) => h.name),
    observe: (_ctx, host: Host) => observeK3sOnHost(host, role),
    diff(_ctx, hostName, o): Change[] {
      const out: Change[] = [];
      if (o.installed) out.push(uninstallChange(hostName, role, o));
      if (job.datastore && o.nodePassword) {
        out.push({ action: 'delete', target: { host: hostName, file: `${NODE_PASSWORD_DIR}/password` }, summary: `remove ${NODE_PASSWORD_DIR} (the database that knew this node is dropped)`, apply: async (h) => {
            await h.removeFile(`${NODE_PASSWORD_DIR}/password`);
            await h.exec(sh`rm -rf ${NODE_PASSWORD_DIR}; rmdir /etc/rancher 2>/dev/null; true`, { allowFailure: true });
          } });
      }
      return out;
    },
  };
}

interface DbObserved {
  up: boolean;
  database: boolean;
  accounts: string[];
  floor: boolean;
  tls: boolean;
  cnf: boolean;
}

function datastoreResetPhase(): Phase<Deployment, DbObserved> {
  return {
    id: 'reset-datastore',
    title: "Drop the k3s database and its accounts",
    targets: (ctx) => datastoreEndpointTargets(ctx.cluster.spec),
    async observe(ctx, host): Promise<DbObserved> {
      const ds = ctx.cluster.spec.datastore;
      const has = await existing(host, [REVISION_FLOOR_PATH, DATASTORE_TLS.caFile, MARIADB_CNF_PATH]);
      const base = { floor: has.has(REVISION_FLOOR_PATH), tls: has.has(DATASTORE_TLS.caFile), cnf: has.has(MARIADB_CNF_PATH) };
      const r = await host.exec(MARIADB_BATCH, {
        stdin: `SELECT 'db', SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${sqlString(ds.database)};\nSELECT 'user', Host FROM mysql.user WHERE User = ${sqlString(ds.user)};\n`,
        allowFailure: true,
      });
      if (r.code !== 0) return { up: false, database: false, accounts: [], ...base };
      const rows = r.stdout.split('\n').map((l) => l.split('\t'));
      return { up: true, database: rows.some((x) => x[0] === 'db'), accounts: rows.filter((x) => x[0] === 'user').map((x) => x[1]!), ...base };
    },
    diff(ctx, hostName, o): Change[] {
      const ds = ctx.cluster.spec.datastore;
      const out: Change[] = [];
      if (o.database || o.accounts.length) {
        out.push({
          action: 'delete',
          target: { host: hostName, object: `mariadb/${ds.database}` },
          before: o.database ? 'present' : 'accounts only',
          after: null,
          summary: `drop database ${ds.database}${o.accounts.length ? ` and accounts ${o.accounts.map((a) => `${ds.user}@${a}`).join(', ')}` : ''}`,
          detail: dropDatastoreSql(ds.database, ds.user, o.accounts),
          apply: async (h) => void (await h.exec(MARIADB_BATCH, { stdin: dropDatastoreSql(ds.database, ds.user, o.accounts) })),
        });
      }
      // k8s-ha's drop-in and certificates: MariaDB itself (a package that may have been there before) stays.
      const files = [...(o.floor ? [REVISION_FLOOR_PATH] : []), ...(o.cnf ? [MARIADB_CNF_PATH] : [])];
      if (files.length || o.tls) {
        out.push({
          action: 'delete',
          target: { host: hostName, object: 'mariadb/k8s-ha settings' },
          summary: `remove ${[...files, ...(o.tls ? ['/etc/mysql/k8s-ha-tls'] : [])].join(', ')}${o.cnf ? ' and restart mariadb with its own settings' : ''}`,
          apply: async (h) => {
            for (const f of [...files, ...Object.values(DATASTORE_TLS)]) await h.removeFile(f);
            await h.exec(sh`rmdir /etc/mysql/k8s-ha-tls`, { allowFailure: true });
            if (o.cnf && o.up) await h.exec(systemctl('restart', 'mariadb'), { timeoutMs: 300_000 });
            await h.exec(removeEmptyDirs, { allowFailure: true });
          },
        });
      }
      return out;
    },
  };
}

/** The scheduled backups' timer and files, removed: the backup phase as if datastore.backup were gone. */
const backupTimerRemoval: AnyPhase<Deployment> = {
  ...datastoreBackupPhase,
  id: 'reset-datastore-backup',
  observe: (ctx, host) => datastoreBackupPhase.observe(withoutBackup(ctx), host),
  diff: (ctx, host, o, all) => datastoreBackupPhase.diff(withoutBackup(ctx), host, o as never, all as never),
  preflight: undefined,
} as AnyPhase<Deployment>;

function withoutBackup<T extends { cluster: Deployment }>(ctx: T): T {
  const spec = ctx.cluster.spec;
  const { backup: _drop, ...datastore } = spec.datastore;
  return { ...ctx, cluster: { ...ctx.cluster, spec: { ...spec, datastore } } };
}

/** What k8s-ha put on the load-balancer hosts (the packages go in packagesResetPhase). */
const LB_UNITS = ['keepalived', LBCHECK_UNIT, 'k8s-ha-lb', 'nginx', 'haproxy'];
const LB_FILES = [KEEPALIVED_CONF_PATH, VIP_HOLD_SCRIPT_PATH, LBCHECK_SCRIPT_PATH, LBCHECK_UNIT_PATH, LBCHECK_STATE_PATH, NGINX_DATASTORE_STATE_PATH, NGINX_WRITER_PATH, LB_DOCKER_UNIT_PATH, '/etc/k8s-ha/lb'];

function loadBalancerResetPhase(): Phase<Deployment, { active: string[]; files: string[] }> {
  return {
    id: 'reset-loadbalancer',
    title: 'Stop the load balancer and the virtual IP',
    targets: (ctx) => hostsWithRole(ctx.cluster.spec, 'loadbalancer').map((h) => h.name),
    async observe(_ctx, host) {
      const st = parseServiceState((await host.exec(serviceState(LB_UNITS), { allowFailure: true })).stdout, LB_UNITS);
      const has = await existing(host, LB_FILES);
      return { active: LB_UNITS.filter((u) => st.get(u)?.active || st.get(u)?.enabled), files: LB_FILES.filter((f) => has.has(f)) };
    },
    diff(_ctx, hostName, o): Change[] {
      const out: Change[] = o.active.map((u) => ({
        action: 'update' as const,
        target: { host: hostName, unit: u },
        after: 'inactive, disabled',
        summary: `stop and disable ${u}`,
        apply: async (h: Host) => void (await h.exec(sh`systemctl disable --now ${u}`)),
      }));
      for (const f of o.files) out.push({ action: 'delete', target: { host: hostName, file: f }, after: null, summary: `remove ${f}`, apply: async (h) => void (await h.exec(sh`rm -rf ${f}`)) });
      if (o.files.length) {
        out.push({ action: 'reload', target: { host: hostName, unit: 'systemd' }, summary: 'systemctl daemon-reload', apply: async (h) => {
            await h.exec(systemctl('daemon-reload'));
            await h.exec(removeEmptyDirs, { allowFailure: true });
          } });
      }
      return out;
    },
  };
}

/**
 * Folders only k8s-ha makes, removed when a reset step has emptied them (no
 * change of their own: whether they end up empty is known only once the
 * files in them are gone). /var/lib/k8s-ha goes with the cluster lock
 * (engine/lock.ts) when nothing else is left in it.
 */
const K8S_HA_DIRS = ['/etc/k8s-ha', '/usr/local/lib/k8s-ha', '/var/lib/k8s-ha/pending'];
const removeEmptyDirs = sh`for d in ${K8S_HA_DIRS}; do rmdir "$d" 2>/dev/null || true; done`;

interface PackagesObserved {
  /** What k8s-ha's record on the host says it installed (absent before), still installed. */
  installed: string[];

  /** MariaDB databases other than the system ones and the cluster's (they keep MariaDB's data folder). */
  otherDatabases: string[];
}

/** The roles of a host this reset takes everything of k8s-ha's off; the host's packages go only when it covers all of them. */
function uncovered(job: ResetJob, roles: readonly string[]): string[] {
  return roles.filter((r) => (r === 'loadbalancer' && !job.loadBalancer) || (r === 'datastore' && !job.datastore));
}

const SYSTEM_DATABASES = new Set(['information_schema', 'mysql', 'performance_schema', 'sys']);

/**
 * The packages k8s-ha installed (INSTALLED_PACKAGES_PATH: every package its
 * installs added, dependencies included, none that was there before),
 * purged once the reset removes everything k8s-ha runs on that host (a load
 * balancer and datastore host needs both --loadbalancer and --datastore).
 * MariaDB's data folder goes with mariadb-server when k8s-ha installed it
 * and no database but the cluster's was ever made in it.
 */
function packagesResetPhase(job: ResetJob): Phase<Deployment, PackagesObserved> {
  return {
    id: 'reset-packages',
    title: 'Remove the packages k8s-ha installed',
    targets: (ctx) => ctx.cluster.spec.hosts.filter((h) => !uncovered(job, h.roles).length).map((h) => h.name),
    async observe(ctx, host) {
      const recorded = ((await host.readFile(INSTALLED_PACKAGES_PATH))?.toString('utf8') ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
      const now = recorded.length ? parsePkgQuery((await host.exec(pkgQuery(recorded), { allowFailure: true })).stdout) : new Map<string, string>();
      let otherDatabases: string[] = [];
      if (now.has('mariadb-server')) {
        const r = await host.exec(MARIADB_BATCH, { stdin: 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA;\n', allowFailure: true });
        otherDatabases = r.code === 0 ? r.stdout.split('\n').map((l) => l.trim()).filter((n) => n && !SYSTEM_DATABASES.has(n) && n !== ctx.cluster.spec.datastore.database) : ['(MariaDB did not answer)'];
      }
      return { installed: recorded.filter((p) => now.has(p)), otherDatabases };
    },
    diff(_ctx, hostName, o): Change[] {
      const out: Change[] = [];
      const dropData = o.installed.includes('mariadb-server') && !o.otherDatabases.length;
      if (o.installed.length) {
        out.push({
          action: 'delete',
          target: { host: hostName, packages: o.installed },
          before: 'installed',
          after: null,
          summary: `purge ${o.installed.join(' ')} (k8s-ha installed them: they were not on ${hostName} before)${dropData ? ", and MariaDB's data folder /var/lib/mysql" : o.installed.includes('mariadb-server') ? ` (MariaDB's data folder stays: it holds ${o.otherDatabases.join(', ')})` : ''}`,
          apply: async (h) => {
            await h.exec(aptPurge(o.installed), { timeoutMs: 900_000 });
            if (dropData) await h.exec(sh`rm -rf /var/lib/mysql`);
          },
        });
      }
      return out;
    },
  };
}

/** `reset`, top to bottom. */
export function resetPipeline(job: ResetJob): AnyPhase<Deployment>[] {
  return [
    deleteNodesPhase('agent'), // while the API still answers
    uninstallPhase(job, 'agent'),
    // Servers' Node objects stay: a running server registers its own again at
    // once, and they go with the database (--datastore) or are taken over when
    // the same host joins again (k3s keeps /etc/rancher/node/password for that).
    uninstallPhase(job, 'server'),
    ...(job.datastore ? [backupTimerRemoval, datastoreResetPhase()] : []),
    ...(job.loadBalancer ? [loadBalancerResetPhase()] : []),
    packagesResetPhase(job), // last: the daemons are stopped and their files gone
  ];
}

