import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import { restartsUnit } from '../engine/change.js';
import type { Deployment } from '../cluster/deployment.js';
import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import { hostsWithRole, type Cluster, type ClusterHost } from '../spec/cluster.js';
import { MARIADB_CNF_PATH, renderDatastoreSql, renderMariadbCnf } from '../render/mariadb.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { Secret } from '../util/secret.js';
import { afterPackages } from './infra-common.js';
import {
  CERTIFIED_SERIES,
  MARIADB_BATCH,
  hasSnapshotIsolation,
  observeSql,
  parseCandidate,
  parseMariadbVersion,
  parseObserveOutput,
  type MariadbObserved,
} from './infra-mariadb.js';
import { DATASTORE_TLS, issueTlsCommand, parseTlsStatus, tlsStatus, type TlsStatus } from './infra-tls.js';

const PACKAGE = 'mariadb-server';
const UNIT = 'mariadb';

/** kine keeps up to 20 idle connections per server (FACTS); 10 more for admin sessions. */
export function neededConnections(c: Cluster): number {
  return hostsWithRole(c, 'server').length * 20 + 10;
}

export interface DatastoreObserved {
  state: ObservedState;
  /** Installed version (dpkg), else apt's candidate; null when neither is known. */
  packageVersion: string | null;
  /** The running server, or null when MariaDB is not installed or not answering. */
  server: MariadbObserved | null;
  /** Only read when TLS is enabled. */
  tls: TlsStatus | null;
}

function dsHost(c: Cluster, name: string): ClusterHost | undefined {
  return c.hosts.find((h) => h.name === name);
}

function desired(c: Cluster, host: ClusterHost, packageVersion: string | null): Desired {
  const ds = c.datastore;
  const cnf = renderMariadbCnf({
    bindAddress: host.address,
    port: ds.port,
    maxConnections: ds.maxConnections,
    hasSnapshotIsolationSetting: hasSnapshotIsolation(parseMariadbVersion(packageVersion ?? '')),
    ...(ds.tls.enabled ? { tls: { caFile: DATASTORE_TLS.caFile, certFile: DATASTORE_TLS.certFile, keyFile: DATASTORE_TLS.keyFile, require: true } } : {}),
  });
  return {
    packages: ds.tls.enabled ? [PACKAGE, 'openssl'] : [PACKAGE],
    files: [
      {
        path: MARIADB_CNF_PATH,
        content: cnf,
        // The server's own option parser on the new file alone: an unknown
        // or malformed variable fails here instead of at the restart.
        check: (tmp) => sh`mariadbd --defaults-file=${tmp} --user=mysql --help --verbose >/dev/null`,
      },
    ],
    // bind-address, max_connections and the TLS files are read only at
    // start: MariaDB cannot reload them.
    services: [{ unit: UNIT, restartOn: [MARIADB_CNF_PATH] }],
  };
}

function serverAddresses(c: Cluster): string[] {
  return [...new Set(hostsWithRole(c, 'server').map((h) => h.address))].sort();
}

/** What the accounts need, in words without the password; empty when nothing. */
export function accountWork(c: Cluster, s: MariadbObserved | null): string[] {
  const ds = c.datastore;
  const want = serverAddresses(c);
  const ssl = ds.tls.enabled ? 'ANY' : 'NONE';
  if (!s) return [`create database ${ds.database} and accounts ${want.map((a) => `${ds.user}@${a}`).join(', ')}`];
  const out: string[] = [];
  if (!s.databaseExists) out.push(`create database ${ds.database}`);
  for (const a of want) {
    const acct = s.accounts.find((x) => x.host === a);
    if (!acct) out.push(`create ${ds.user}@${a}`);
    else {
      if (!acct.passwordMatches) out.push(`set the password of ${ds.user}@${a}`);
      if (acct.ssl !== ssl) out.push(`${ssl === 'ANY' ? 'require' : 'stop requiring'} TLS for ${ds.user}@${a}`);
    }
    if (acct && !s.granted.has(a)) out.push(`grant ALL on ${ds.database}.* to ${ds.user}@${a}`);
  }
  for (const x of s.accounts) if (!want.includes(x.host)) out.push(`drop ${ds.user}@${x.host} (not a server)`);
  return out;
}

