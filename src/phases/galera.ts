import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { clearPending, diffDesired, markPending, observeDesired, type Desired, type DesiredFile, type ObservedState } from '../engine/desired.js';
import { galeraNodes, hostByName, hostsWithRole, type Cluster, type ClusterHost } from '../spec/cluster.js';
import { GALERA_TLS_FILES, MARIADB_CNF_PATH, renderDatastoreSql, renderMariadbCnf } from '../render/mariadb.js';
import { privateKeyLines } from '../util/x509.js';
import { tlsChangeProblems } from './galera-tls.js';
import { waitForPreferredWriter } from './galera-writer-wait.js';
import {
  GALERA_CHECK_SCRIPT_PATH,
  GALERA_CHECK_SERVICE_PATH,
  GALERA_CHECK_SOCKET,
  GALERA_CHECK_SOCKET_PATH,
  GARB_DEFAULTS_PATH,
  GARB_UNIT,
  renderGaleraCheckScript,
  renderGaleraCheckService,
  renderGaleraCheckSocket,
  renderGarbDefaults,
} from '../render/galera.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { journalTail, NotReadyError } from './k3s-health.js';
import { Secret } from '../util/secret.js';
import { accountWork, neededConnections } from './datastore.js';
import { MARIADB_SOCKET_OFF } from './loadbalancer.js';
import { hasSnapshotIsolation, MARIADB_BATCH, observeSql, parseCandidate, parseMariadbVersion, parseObserveOutput, type MariadbObserved } from './infra-mariadb.js';
import {
  GRASTATE_PATH,
  decideGalera,
  isGaleraRunning,
  isPrimary,
  isSyncedPrimary,
  readGaleraNode,
  type GaleraDecision,
  type GaleraNodeView,
} from './galera-state.js';

/**
 * The Galera datastore: two or more MariaDB data nodes replicating
 * synchronously, an optional garbd arbitrator, and a health check on each
 * node that the load balancer reads to send every connection to one writer
 * (loadbalancer.ts, render/haproxy.ts). Bootstrapping is decided once from
 * every node's state (galera-state.ts): a new cluster from one node when no
 * node holds data; after a full outage from the most advanced node alone;
 * otherwise stopped nodes rejoin the running primary component.
 */

const UNIT = 'mariadb';
const PACKAGES = ['mariadb-server', 'galera-4', 'mariadb-backup'];
/** Bounded waits: a joiner's full copy (SST) of a small kine database takes seconds; allow for slow disks. */
const PRIMARY_WAIT_MS = 600_000;
const SYNCED_WAIT_MS = 900_000;

export type GaleraObserved =
  | { role: 'arbitrator'; state: ObservedState; views: GaleraNodeView[] }
  | {
      role: 'node';
      state: ObservedState;
      /** Installed version, else apt's candidate. */
      packageVersion: string | null;
      /** This node's k3s database and accounts, when it runs. */
      server: MariadbObserved | null;
      /** Every data node, this one included, read at the same time. */
      views: GaleraNodeView[];
    };

function galeraOf(c: Cluster) {
  const g = c.datastore.galera;
  if (!g) throw new Error('Galera is not enabled in the cluster file');
  return g;
}

/** The data nodes, the preferred writer first: the order ties are broken in. */
export function preferenceOrder(c: Cluster): string[] {
  const g = galeraOf(c);
  const names = galeraNodes(c).map((h) => h.name);
  return [...names.filter((n) => n === g.writer), ...names.filter((n) => n !== g.writer)];
}

function members(c: Cluster): string[] {
  const g = galeraOf(c);
  const arb = g.arbitrator !== undefined ? hostByName(c, g.arbitrator) : undefined;
  return [...galeraNodes(c).map((h) => h.address), ...(arb ? [arb.address] : [])];
}

/** The load balancers' addresses (and the virtual IP): MariaDB reads a PROXY header from these. */
function proxyNetworks(c: Cluster): string[] {
  const vip = c.loadBalancer.virtualIP?.address;
  return [...hostsWithRole(c, 'loadbalancer').map((h) => h.address), ...(vip ? [vip] : [])];
}

/**
 * A member's TLS files (datastore.galera.tls): the CA, its certificate and
 * key, all 0600 and owned by the user its daemon runs as (mysql; garbd runs
 * as nobody in Debian's garb.service).
 */
