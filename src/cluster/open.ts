import { readFile } from 'node:fs/promises';
import { clusterSecrets, type Cluster, type ClusterHost, type SecretRef } from '../spec/cluster.js';
import { loadClusterFile, type Env, type Removal } from '../spec/load.js';
import type { LocalFileOptions } from '../spec/local-files.js';
import type { Host } from '../transport/host.js';
import type { HostKeyStore } from '../transport/hostkeys.js';
import { connectSsh } from '../transport/ssh.js';
import { hostKeyId } from '../transport/hostkeys.js';
import { Secret, SecretSet } from '../util/secret.js';
import { Engine, PreflightError, type ApplyResult, type Plan } from '../engine/engine.js';
import { UserError, type Problem } from '../engine/errors.js';
import { noEvents, type EventSink } from '../engine/events.js';
import { ClusterLock } from '../engine/lock.js';
import type { AnyPhase } from '../engine/phase.js';
import type { ClusterSecrets, Deployment, RunOptions } from './deployment.js';
import { applyPipeline } from './pipelines.js';
import { StateFile, type SecretKind } from './state.js';
import { galeraTls } from './galera-tls.js';
import { SERVER_TOKEN_PATH, findServerToken } from '../phases/k3s-token.js';

export type { ClusterSecrets, Deployment } from './deployment.js';

/**
 * The wiring that opens a cluster (the engine proper is engine/): the
 * cluster file loaded and checked, the state file read, secrets resolved,
 * connections made, and an engine over one pipeline (cluster/pipelines.ts).
 * Every command opens its cluster here, the same way.
 */
export interface OpenOptions {
  env?: Env;
  /** Connect to a host; default: SSH with host keys pinned in the state file. */
  connect?: (host: ClusterHost) => Promise<Host>;
  /** The pipeline to run. Default: `applyPipeline()` (cluster/pipelines.ts), made for this run. */
  phases?: AnyPhase<Deployment>[];
  concurrency?: number;
  /** Load warnings, token adoption and the engine's progress. */
  events?: EventSink;
  signal?: AbortSignal;
  /** Host names whose changed SSH host key is accepted deliberately. */
  acceptHostKeyFor?: ReadonlySet<string>;
  /**
   * `status`, `verify`, `kubeconfig`: never write the state file (no secret
   * generated and kept, no host key pinned) and refuse `apply`. Default false.
   */
  readOnly?: boolean;
  /** Flags phases act on (apply --force, drain options). Default: none. */
  run?: RunOptions;
  /**
   * `k8s-ha node remove NAME`: these hosts are removed as if they carried
   * `remove: true` (a host only the state file still records is taken from
   * there). Default: none; the file's own `remove: true` hosts always are.
   */
  remove?: readonly string[];
  /**
   * Filled with every secret of the run (the CLI masks all it prints with
   * it). Default: a set of the run's own, `run.secrets`.
   */
  secrets?: SecretSet;
}

/**
 * Load and check a cluster file; a bad file is a UserError listing every
 * problem. SSH key files are checked only when asked (ClusterRun.open does
 * when it connects over SSH): a caller that reaches hosts otherwise needs none.
 */
export function loadCluster(
  file: string,
  env: Env = process.env,
  opts: LocalFileOptions & Removal = { sshKeys: false },
): { cluster: Cluster; warnings: ReturnType<typeof loadClusterFile>['diagnostics'] } {
  const r = loadClusterFile(file, env, opts);
  const errors = r.diagnostics.filter((d) => d.severity === 'error');
  if (!r.cluster || errors.length) {
    throw new UserError(`${file}: ${errors.length} problem${errors.length === 1 ? '' : 's'} in the cluster file`, r.diagnostics);
  }
  return { cluster: r.cluster, warnings: r.diagnostics.filter((d) => d.severity === 'warning') };
}

/** The host that holds the cluster lock: the (first) datastore host, else the first server, else the first host. */
export function lockHostName(c: Cluster): string {
  const by = (role: string) => c.hosts.find((h) => (h.roles as string[]).includes(role));
  return (by('datastore') ?? by('server') ?? c.hosts[0]!).name;
}

/**
 * A cluster opened for one run of one command: its deployment (what phases
 * see), the state file, and an engine over the command's pipeline.
 */
export class ClusterRun {
  private constructor(
    readonly deployment: Deployment,
    readonly state: StateFile,
    readonly engine: Engine<Deployment>,
    private readonly opts: OpenOptions,
    /** Every secret ever in play: the cluster file's, the state file's (used or not), and those read from hosts. */
    readonly secrets: SecretSet,
  ) {}