function accountsChange(ctx: RunContext<Deployment>, hostName: string, s: MariadbObserved | null, work: string[]): Change {
  const c = ctx.cluster.spec;
  const input = {
    database: c.datastore.database,
    user: c.datastore.user,
    password: ctx.cluster.secrets.datastorePassword,
    serverAddresses: serverAddresses(c),
    requireTls: c.datastore.tls.enabled,
    existingUserHosts: s?.accounts.map((a) => a.host) ?? [],
  };
  const have = s?.accounts.map((a) => `${c.datastore.user}@${a.host}`).sort() ?? [];
  return {
    // Nothing there yet: created; otherwise the accounts are brought in line.
    action: s?.databaseExists || have.length ? 'update' : 'create',
    target: { host: hostName, object: `mariadb/${c.datastore.database} accounts` },
    summary: work.join('; '),
    before: s ? `${s.databaseExists ? `database ${c.datastore.database}` : 'no database'}; accounts: ${have.join(', ') || 'none'}` : null,
    after: `database ${c.datastore.database}; accounts: ${input.serverAddresses.map((a) => `${c.datastore.user}@${a}`).join(', ')}`,
    detail: renderDatastoreSql(input, { maskSecrets: true }),
    apply: async (h) => {
      // Rendered only here, at apply, and only ever sent as stdin: the
      // password is on no command line, in no plan and in no event.
      const sql = new Secret(renderDatastoreSql(input));
      await h.exec(MARIADB_BATCH, { stdin: sql, secrets: [input.password] });
    },
  };
}

function tlsChanges(ctx: RunContext<Deployment>, host: ClusterHost, o: DatastoreObserved, restarting: boolean): Change[] {
  if (!ctx.cluster.spec.datastore.tls.enabled || o.tls?.cert === 'ok') return [];
  const what = o.tls?.ca ? `issue a server certificate for ${host.address} (${o.tls.cert})` : `create the datastore CA and a server certificate for ${host.address}`;
  const out: Change[] = [
    {
      action: o.tls?.ca ? 'update' : 'create',
      target: { host: host.name, object: `tls/datastore server certificate ${host.address}` },
      summary: what,
      before: o.tls?.cert ?? null,
      after: 'ok',
      apply: async (h) => void (await h.exec(issueTlsCommand(host.address, ctx.cluster.spec.name))),
    },
  ];
  // A running server with an unchanged config reloads its certificate in
  // place (MariaDB >= 10.4), without dropping the servers' connections.
  if (!restarting) {
    out.push({ action: 'reload', target: { host: host.name, unit: UNIT }, summary: 'FLUSH SSL (load the new certificate)', apply: async (h) => void (await h.exec(MARIADB_BATCH, { stdin: 'FLUSH SSL;\n' })) });
  }
  return out;
}

/** True when two drop-ins differ in their max_connections line only. */
export function onlyMaxConnectionsDiffers(cur: string | null | undefined, want: string): boolean {
  if (cur == null || cur === want) return false;
  const rest = (t: string) => t.split('\n').filter((l) => !/^\s*max_connections\s*=/.test(l)).join('\n');
  return rest(cur) === rest(want);
}

/**
 * MariaDB for kine on the datastore host: the package, a drop-in that binds
 * the host's address and states what kine needs, optional TLS, and the k3s
 * database with one account per server address.
 */