function tlsFiles(d: Deployment, host: string, owner: string, group: string): DesiredFile[] {
  const tls = d.secrets.galeraTls;
  const mine = tls?.members.get(host);
  if (!tls || !mine) {
    if (d.spec.datastore.galera?.tls) throw new Error(`no Galera TLS certificate was issued for ${host}`);
    return [];
  }
  const f = GALERA_TLS_FILES;
  const own = { mode: 0o600, owner, group };
  return [
    { path: f.caFile, content: tls.caCert, ...own },
    { path: f.certFile, content: mine.cert, ...own },
    { path: f.keyFile, content: mine.key.reveal(), secretsIn: privateKeyLines, ...own },
  ];
}

const TLS_PATHS: readonly string[] = [GALERA_TLS_FILES.caFile, GALERA_TLS_FILES.certFile, GALERA_TLS_FILES.keyFile];
/** What MariaDB reads only at start: its drop-in and, with TLS, the certificate files. */
const READ_AT_START: readonly string[] = [MARIADB_CNF_PATH, ...TLS_PATHS];

function nodeDesired(d: Deployment, self: ClusterHost, packageVersion: string | null): Desired {
  const c = d.spec;
  const g = galeraOf(c);
  const cnf = renderMariadbCnf({
    bindAddress: self.address,
    port: g.nodePort,
    maxConnections: c.datastore.maxConnections,
    hasSnapshotIsolationSetting: hasSnapshotIsolation(parseMariadbVersion(packageVersion ?? '')),
    proxyProtocolNetworks: proxyNetworks(c),
    galera: { clusterName: c.name, nodeName: self.name, nodeAddress: self.address, members: members(c), suspectTimeoutMs: g.suspectTimeoutMs, ...(g.tls ? { tls: GALERA_TLS_FILES } : {}) },
  });
  return {
    // openssl: the state transfer script checks the certificates with it.
    packages: g.tls ? [...PACKAGES, 'socat', 'openssl'] : PACKAGES,
    files: [
      // The certificates first: the drop-in's check (and a restart) reads them.
      ...tlsFiles(d, self.name, 'mysql', 'mysql'),
      { path: MARIADB_CNF_PATH, content: cnf, check: (tmp) => sh`mariadbd --defaults-file=${tmp} --user=mysql --help --verbose >/dev/null` },
      { path: GALERA_CHECK_SCRIPT_PATH, content: renderGaleraCheckScript({ kineUser: c.datastore.user }), mode: 0o755 },
      { path: GALERA_CHECK_SERVICE_PATH, content: renderGaleraCheckService() },
      { path: GALERA_CHECK_SOCKET_PATH, content: renderGaleraCheckSocket(self.address, g.checkPort) },
    ],
    // TLS turned off: no key left behind.
    ...(g.tls ? {} : { absent: [...TLS_PATHS] }),
    services: [MARIADB_SOCKET_OFF, { unit: GALERA_CHECK_SOCKET, restartOn: [GALERA_CHECK_SOCKET_PATH] }],
  };
}

function arbitratorDesired(d: Deployment, host: string): Desired {
  const c = d.spec;
  const g = galeraOf(c);
  return {
    packages: g.tls ? ['galera-arbitrator-4', 'openssl'] : ['galera-arbitrator-4'],
    files: [
      ...tlsFiles(d, host, 'nobody', 'nogroup'),
      { path: GARB_DEFAULTS_PATH, content: renderGarbDefaults({ clusterName: c.name, nodes: galeraNodes(c).map((h) => h.address), suspectTimeoutMs: g.suspectTimeoutMs, ...(g.tls ? { tls: GALERA_TLS_FILES } : {}) }) },
    ],
    ...(g.tls ? {} : { absent: [...TLS_PATHS] }),
  };
}

