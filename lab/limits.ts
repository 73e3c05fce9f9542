/**
 * Host-wide kernel limits that machines running real kubelets need. Each
 * machine runs systemd, containerd, a kubelet and kube-proxy, and each of
 * them holds inotify instances (containerd's CNI config watcher, the
 * kubelet's file watchers, systemd's path units): the host's default of 128
 * instances per user is used up by a few machines, after which containerd
 * fails with "too many open files". All machines run as root, so they share
 * one per-user budget.
 *
 * `lab up` raises a limit only when it is below what the lab needs, and
 * never lowers one. `lab down` leaves them raised: other labs started later
 * may rely on them, and a higher limit changes nothing for the host.
 */
import { readFile, writeFile } from 'node:fs/promises';

export interface HostLimit {
  /** sysctl name, e.g. fs.inotify.max_user_instances. */
  key: string;
  /** The least value the lab needs. */
  min: number;
  why: string;
}

export const HOST_LIMITS: readonly HostLimit[] = [
  { key: 'fs.inotify.max_user_instances', min: 8192, why: 'systemd, containerd and the kubelet of every machine each hold inotify instances' },
  { key: 'fs.inotify.max_user_watches', min: 524288, why: 'the kubelets and containerd watch pod and config folders' },
];

export interface LimitChange {
  key: string;
  from: number;
  to: number;
  why: string;
}

/** Which limits must be raised, given the current values. Pure, for tests. */
export function limitsToRaise(current: Readonly<Record<string, number>>, limits: readonly HostLimit[] = HOST_LIMITS): LimitChange[] {
  const out: LimitChange[] = [];
  for (const l of limits) {
    const cur = current[l.key];
    if (cur === undefined || !Number.isFinite(cur) || cur < l.min) out.push({ key: l.key, from: cur ?? Number.NaN, to: l.min, why: l.why });
  }
  return out;
}

const procPath = (key: string): string => `/proc/sys/${key.replace(/\./g, '/')}`;

export async function readLimits(limits: readonly HostLimit[] = HOST_LIMITS): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const l of limits) out[l.key] = Number.parseInt((await readFile(procPath(l.key), 'utf8')).trim(), 10);
  return out;
}

/**
 * Raises what is too low and returns one line per limit for `lab up`'s
 * output: what was raised from what to what, or that it was already enough.
 */
export async function raiseHostLimits(limits: readonly HostLimit[] = HOST_LIMITS): Promise<string[]> {
  const current = await readLimits(limits);
  const raise = limitsToRaise(current, limits);
  const lines: string[] = [];
  for (const l of limits) {
    const c = raise.find((r) => r.key === l.key);
    if (!c) {
      lines.push(`host limit ${l.key} = ${current[l.key]} (>= ${l.min}, kept)`);
      continue;
    }
    try {
      await writeFile(procPath(c.key), `${c.to}\n`);
    } catch (e) {
      throw new Error(`cannot raise ${c.key} from ${c.from} to ${c.to} (${(e as Error).message}); the lab's kubelets need it because ${c.why}. Raise it with \`sysctl -w ${c.key}=${c.to}\``);
    }
    lines.push(`host limit ${c.key} raised ${c.from} -> ${c.to} (${c.why}; left raised after down)`);
  }
  return lines;
}
