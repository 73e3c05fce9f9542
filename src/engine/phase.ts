import type { Host } from '../transport/host.js';
import type { EventSink } from './events.js';
import type { Problem } from './errors.js';
import type { SecretSet } from '../util/secret.js';
import type { HostFacts } from '../transport/os.js';

export type { HostFacts };

/**
 * One change on one host. `summary` and `detail` are what `plan` shows
 * (secrets masked); `apply` is the only code that changes the host, and it is
 * only ever called by the engine (STYLE.md 2: one gate for changes).
 */
export interface Change {
  kind: 'package' | 'file' | 'service' | 'sql' | 'command' | 'remove';
  summary: string;
  /** A unified diff or other detail, secrets masked. */
  detail?: string;
  apply(host: Host): Promise<void>;
}

/**
 * What every phase sees. `C` is the loaded cluster; the engine does not look
 * inside it beyond the host list.
 */
export interface RunContext<C = unknown> {
  cluster: C;
  /**
   * Every secret in play, so output can be masked. A phase that reads a
   * secret from a host (a server's token) adds it here.
   */
  secrets: SecretSet;
  facts: ReadonlyMap<string, HostFacts>;
  /** The connected host of that name (connected once, reused). */
  host(name: string): Promise<Host>;
  events: EventSink;
  signal?: AbortSignal;
}

/**
 * A step of the pipeline (STYLE.md 1, after k0sctl's phases). Reading is
 * `observe`, deciding is `diff` (pure), and the engine applies the changes.
 */
export interface Phase<C = unknown, O = unknown> {
  id: string;
  title: string;
  /** The names of the hosts this phase works on, in the order it works on them. */
  targets(ctx: RunContext<C>): string[];
  /** Work on one host at a time (servers: never two restarts at once). Default: false. */
  serial?: boolean;
  /** Read the host. Must not change it. */
  observe(ctx: RunContext<C>, host: Host): Promise<O>;
  /** Pure: what must change on this host to reach the cluster file's state. */
  diff(ctx: RunContext<C>, hostName: string, observed: O): Change[];
  /**
   * Checks across all targets before any host is changed (datastore
   * variables, cluster-critical settings). An error stops the apply.
   */
  preflight?(ctx: RunContext<C>, observed: ReadonlyMap<string, O>): Problem[];
  /** After a host's changes: wait until it is healthy (bounded). */
  settle?(ctx: RunContext<C>, host: Host, applied: Change[]): Promise<void>;
}

/** A phase whose observation type is erased, as the pipeline holds them (methods are bivariant). */
export type AnyPhase<C = unknown> = Phase<C, unknown>;