/** Read every data node through the run's connections (a node that cannot be read says so). */
export function readAllNodes(ctx: RunContext<Deployment>): Promise<GaleraNodeView[]> {
  return Promise.all(galeraNodes(ctx.cluster.spec).map((h) => readGaleraNode(h.name, () => ctx.host(h.name))));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait (bounded) until `ok` holds for the nodes as read now. */
async function waitNodes(ctx: RunContext<Deployment>, what: string, ok: (v: GaleraNodeView[]) => boolean, timeoutMs: number): Promise<GaleraNodeView[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await readAllNodes(ctx);
    if (ok(v)) return v;
    if (Date.now() > until) {
      const st = v.map((n) => `${n.name}: ${n.reachable ? (n.status?.get('wsrep_local_state_comment') ?? (n.running ? 'running' : 'stopped')) + '/' + (n.status?.get('wsrep_cluster_status') ?? '-') : 'unreachable'}`).join(', ');
      throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what} (${st}); look at journalctl -u mariadb on each data node`);
    }
    await sleep(1000);
  }
}

/** A Synced node's view counts a member beyond the Synced data nodes: the arbitrator has joined. */
export function arbitratorJoined(v: readonly GaleraNodeView[]): boolean {
  const synced = v.filter(isSyncedPrimary);
  return synced.some((n) => Number(n.status?.get('wsrep_cluster_size') ?? 0) >= synced.length + 1);
}

const waitPrimary = (ctx: RunContext<Deployment>) => waitNodes(ctx, 'a Synced node in a primary component', (v) => v.some(isSyncedPrimary), PRIMARY_WAIT_MS);
const waitSynced = (ctx: RunContext<Deployment>, name: string) =>
  waitNodes(ctx, `${name} to be Synced in the primary component`, (v) => v.some((n) => n.name === name && isSyncedPrimary(n)), SYNCED_WAIT_MS);

/**
 * `systemctl <verb> mariadb` (or galera_new_cluster): when it fails, the error
 * carries the unit's last journal lines, so the failure explains itself (a
 * joiner's state transfer failing, a signal) without a second look.
 */
export async function startMariadb(h: Host, cmd: ReturnType<typeof sh>, what: string): Promise<void> {
  const r = await h.exec(cmd, { timeoutMs: SYNCED_WAIT_MS, allowFailure: true });
  if (r.code === 0) return;
  const said = (r.stderr.trim() || r.stdout.trim()).split('\n')[0] ?? '';
  throw new NotReadyError(h.name, `${what} exited with ${r.code}`, said, await journalTail(h, UNIT, 40), `look at \`journalctl -u ${UNIT}\` on ${h.name}, then run apply again: it reads every node's state anew and rejoins or recovers from there`);
}

/** One restart at a time across the run's data nodes (never two nodes down at once). */
const restartLocks = new WeakMap<object, Promise<void>>();
async function oneAtATime<T>(ctx: object, fn: () => Promise<T>): Promise<T> {
  const prev = restartLocks.get(ctx) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  restartLocks.set(ctx, prev.then(() => mine));
  await prev;
  try {
    return await fn();
  } finally {
    release();
  }
}

/** Re-read every node right before a bootstrap: it must still be the same decision. */
async function confirmBootstrap(ctx: RunContext<Deployment>, want: GaleraDecision & { bootstrap: string }): Promise<void> {
  const now = decideGalera(await readAllNodes(ctx), preferenceOrder(ctx.cluster.spec));
  if (now.kind !== want.kind || (now.kind !== 'running' && now.kind !== 'blocked' && now.bootstrap !== want.bootstrap)) {
    throw new Error(`refusing to bootstrap ${want.bootstrap}: the data nodes changed since the plan (${now.kind === 'running' ? `${now.primary.join(', ')} now form a primary component` : now.kind === 'blocked' ? now.reason : `now ${now.bootstrap} would be chosen`}); run apply again`);
  }
}

function bootstrapChange(ctx: RunContext<Deployment>, host: string, d: GaleraDecision & { bootstrap: string }): Change {
  const summary =
    d.kind === 'new'
      ? `bootstrap a new Galera cluster from ${d.bootstrap} (no data node holds data)`
      : d.kind === 'recover'
        ? `recover after a full outage: bootstrap from ${d.bootstrap}, the most advanced node (seqno ${d.seqno}; ${d.positions.map((p) => `${p.name} ${p.seqno}`).join(', ')})`
        : `bootstrap from ${d.bootstrap}`;
  return {
    action: 'restart',
    target: { host, unit: UNIT },
    after: 'active, bootstrapped',
    summary,
    apply: async (h) => {
      await confirmBootstrap(ctx, d);
      // A standalone server the package started holds the port; Galera's bootstrap must start it anew.
      await h.exec(sh`systemctl stop ${UNIT}`);
      // Galera refuses to bootstrap from a node that was not the last to leave
      // unless told; we chose it by its position, so tell it.
      if (d.kind === 'recover') await h.exec(sh`sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' ${GRASTATE_PATH}`);
      await startMariadb(h, sh`galera_new_cluster`, 'galera_new_cluster (the bootstrap)');
      await clearPending(h, UNIT);
      await waitSynced(ctx, h.name);
    },
  };
}