  static async open(file: string, opts: OpenOptions = {}): Promise<ClusterRun> {
    const events = opts.events ?? noEvents;
    const env = opts.env ?? process.env;
    const sshKeys = opts.connect === undefined;
    let { cluster, warnings } = loadCluster(file, env, { sshKeys });
    const state = await StateFile.load(StateFile.pathFor(file), cluster.name, { readOnly: opts.readOnly ?? false });
    if (opts.remove?.length) {
      // Loaded again with the hosts to remove marked, so every check of the file applies to them.
      const vanished = state.appliedHosts().filter((h) => opts.remove!.includes(h.name) && !cluster.hosts.some((x) => x.name === h.name) && !cluster.removing.some((x) => x.name === h.name));
      ({ cluster, warnings } = loadCluster(file, env, { sshKeys, remove: opts.remove, vanished }));
    }
    for (const w of warnings) {
      events({ type: 'warning', message: `${file}${w.line ? `:${w.line}` : ''}: ${w.path ? `${w.path}: ` : ''}${w.message}${w.hint ? ` (fix: ${w.hint})` : ''}` });
    }
    // A `remove: true` host no apply recorded (or one already forgotten) has nothing left to take apart.
    const done = cluster.removing.filter((h) => !state.mayHaveApplied(h.name));
    for (const h of done) {
      events({ type: 'warning', message: `${h.name} has remove: true but ${state.path} records no apply to it (already removed, or never part of the cluster): nothing to do for it; delete it from ${file}` });
    }
    cluster = { ...cluster, removing: cluster.removing.filter((h) => !done.includes(h)) };
    const everyHost = [...cluster.hosts, ...cluster.removing];
    const unknown = [...(opts.acceptHostKeyFor ?? [])].filter((n) => !everyHost.some((h) => h.name === n));
    if (unknown.length) {
      throw new UserError(`--accept-new-host-key ${unknown.join(', ')}: no host of that name in ${file}; give a host's name from its hosts list (${everyHost.map((h) => h.name).join(', ')})`);
    }
    const known = opts.secrets ?? new SecretSet();
    known.add(...clusterSecrets(cluster), ...state.allSecrets());
    const connect = memoConnect(opts.connect ?? sshConnector(cluster, stateHostKeys(state), opts.acceptHostKeyFor));
    if (cluster.k3s.token.source === 'generate' && !state.has('k3sToken')) {
      // State file lost but the cluster exists: a new token would lock every
      // server out of its datastore (FACTS), so take the servers' own.
      const found = await findServerToken(cluster, connect);
      if (found) {
        known.add(found.token);
        state.setSecret('k3sToken', found.token);
        const kept = opts.readOnly ? 'for this run only (this command never writes the state file; `k8s-ha plan` or `apply` saves it)' : 'and saving it to the state file; back that file up';
        events({ type: 'warning', message: `${state.path} held no k3s token, but ${found.from} already runs k3s: using its token (from ${SERVER_TOKEN_PATH}) ${kept}` });
      }
    }
    const secrets: ClusterSecrets = {
      k3sToken: await resolveSecret(cluster.k3s.token, state, 'k3sToken', 'token'),
      datastorePassword: await resolveSecret(cluster.datastore.password, state, 'datastorePassword', 'password'),
      vrrpPass: cluster.loadBalancer.virtualIP?.authPass ?? new Secret(state.secret('vrrpPass', 'password').reveal().slice(0, 8)),
      ...(cluster.k3s.agentToken ? { agentToken: await resolveSecret(cluster.k3s.agentToken, state, 'agentToken', 'token') } : {}),
    };
    const tls = galeraTls(cluster, state);
    if (tls) secrets.galeraTls = tls;

    const stateRecord = {
      path: state.path,
      remembers: (name: string) => state.appliedHosts().some((h) => h.name === name),
      forget: async (name: string) => {
        const h = everyHost.find((x) => x.name === name);
        state.forgetHost(name, h ? hostKeyId(h.address, h.ssh.port) : undefined);
        await state.save();
      },
    };
    const deployment: Deployment = { spec: cluster, secrets, file, ...(opts.run ? { options: opts.run } : {}), ...(opts.readOnly ? {} : { state: stateRecord }) };
    known.add(secrets.k3sToken, secrets.datastorePassword, secrets.vrrpPass, secrets.agentToken, ...[...(tls?.members.values() ?? [])].map((m) => m.key), ...state.allSecrets());
    const engine = new Engine<Deployment>({
      cluster: deployment,
      // An agent that cannot be reached does not stop the rest (its node just
      // stays as it is); every other role is needed by the phases after it.
      // A host to remove may be gone for good: --force removes it from elsewhere (phases/node-removal.ts).
      hosts: [
        ...cluster.hosts.map((h) => ({ name: h.name, address: h.address, optional: h.roles.every((r) => r === 'agent') })),
        ...cluster.removing.map((h) => ({ name: h.name, address: h.address, optional: true })),
      ],
      connect: (name) => connect(everyHost.find((h) => h.name === name)!),
      phases: opts.phases ?? applyPipeline(),
      secrets: known,
      concurrency: opts.concurrency,
      events,
      signal: opts.signal,
    });
    return new ClusterRun(deployment, state, engine, opts, known);
  }

