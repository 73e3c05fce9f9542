import type { EventSink } from '../engine/events.js';
import { ClusterRun, type OpenOptions } from '../cluster/open.js';
import type { RunOptions } from '../cluster/deployment.js';
import type { CliIO } from './io.js';
import { warningEvents } from './output/progress.js';

/** For tests and library callers: how hosts are reached (default SSH) and which pipeline runs. */
export interface RunHooks {
  open?: Pick<OpenOptions, 'connect' | 'phases'>;
  signal?: AbortSignal;
}

/**
 * The one way a command opens its cluster (cluster/open.ts does the work).
 * Commands that only read (`status`, `verify`, `kubeconfig`) open it
 * read-only: the state file is never written. Warnings from loading the
 * file and from adopting a server's token reach the user in every command:
 * through `events` when the command shows progress, else on stderr.
 */
export function openCluster(
  file: string,
  io: CliIO,
  hooks: RunHooks,
  o: { readOnly?: boolean; events?: EventSink; concurrency?: number; acceptNewHostKey?: string[]; run?: RunOptions; remove?: string[] } = {},
): Promise<ClusterRun> {
  return ClusterRun.open(file, {
    env: io.env,
    // The CLI's one masking step: every secret of the run masks all it prints.
    ...(io.secrets ? { secrets: io.secrets } : {}),
    acceptHostKeyFor: new Set(o.acceptNewHostKey ?? []),
    events: o.events ?? warningEvents(io.stderr),
    readOnly: o.readOnly ?? false,
    ...(o.run ? { run: o.run } : {}),
    ...(o.remove ? { remove: o.remove } : {}),
    ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
    ...hooks.open,
  });
}