function joinChange(ctx: RunContext<Deployment>, host: string, summary: string): Change {
  return {
    action: 'restart',
    target: { host, unit: UNIT },
    after: 'active, joined',
    summary,
    apply: async (h) => {
      await waitPrimary(ctx);
      await oneAtATime(ctx, async () => {
        await startMariadb(h, sh`systemctl restart ${UNIT}`, `systemctl restart ${UNIT}`);
        await clearPending(h, UNIT);
        await waitSynced(ctx, h.name);
      });
      // Its donor may still be marked down: no first k3s connection before the preferred writer is up.
      await waitForPreferredWriter(ctx, h.name);
    },
  };
}

/** A node already starting (mariadb activating): wait for it to be Synced instead of restarting it. */
function joiningChange(ctx: RunContext<Deployment>, host: string): Change {
  return {
    action: 'run',
    target: { host, unit: UNIT },
    summary: `wait for ${host} to finish joining (${UNIT} is starting: a state transfer under way)`,
    apply: async () => {
      await waitSynced(ctx, host);
      await waitForPreferredWriter(ctx, host);
    },
  };
}

function rollingRestart(ctx: RunContext<Deployment>, host: string, why: string): Change {
  return {
    action: 'restart',
    target: { host, unit: UNIT },
    summary: `restart ${UNIT} (${why}; one data node at a time, after the others are Synced)`,
    apply: async (h) => {
      await oneAtATime(ctx, async () => {
        const others = galeraNodes(ctx.cluster.spec).filter((n) => n.name !== h.name).map((n) => n.name);
        await waitNodes(ctx, `${others.join(', ')} to be Synced before ${h.name} restarts`, (v) => v.filter((n) => others.includes(n.name)).every(isSyncedPrimary), SYNCED_WAIT_MS);
        await startMariadb(h, sh`systemctl restart ${UNIT}`, `systemctl restart ${UNIT}`);
        await clearPending(h, UNIT);
        await waitSynced(ctx, h.name);
      });
    },
  };
}

/** The node whose step carries the database and account SQL (it replicates to the others). */
export function accountsNode(c: Cluster, d: GaleraDecision, views: readonly GaleraNodeView[]): string | null {
  if (d.kind === 'new' || d.kind === 'recover') return d.bootstrap;
  if (d.kind === 'blocked') return null;
  return preferenceOrder(c).find((n) => views.some((v) => v.name === n && isSyncedPrimary(v))) ?? null;
}

function accountsChange(ctx: RunContext<Deployment>, host: string, server: MariadbObserved | null, work: string[]): Change {
  const c = ctx.cluster.spec;
  const input = {
    database: c.datastore.database,
    user: c.datastore.user,
    password: ctx.cluster.secrets.datastorePassword,
    serverAddresses: [...new Set(hostsWithRole(c, 'server').map((h) => h.address))].sort(),
    requireTls: false,
    existingUserHosts: server?.accounts.map((a) => a.host) ?? [],
  };
  return {
    action: server?.databaseExists || server?.accounts.length ? 'update' : 'create',
    target: { host, object: `mariadb/${c.datastore.database} accounts` },
    summary: `${work.join('; ')} (replicated to every data node)`,
    detail: renderDatastoreSql(input, { maskSecrets: true }),
    apply: async (h) => {
      await h.exec(MARIADB_BATCH, { stdin: new Secret(renderDatastoreSql(input)), secrets: [input.password] });
    },
  };
}

