import type { Host } from '../transport/host.js';
import type { EventSink } from './events.js';
import type { Problem } from './errors.js';
import type { SecretSet } from '../util/secret.js';
import type { HostFacts } from '../transport/os.js';
import type { Change } from './change.js';

export type { HostFacts };
export type { Change, ChangeAction, ChangeTarget } from './change.js';

/**
 * What every phase sees. `C` is the opened cluster (cluster/deployment.ts);
 * the engine does not look inside it beyond the host list.
 */
export interface RunContext<C = unknown> {
  cluster: C;
  /**
   * Every secret in play, so output can be masked. A phase that reads a
   * secret from a host (a server's token) adds it here.
   */
  secrets: SecretSet;
  facts: ReadonlyMap<string, HostFacts>;
  /** The connected host of that name (connected once per run, reused) — any host, not only the phase's targets. */
  host(name: string): Promise<Host>;
  /**
   * True when `name` is an optional host that could not be reached this run
   * (engine.ts): left out of every phase's targets. A phase working for
   * such a host from elsewhere (deleting a dead node's Node object through a
   * server) asks here.
   */
  unreachable?(name: string): boolean;
  events: EventSink;
  signal?: AbortSignal;
}

/**
 * The order a phase changes its hosts in: batches run one after another,
 * the hosts of a batch at once (bounded by the engine's concurrency). A
 * failure stops the phase before the next batch.
 */
export interface Rollout {
  batches: string[][];
  /** One line for the plan, e.g. "one at a time", "in batches of 2, drained first". */
  describe?: string;
}

/**
 * A step of a pipeline (STYLE.md 1, after k0sctl's phases). Reading is
 * `observe`, deciding is `diff` (pure), and the engine applies the changes.
 *
 * Extension points, all optional: `preflight` (checks across hosts, before
 * any change), `batch` or `rollout` (the order and batches of the hosts),
 * `settle` (wait until a changed host is healthy), `cleanup` (after the
 * whole run, also when it failed).
 */
export interface Phase<C = unknown, O = unknown> {
  id: string;
  title: string;
  /** The names of the hosts this phase works on, in the order it works on them. */
  targets(ctx: RunContext<C>): string[];
  /** Read the host. Must not change it. */
  observe(ctx: RunContext<C>, host: Host): Promise<O>;
  /**
   * Pure: what must change for this host to reach the cluster file's state.
   * `all` holds every target's observation, for decisions across hosts.
   * A change may target another host than `hostName` (a drain on a server).
   */
  diff(ctx: RunContext<C>, hostName: string, observed: O, all: ReadonlyMap<string, O>): Change[];
  /**
   * Checks across all targets before any host is changed (datastore
   * variables, cluster-critical settings, upgrade rules). An error stops the apply.
   */
  preflight?(ctx: RunContext<C>, observed: ReadonlyMap<string, O>): Problem[];
  /**
   * How many hosts are changed at once (1: one at a time, servers). Default:
   * all, bounded by the engine's concurrency. Ignored when `rollout` is set.
   */
  batch?: number;
  /**
   * A phase-level decision over all hosts' observations: the order and the
   * batches of the hosts that have changes (`changed`, in target order).
   */
  rollout?(ctx: RunContext<C>, changed: string[], observed: ReadonlyMap<string, O>): Rollout;
  /** After a host's changes: wait until it is healthy (bounded). */
  settle?(ctx: RunContext<C>, host: Host, applied: Change[]): Promise<void>;
  /**
   * Once the run ends, whether it succeeded or not, for every phase that
   * started applying (k0sctl's CleanUp): remove temporary files, release
   * what the phase took. Errors become warnings; they never hide the run's.
   */
  cleanup?(ctx: RunContext<C>, outcome: { ok: boolean }): Promise<void>;
}

/** A phase whose observation type is erased, as the pipeline holds them (methods are bivariant). */
export type AnyPhase<C = unknown> = Phase<C, unknown>;
