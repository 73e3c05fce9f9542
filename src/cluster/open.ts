import { readFile } from 'node:fs/promises';
import { clusterSecrets, type Cluster, type ClusterHost, type SecretRef } from '../spec/cluster.js';
import { loadClusterFile, type Env } from '../spec/load.js';
import type { Host } from '../transport/host.js';
import type { HostKeyStore } from '../transport/hostkeys.js';
import { connectSsh } from '../transport/ssh.js';
import { Secret, SecretSet } from '../util/secret.js';
import { Engine, PreflightError, type ApplyResult, type Plan } from '../engine/engine.js';
import { UserError, type Problem } from '../engine/errors.js';
import { noEvents, type EventSink } from '../engine/events.js';
import { ClusterLock } from '../engine/lock.js';
import type { AnyPhase } from '../engine/phase.js';
import type { ClusterSecrets, Deployment, RunOptions } from './deployment.js';
import { applyPipeline } from './pipelines.js';
import { StateFile, type SecretKind } from './state.js';
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
   * Filled with every secret of the run (the CLI masks all it prints with
   * it). Default: a set of the run's own, `run.secrets`.
   */
  secrets?: SecretSet;
}

/** Load and check a cluster file; a bad file is a UserError listing every problem. */
export function loadCluster(file: string, env: Env = process.env): { cluster: Cluster; warnings: ReturnType<typeof loadClusterFile>['diagnostics'] } {
  const r = loadClusterFile(file, env);
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
    const { cluster, warnings } = loadCluster(file, opts.env ?? process.env);
    for (const w of warnings) {
      events({ type: 'warning', message: `${file}${w.line ? `:${w.line}` : ''}: ${w.path ? `${w.path}: ` : ''}${w.message}${w.hint ? ` (fix: ${w.hint})` : ''}` });
    }
    const unknown = [...(opts.acceptHostKeyFor ?? [])].filter((n) => !cluster.hosts.some((h) => h.name === n));
    if (unknown.length) {
      throw new UserError(`--accept-new-host-key ${unknown.join(', ')}: no host of that name in ${file}; give a host's name from its hosts list (${cluster.hosts.map((h) => h.name).join(', ')})`);
    }
    const state = await StateFile.load(StateFile.pathFor(file), cluster.name, { readOnly: opts.readOnly ?? false });
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
    const deployment: Deployment = { spec: cluster, secrets, file, ...(opts.run ? { options: opts.run } : {}) };
    known.add(secrets.k3sToken, secrets.datastorePassword, secrets.vrrpPass, secrets.agentToken);
    const engine = new Engine<Deployment>({
      cluster: deployment,
      hosts: cluster.hosts.map((h) => ({ name: h.name, address: h.address })),
      connect: (name) => connect(cluster.hosts.find((h) => h.name === name)!),
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
    const vanished = vanishedHosts(this.deployment, this.state);
    return vanished.length ? { ...plan, problems: [...vanished, ...plan.problems] } : plan;
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
    if (opts.lock === false) return this.engine.apply(p);
    return this.locked(opts.command ?? 'apply', () => this.engine.apply(p), opts);
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
    .filter((h) => !d.spec.hosts.some((x) => x.name === h.name))
    .map((h) => {
      const k3s = h.roles.includes('server') ? 'k3s-uninstall.sh' : 'k3s-agent-uninstall.sh';
      const node = h.roles.includes('server') || h.roles.includes('agent');
      return {
        severity: 'error' as const,
        path: 'hosts',
        message: `${h.name} (${h.roles.join(', ')}, ${h.address}) was applied to this cluster (${state.path} records it) but is not in ${d.file} any more; k8s-ha does not forget a host silently`,
        hint: `put it back in the file; to take it out of the cluster, remove it deliberately first${node ? ` (\`k3s kubectl drain ${h.name} --ignore-daemonsets\`, \`k3s kubectl delete node ${h.name}\`, ${k3s} on it)` : ''}, then delete its line under \`hosts:\` in ${state.path} and apply (the next apply takes it out of the load balancer and the datastore grants)`,
      };
    });
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