function nodeDiff(ctx: RunContext<Deployment>, self: ClusterHost, o: Extract<GaleraObserved, { role: 'node' }>): Change[] {
  const c = ctx.cluster.spec;
  const d = nodeDesired(ctx.cluster, self, o.packageVersion);
  const changes = diffDesired(d, o.state, ctx.secrets).map((ch): Change => {
    // Read only at start: record the restart it owes before it is written.
    if (!('file' in ch.target) || !READ_AT_START.includes(ch.target.file)) return ch;
    return { ...ch, apply: async (h) => (await markPending(h, UNIT, 'restart'), await ch.apply(h)) };
  });
  const svc = o.state.services.get(UNIT);
  // Not started at boot: after a power loss every node would wait for a
  // primary component that nobody bootstraps. `apply` brings a node back,
  // with the bootstrap decided from every node's position.
  if (svc?.enabled) changes.push({ action: 'update', target: { host: self.name, unit: UNIT }, before: 'enabled', after: 'disabled', summary: `disable ${UNIT} at boot (apply rejoins a rebooted node; after a full outage it bootstraps from the most advanced one)`, apply: async (h) => void (await h.exec(sh`systemctl disable ${UNIT}`)) });
  const changedAtStart = changes.flatMap((ch) => ('file' in ch.target && READ_AT_START.includes(ch.target.file) ? [ch.target.file] : []));
  const cnfChanged = changedAtStart.length > 0;
  const owed = o.state.pending.get(UNIT) === 'restart';
  const decision = decideGalera(o.views, preferenceOrder(c));
  const me = o.views.find((v) => v.name === self.name);
  if (decision.kind === 'new' || decision.kind === 'recover') {
    if (decision.bootstrap === self.name) changes.push(bootstrapChange(ctx, self.name, decision));
    else changes.push(joinChange(ctx, self.name, `${decision.kind === 'new' ? 'join the new cluster' : 'rejoin after the full outage'} once ${decision.bootstrap} is up (full copy or IST from a synced node)`));
  } else if (decision.kind === 'running' && me) {
    // Mid-start (a state transfer keeps the unit activating): a restart would cut the transfer off.
    if (me.unit === 'activating') changes.push(joiningChange(ctx, self.name));
    else if (!isGaleraRunning(me)) changes.push(joinChange(ctx, self.name, `start ${UNIT}: rejoin the primary component of ${decision.primary.join(', ')} (IST or full copy)`));
    else if (!isPrimary(me)) changes.push(joinChange(ctx, self.name, `restart ${UNIT}: ${self.name} is outside the primary component of ${decision.primary.join(', ')}`));
    else if (cnfChanged || owed) changes.push(rollingRestart(ctx, self.name, cnfChanged ? `${changedAtStart.join(', ')} changed` : 'owed since an interrupted apply'));
  }
  if (accountsNode(c, decision, o.views) === self.name) {
    const server = me && isSyncedPrimary(me) ? o.server : null;
    const work = accountWork(c, server);
    if (work.length) changes.push(accountsChange(ctx, self.name, server, work));
  }
  return changes;
}

function arbitratorDiff(ctx: RunContext<Deployment>, host: string, o: Extract<GaleraObserved, { role: 'arbitrator' }>): Change[] {
  const changes = diffDesired(arbitratorDesired(ctx.cluster, host), o.state, ctx.secrets);
  const svc = o.state.services.get(GARB_UNIT);
  const changed = changes.some((ch) => 'file' in ch.target);
  if (!svc?.enabled) changes.push({ action: 'update', target: { host, unit: GARB_UNIT }, before: 'disabled', after: 'enabled', summary: `enable ${GARB_UNIT}`, apply: async (h) => void (await h.exec(sh`systemctl enable ${GARB_UNIT}`)) });
  if (!svc?.active || changed) {
    changes.push({
      action: 'restart',
      target: { host, unit: GARB_UNIT },
      before: svc?.active ? 'active' : 'inactive',
      after: 'active',
      summary: `${svc?.active ? 'restart' : 'start'} ${GARB_UNIT} (the arbitrator) once a data node is Synced, never while a data node starts`,
      apply: async (h) => {
        // Under the data nodes' restart lock, until garbd is a member: a member
        // joining during a joiner's full copy broke the copy (lab, 2026-12-01
        // 19:04: garbd restarted 1.5 s into infra2's mariabackup transfer, the
        // donor then saw infra2 partitioned, and infra2 got an empty state and
        // aborted: "a fatal signal was delivered to the control process").
        await oneAtATime(ctx, async () => {
          await waitPrimary(ctx);
          await h.exec(sh`systemctl restart ${GARB_UNIT}`);
          await waitNodes(ctx, `${host}'s garbd to be a member of the primary component`, arbitratorJoined, PRIMARY_WAIT_MS);
        });
      },
    });
  }
  return changes;
}