export const datastorePhase: Phase<Deployment, DatastoreObserved> = {
  id: 'datastore',
  title: 'MariaDB datastore',
  // With Galera the data nodes are galera.ts's.
  targets: (ctx) => (ctx.cluster.spec.datastore.galera ? [] : hostsWithRole(ctx.cluster.spec, 'datastore').map((h) => h.name)),

  async observe(ctx, host: Host): Promise<DatastoreObserved> {
    const c = ctx.cluster.spec;
    const self = dsHost(c, host.name);
    if (!self) throw new Error(`${host.name} is not in the cluster file`);
    // The package, file and unit names do not depend on the version; the cnf's content does.
    const state = await observeDesired(host, desired(c, self, null));
    const installedVersion = state.packages.get(PACKAGE) ?? null;
    let packageVersion = installedVersion;
    if (!installedVersion) {
      // Not installed: the version apt would install decides the cnf.
      const p = await host.exec(sh`apt-cache policy ${PACKAGE}`, { allowFailure: true, sudo: false });
      packageVersion = p.code === 0 ? parseCandidate(p.stdout) : null;
    }
    let server: MariadbObserved | null = null;
    if (installedVersion && state.services.get(UNIT)?.active) {
      const pw = ctx.cluster.secrets.datastorePassword;
      const r = await host.exec(MARIADB_BATCH, { stdin: new Secret(observeSql(c.datastore.database, c.datastore.user, pw.reveal())), allowFailure: true, secrets: [pw] });
      if (r.code === 0) server = parseObserveOutput(r.stdout);
    }
    let tls: TlsStatus | null = null;
    if (c.datastore.tls.enabled) tls = parseTlsStatus((await host.exec(tlsStatus(self.address), { allowFailure: true })).stdout);
    return { state, packageVersion, server, tls };
  },

  diff(ctx, hostName, o): Change[] {
    const c = ctx.cluster.spec;
    const self = dsHost(c, hostName);
    if (!self || c.datastore.galera) return [];
    const want = desired(c, self, o.packageVersion);
    // max_connections is dynamic: a server added or removed changes the
    // default (cluster.ts), and restarting MariaDB for it would cut every
    // server's datastore connection at once. Written to the file for the next
    // start, set on the running server.
    const live = o.server !== null && onlyMaxConnectionsDiffers(o.state.files.get(MARIADB_CNF_PATH)?.content, want.files![0]!.content);
    const base = diffDesired(live ? { ...want, services: want.services!.map((sv) => (sv.unit === UNIT ? { ...sv, restartOn: [] } : sv)) } : want, o.state, ctx.secrets);
    const restarting = base.some((ch) => restartsUnit(ch, UNIT));
    let changes = afterPackages(base, tlsChanges(ctx, self, o, restarting));
    if (live) {
      // Before the file: cut off in between, the re-run finds the file still
      // differing and sets it again; after both, nothing is owed.
      const running = o.server?.variables.get('MAX_CONNECTIONS');
      changes = [
        {
          action: 'update',
          target: { host: hostName, object: 'mariadb/max_connections' },
          ...(running !== undefined ? { before: running } : {}),
          after: String(c.datastore.maxConnections),
          summary: `SET GLOBAL max_connections = ${c.datastore.maxConnections} on the running MariaDB (no restart: the servers keep their connections)`,
          apply: async (h) => void (await h.exec(MARIADB_BATCH, { stdin: `SET GLOBAL max_connections = ${c.datastore.maxConnections};\n` })),
        },
        ...changes,
      ];
    }
    // New certificate but no restart planned and MariaDB not running yet: the
    // start in `base` picks it up. Running and restarting: same.
    const work = accountWork(c, o.server);
    if (work.length) changes = [...changes, accountsChange(ctx, hostName, o.server, work)];
    return changes;
  },

  preflight(ctx, observed): Problem[] {
    const c = ctx.cluster.spec;
    const problems: Problem[] = [];
    const need = neededConnections(c);
    for (const [name, o] of observed) {
      const s = o.server;
      const at = `datastore (${name})`;
      const cnfPending = o.state.files.get(MARIADB_CNF_PATH)?.content !== desired(c, dsHost(c, name)!, o.packageVersion).files![0]!.content;
      // What max_connections will be once this apply has restarted MariaDB.
      if (c.datastore.maxConnections < need) {
        problems.push({
          severity: 'error',
          path: 'datastore.maxConnections',
          message: `${c.datastore.maxConnections} connections is too few for ${hostsWithRole(c, 'server').length} servers: kine keeps up to 20 idle connections each`,
          hint: `raise it to at least ${need}, or remove it to use the computed default`,
        });
      }
      if (!s) continue; // not installed (or not running): nothing to read yet
      const v = (k: string) => s.variables.get(k);
      for (const k of ['AUTO_INCREMENT_INCREMENT', 'AUTO_INCREMENT_OFFSET'] as const) {
        const val = v(k);
        // Not overridden by our drop-in on purpose: a value other than 1 means
        // replication or Galera was set up on this server, which kine cannot use.
        if (val !== undefined && val !== '1') {
          problems.push({
            severity: 'error',
            path: at,
            message: `${k.toLowerCase()} is ${val} on ${name}'s running MariaDB; kine uses the AUTO_INCREMENT id as the etcd revision and needs it to grow by exactly 1`,
            hint: `remove ${k.toLowerCase()} from the MariaDB configuration on ${name} (grep -rn auto_increment /etc/mysql/) and restart mariadb; a server that replicates or runs Galera multi-writer cannot be k3s's datastore`,
          });
        }
      }
      if (v('WSREP_ON') === 'ON') {
        problems.push({
          severity: 'error',
          path: at,
          message: `${name}'s MariaDB is a Galera node (wsrep_on=ON); k3s does not support multi-writer Galera${v('WSREP_AUTO_INCREMENT_CONTROL') === 'ON' ? ', and wsrep_auto_increment_control=ON changes auto_increment_increment' : ''}`,
          hint: 'use a standalone MariaDB for the datastore, or let k8s-ha run the Galera cluster (datastore.galera: single writer behind the load balancer)',
        });
      }
      if (v('INNODB_SNAPSHOT_ISOLATION') === 'ON') {
        const ourFileFixes = cnfPending && hasSnapshotIsolation(parseMariadbVersion(o.packageVersion ?? ''));
        // Our drop-in turns it OFF and this apply restarts MariaDB: only a
        // setting that overrides ours (a later file, the command line) is a problem.
        if (!ourFileFixes) {
          problems.push({
            severity: 'error',
            path: at,
            message: `innodb_snapshot_isolation is ON on ${name}, which breaks kine compaction ("Record has changed since last read")`,
            hint: `find what sets it (grep -rn snapshot_isolation /etc/mysql/ on ${name}) and remove it; k8s-ha's ${MARIADB_CNF_PATH} sets it OFF`,
          });
        }
      }
      const mc = Number(v('MAX_CONNECTIONS'));
      if (!cnfPending && Number.isFinite(mc) && mc < need) {
        problems.push({
          severity: 'error',
          path: at,
          message: `max_connections is ${mc} on ${name} although ${MARIADB_CNF_PATH} sets ${c.datastore.maxConnections}: something overrides it, and ${hostsWithRole(c, 'server').length} servers need ${need}`,
          hint: `find the later setting (grep -rn max_connections /etc/mysql/ on ${name}) and remove it`,
        });
      }
      const ver = parseMariadbVersion(s.version);
      const series = ver ? `${ver[0]}.${ver[1]}` : s.version;
      if (!ver || !(CERTIFIED_SERIES as readonly string[]).includes(series)) {
        problems.push({
          severity: 'warning',
          path: at,
          message: `MariaDB ${s.version || '(unknown version)'} on ${name} is not a release k3s certifies (${CERTIFIED_SERIES.join(', ')})`,
          hint: 'use MariaDB 10.11 or 11.4 (Debian 12 ships 10.11)',
        });
      }
    }
    return problems;
  },
};