  /**
   * Observe every host and list the changes. Changes no host, and keeps no
   * secret it generated (the state file gets only host keys pinned at first
   * contact): a plan shows secrets masked, so it does not depend on them.
   */
  async plan(): Promise<Plan> {
    const plan = await this.engine.plan();
    const problems = [...vanishedHosts(this.deployment, this.state), ...deadRemovals(this.deployment, plan), ...plan.problems];
    // A host removed with --force although it cannot be reached is expected to be unreachable.
    const gone = new Set(this.deployment.options?.force ? this.deployment.spec.removing.map((h) => h.name) : []);
    const unreachable = plan.unreachable?.filter((u) => !gone.has(u.host));
    const { unreachable: _u, ...rest } = plan;
    return { ...rest, problems, ...(unreachable?.length ? { unreachable } : {}) };
  }

  /**
   * Run `plan` (the one that was shown; a fresh one when none is given).
   * A plan with preflight errors is refused before anything is touched; an
   * empty one changes nothing and takes no lock; any other runs under the
   * cluster lock, unless `lock: false` (a pipeline that only reads, as
   * backup's, must not wait for or write a lock). Generated secrets are saved to the state file before the
   * first host is changed, so an interrupted apply reuses them.
   */
  async apply(plan?: Plan, opts: { breakLock?: boolean; command?: string; lock?: boolean } = {}): Promise<ApplyResult> {
    const t0 = Date.now();
    const p = plan ?? (await this.engine.plan());
    const refused = p.problems.filter((x) => x.severity === 'error');
    if (refused.length) throw new PreflightError('preflight', refused);
    if (p.empty) return { applied: [], changed: 0, ms: Date.now() - t0 };
    if (opts.lock === false) return this.#expected(await this.engine.apply(p));
    return this.#expected(await this.locked(opts.command ?? 'apply', () => this.engine.apply(p), opts));
  }

  /** A host removed with --force is expected to be unreachable: not a failure of the run. */
  #expected(r: ApplyResult): ApplyResult {
    if (!r.unreachable || !this.deployment.options?.force) return r;
    const gone = new Set(this.deployment.spec.removing.map((h) => h.name));
    const { unreachable, ...rest } = r;
    const left = unreachable.filter((u) => !gone.has(u.host));
    return left.length ? { ...rest, unreachable: left } : rest;
  }

  /**
   * Run `fn` holding the cluster lock (engine/lock.ts), for every command
   * that changes the cluster (apply, restore, node removal): two never run
   * at once on one cluster.
   */
  async locked<T>(command: string, fn: () => Promise<T>, opts: { breakLock?: boolean } = {}): Promise<T> {
    if (this.opts.readOnly) throw new Error(`this cluster was opened read-only; \`${command}\` changes hosts`);
    this.state.keepGenerated();
    // Before any change: an apply cut off halfway still remembers every host it may have touched.
    this.state.recordHosts(this.deployment.spec.hosts);
    await this.state.save();
    const lock = await ClusterLock.acquire(await this.engine.host(lockHostName(this.deployment.spec)), {
      command,
      breakLock: opts.breakLock ?? false,
      events: this.opts.events,
    });
    try {
      return await fn();
    } finally {
      await lock.release().catch((e: Error) => this.opts.events?.({ type: 'warning', message: `releasing the cluster lock on ${lock.host.name}: ${e.message}` }));
    }
  }

  async close(): Promise<void> {
    await this.engine.close();
    await this.state.save();
  }
}

