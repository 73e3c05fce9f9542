import { readFile } from 'node:fs/promises';
import { clusterSecrets, type Cluster, type ClusterHost, type SecretRef } from '../spec/cluster.js';
import { loadClusterFile, type Env } from '../spec/load.js';
import type { Host } from '../transport/host.js';
import type { HostKeyStore } from '../transport/hostkeys.js';
import { connectSsh } from '../transport/ssh.js';
import { Secret, SecretSet } from '../util/secret.js';
import { Engine, type ApplyResult, type Plan } from './engine.js';
import { UserError } from './errors.js';
import type { EventSink } from './events.js';
import type { AnyPhase } from './phase.js';
import { pipeline } from './pipeline.js';
import { StateFile, type SecretKind } from './state.js';
import { SERVER_TOKEN_PATH, findServerToken } from '../phases/k3s-token.js';

/** The secrets a cluster runs on, resolved from the cluster file and the state file. */
export interface ClusterSecrets {
  k3sToken: Secret;
  agentToken?: Secret;
  datastorePassword: Secret;
  /** keepalived's VRRP password (only 8 characters are used by keepalived). */
  vrrpPass: Secret;
}

/** What every phase works from: the loaded cluster file and its secrets. */
export interface Deployment {
  spec: Cluster;
  secrets: ClusterSecrets;
  /** The cluster file's path (relative local files are resolved from here). */
  file: string;
}

export interface OpenOptions {
  env?: Env;
  /** Connect to a host; default: SSH with host keys pinned in the state file. */
  connect?: (host: ClusterHost) => Promise<Host>;
  /** Default: the full pipeline (engine/pipeline.ts). */
  phases?: AnyPhase<Deployment>[];
  concurrency?: number;
  events?: EventSink;
  signal?: AbortSignal;
  /** Host names whose changed SSH host key is accepted deliberately. */
  acceptHostKeyFor?: ReadonlySet<string>;
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

/**
 * A cluster opened for planning or applying: the cluster file loaded, the
 * state file read, secrets resolved, and an engine over the pipeline.
 */
export class ClusterRun {
  private constructor(
    readonly deployment: Deployment,
    readonly state: StateFile,
    readonly engine: Engine<Deployment>,
    /** Every secret ever in play: the cluster file's, the state file's (used or not), and those read from hosts. */
    readonly secrets: SecretSet,
  ) {}

  static async open(file: string, opts: OpenOptions = {}): Promise<ClusterRun> {
    const { cluster, warnings } = loadCluster(file, opts.env ?? process.env);
    for (const w of warnings) {
      opts.events?.({ type: 'warning', message: `${file}${w.line ? `:${w.line}` : ''}: ${w.path ? `${w.path}: ` : ''}${w.message}${w.hint ? ` (fix: ${w.hint})` : ''}` });
    }
    const unknown = [...(opts.acceptHostKeyFor ?? [])].filter((n) => !cluster.hosts.some((h) => h.name === n));
    if (unknown.length) {
      throw new UserError(`--accept-new-host-key ${unknown.join(', ')}: no host of that name in ${file}; give a host's name from its hosts list (${cluster.hosts.map((h) => h.name).join(', ')})`);
    }
    const state = await StateFile.load(StateFile.pathFor(file), cluster.name);
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
        opts.events?.({ type: 'warning', message: `${state.path} held no k3s token, but ${found.from} already runs k3s: using its token (from ${SERVER_TOKEN_PATH}) and saving it to the state file; back that file up` });
      }
    }
    const secrets: ClusterSecrets = {
      k3sToken: await resolveSecret(cluster.k3s.token, state, 'k3sToken', 'token'),
      datastorePassword: await resolveSecret(cluster.datastore.password, state, 'datastorePassword', 'password'),
      vrrpPass: cluster.loadBalancer.virtualIP?.authPass ?? new Secret(state.secret('vrrpPass', 'password').reveal().slice(0, 8)),
      ...(cluster.k3s.agentToken ? { agentToken: await resolveSecret(cluster.k3s.agentToken, state, 'agentToken', 'token') } : {}),
    };
    const deployment: Deployment = { spec: cluster, secrets, file };
    known.add(secrets.k3sToken, secrets.datastorePassword, secrets.vrrpPass, secrets.agentToken);
    const engine = new Engine<Deployment>({
      cluster: deployment,
      hosts: cluster.hosts.map((h) => ({ name: h.name, address: h.address })),
      connect: (name) => connect(cluster.hosts.find((h) => h.name === name)!),
      phases: opts.phases ?? pipeline,
      secrets: known,
      concurrency: opts.concurrency,
      events: opts.events,
      signal: opts.signal,
    });
    return new ClusterRun(deployment, state, engine, known);
  }

  /**
   * Observe every host and list the changes. Changes no host, and keeps no
   * secret it generated (the state file gets only host keys pinned at first
   * contact): a plan shows secrets masked, so it does not depend on them.
   */
  plan(): Promise<Plan> {
    return this.engine.plan();
  }

  /**
   * Converge every host. Generated secrets are saved to the state file
   * before the first host is changed, so an interrupted apply reuses them.
   */
  async apply(): Promise<ApplyResult> {
    this.state.keepGenerated();
    await this.state.save();
    return this.engine.apply();
  }

  async close(): Promise<void> {
    await this.engine.close();
    await this.state.save();
  }
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