export const galeraPhase: Phase<Deployment, GaleraObserved> = {
  id: 'galera',
  title: 'Galera datastore',
  targets: (ctx) => {
    const c = ctx.cluster.spec;
    if (!c.datastore.galera) return [];
    const arb = c.datastore.galera.arbitrator;
    return [...galeraNodes(c).map((h) => h.name), ...(arb !== undefined ? [arb] : [])];
  },

  async observe(ctx, host: Host): Promise<GaleraObserved> {
    const c = ctx.cluster.spec;
    const self = hostByName(c, host.name);
    if (!self) throw new Error(`${host.name} is not in the cluster file`);
    const views = await readAllNodes(ctx);
    if (!self.roles.includes('datastore')) {
      const state = await observeDesired(host, { ...arbitratorDesired(ctx.cluster, host.name), services: [{ unit: GARB_UNIT }] });
      return { role: 'arbitrator', state, views };
    }
    const d = nodeDesired(ctx.cluster, self, null);
    const state = await observeDesired(host, { ...d, services: [...(d.services ?? []), { unit: UNIT }] });
    let packageVersion = state.packages.get('mariadb-server') ?? null;
    if (!packageVersion) {
      const p = await host.exec(sh`apt-cache policy mariadb-server`, { allowFailure: true, sudo: false });
      packageVersion = p.code === 0 ? parseCandidate(p.stdout) : null;
    }
    let server: MariadbObserved | null = null;
    if (state.services.get(UNIT)?.active) {
      const pw = ctx.cluster.secrets.datastorePassword;
      const r = await host.exec(MARIADB_BATCH, { stdin: new Secret(observeSql(c.datastore.database, c.datastore.user, pw.reveal())), allowFailure: true, secrets: [pw] });
      if (r.code === 0) server = parseObserveOutput(r.stdout);
    }
    return { role: 'node', state, packageVersion, server, views };
  },

  diff(ctx, hostName, o): Change[] {
    const self = hostByName(ctx.cluster.spec, hostName);
    if (!self || !ctx.cluster.spec.datastore.galera) return [];
    return o.role === 'arbitrator' ? arbitratorDiff(ctx, self.name, o) : nodeDiff(ctx, self, o);
  },

  preflight(ctx, observed): Problem[] {
    const c = ctx.cluster.spec;
    const g = c.datastore.galera;
    if (!g) return [];
    const problems: Problem[] = [];
    if (!g.experimental) {
      problems.push({
        severity: 'error',
        path: 'datastore.galera.experimental',
        message: 'the Galera datastore is experimental: k8s-ha has not yet shown every fault to keep kine\'s revisions and watches intact (README, "Galera datastore")',
        hint: 'read the measured figures in the README; set datastore.galera.experimental: true to use it anyway, or use a single MariaDB',
      });
    }
    const first = [...observed.values()][0];
    if (first) {
      const d = decideGalera(first.views, preferenceOrder(c));
      if (d.kind === 'blocked') problems.push({ severity: 'error', path: 'datastore.galera', message: d.reason, hint: d.hint });
    }
    problems.push(
      ...tlsChangeProblems(
        ctx.cluster,
        [...observed].flatMap(([name, o]) => (o.role === 'node' && o.server ? [{ name, providerOptions: o.server.variables.get('WSREP_PROVIDER_OPTIONS'), state: o.state }] : [])),
      ),
    );
    const need = neededConnections(c);
    if (c.datastore.maxConnections < need) {
      problems.push({ severity: 'error', path: 'datastore.maxConnections', message: `${c.datastore.maxConnections} connections is too few for ${hostsWithRole(c, 'server').length} servers`, hint: `raise it to at least ${need}, or remove it` });
    }
    for (const [name, o] of observed) {
      if (o.role !== 'node' || !o.server) continue;
      const self = hostByName(c, name)!;
      // Only what the running server has although our drop-in is in place: something overrides it.
      const cnf = nodeDesired(ctx.cluster, self, o.packageVersion).files!.find((f) => f.path === MARIADB_CNF_PATH)!;
      if (o.state.files.get(MARIADB_CNF_PATH)?.content !== cnf.content) continue;
      const v = (k: string) => o.server!.variables.get(k);
      const bad: [string, string | undefined, string][] = [
        ['auto_increment_increment', v('AUTO_INCREMENT_INCREMENT'), '1'],
        ['auto_increment_offset', v('AUTO_INCREMENT_OFFSET'), '1'],
        ['wsrep_auto_increment_control', v('WSREP_AUTO_INCREMENT_CONTROL'), 'OFF'],
        ['innodb_snapshot_isolation', v('INNODB_SNAPSHOT_ISOLATION'), 'OFF'],
      ];
      for (const [k, got, want] of bad) {
        if (got === undefined || got === want) continue;
        problems.push({
          severity: 'error',
          path: `datastore (${name})`,
          message: `${k} is ${got} on ${name}'s running MariaDB although ${MARIADB_CNF_PATH} sets ${want}: kine needs revisions that grow by exactly 1 and compaction without snapshot isolation`,
          hint: `find what overrides it (grep -rn ${k} /etc/mysql/ on ${name}), remove it and run apply again`,
        });
      }
    }
    return problems;
  },
};