/**
 * Hosts an earlier apply worked on that are no longer in the cluster file.
 * Never forgotten silently: such a host may still run k3s, be a load
 * balancer upstream or hold a datastore account.
 */
function vanishedHosts(d: Deployment, state: StateFile): Problem[] {
  return state
    .appliedHosts()
    .filter((h) => !d.spec.hosts.some((x) => x.name === h.name) && !d.spec.removing.some((x) => x.name === h.name))
    .map((h) => {
      const k3s = h.roles.includes('server') ? 'k3s-uninstall.sh' : 'k3s-agent-uninstall.sh';
      const node = h.roles.includes('server') || h.roles.includes('agent');
      return {
        severity: 'error' as const,
        path: 'hosts',
        message: `${h.name} (${h.roles.join(', ')}, ${h.address}) was applied to this cluster (${state.path} records it) but is not in ${d.file} any more; k8s-ha does not forget a host silently`,
        hint: node
          ? `remove it deliberately: \`k8s-ha node remove ${h.name}\` (drains it, deletes its Node, runs ${k3s} there, takes it out of the load balancer and the datastore grants, forgets it; --force when the machine is gone), or put it back in the file with \`remove: true\` and apply`
          : `put it back in the file; to retire it, give its roles to another host, apply, then delete its line under \`hosts:\` in ${state.path}`,
      };
    });
}

/**
 * A host to remove that cannot be reached: it can be neither drained nor
 * uninstalled. Refused unless --force, which removes what lives elsewhere
 * (its Node object, its upstream, its account) and leaves the machine be.
 */
function deadRemovals(d: Deployment, plan: Plan): Problem[] {
  return (plan.unreachable ?? [])
    .filter((u) => d.spec.removing.some((h) => h.name === u.host))
    .map((u) =>
      d.options?.force
        ? {
            severity: 'warning' as const,
            path: 'hosts',
            message: `${u.host} cannot be reached (${u.reason}): with --force it is removed without being drained or uninstalled — its Node object, load-balancer upstream and datastore account go; whatever still runs on that machine is left as it is`,
            hint: `if the machine comes back, wipe it before it rejoins anything (${'`'}k3s-uninstall.sh${'`'} or k3s-agent-uninstall.sh there)`,
          }
        : {
            severity: 'error' as const,
            path: 'hosts',
            message: `${u.host} is to be removed but cannot be reached (${u.reason}), so it can be neither drained nor uninstalled`,
            hint: `bring it back and run again; if it is gone for good, run again with --force: its Node object, load-balancer upstream and datastore account are removed, nothing is done on the machine`,
          },
    );
}

/** One connection per host, shared by the token pre-step and the engine (which closes them). */
function memoConnect(connect: (h: ClusterHost) => Promise<Host>): (h: ClusterHost) => Promise<Host> {
  const conns = new Map<string, Promise<Host>>();
  return (h) => {
    let p = conns.get(h.name);
    if (!p) {
      p = connect(h);
      p.catch(() => conns.delete(h.name));
      conns.set(h.name, p);
    }
    return p;
  };
}

async function resolveSecret(ref: SecretRef, state: StateFile, name: string, kind: SecretKind): Promise<Secret> {
  switch (ref.source) {
    case 'generate':
      return state.secret(name, kind);
    case 'env':
    case 'literal':
      return ref.value;
    case 'file':
      return new Secret((await readFile(ref.path, 'utf8')).trim());
  }
}

/** Host keys pinned in the state file (PRODUCT.md: the state file holds them). */
export function stateHostKeys(state: StateFile): HostKeyStore {
  return {
    location: state.path,
    lookup: async (id) => state.hostKey(id),
    record: async (id, key) => {
      if (state.readOnly) {
        throw new Error(`no host key for ${id} is pinned there, and this command never writes the state file; run \`k8s-ha plan\` once to pin the hosts' keys`);
      }
      state.setHostKey(id, key);
      await state.save();
    },
  };
}

export function sshConnector(cluster: Cluster, hostKeys: HostKeyStore, accept?: ReadonlySet<string>): (h: ClusterHost) => Promise<Host> {
  return (h) =>
    connectSsh(
      {
        name: h.name,
        address: h.address,
        port: h.ssh.port,
        user: h.ssh.user,
        keyFile: h.ssh.keyFile,
        agent: h.ssh.agent,
        sudo: h.sudo.enabled,
        sudoPassword: h.sudo.password,
      },
      { hostKeys, connectTimeoutMs: h.ssh.connectTimeoutMs, acceptChangedKeyFor: accept },
    );
}
