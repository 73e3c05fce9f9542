import type { Problem } from '../engine/errors.js';
import type { Host } from '../transport/host.js';
import { K3S_BINARY_PATH } from '../render/k3s.js';
import { sh } from '../transport/quote.js';
import { kubectlArgs } from './k3s-health.js';

/**
 * k3s versions and the upgrade rules (FACTS, Day-2 operations): servers
 * first, one at a time, then agents; one minor version at a time; never a
 * downgrade; a kubelet never newer than the API server. No anchor tool
 * enforces the one-minor rule; k8s-ha refuses before touching a host.
 */
export interface K3sVersion {
  major: number;
  minor: number;
  patch: number;
  /** The `+k3sN` build. */
  build: number;
  text: string;
}

/** `v1.31.4+k3s1`, or the first line of `k3s --version` (`k3s version v1.31.4+k3s1 (abcdef)`). */
export function parseK3sVersion(s: string | null | undefined): K3sVersion | null {
  const m = /v(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?/.exec(s ?? '');
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), build: Number(m[4] ?? 0), text: m[0] };
}

export function compareVersions(a: K3sVersion, b: K3sVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch || a.build - b.build;
}

/** One round trip: the installed binary's version line, empty when there is none. */
export const versionProbe = sh`if [ -x ${K3S_BINARY_PATH} ]; then ${K3S_BINARY_PATH} --version 2>/dev/null | head -n 1; fi`;

export async function installedVersion(host: Host): Promise<K3sVersion | null> {
  const r = await host.exec(versionProbe, { allowFailure: true, timeoutMs: 30_000 });
  return r.code === 0 ? parseK3sVersion(r.stdout) : null;
}

export interface NodeVersion {
  name: string;
  role: 'server' | 'agent';
  /** What runs there now; null when k3s is not installed (a new node: nothing to check). */
  version: K3sVersion | null;
  /** Dotted path of the host in the cluster file. */
  path: string;
}

/**
 * Downgrades, skipped minors and agents newer than the servers, per node,
 * each with the way out. Nothing when the target version is not pinned
 * (a local binary without k3s.version: its version is unknown here).
 */
export function upgradeProblems(targetText: string | undefined, nodes: NodeVersion[]): Problem[] {
  const target = parseK3sVersion(targetText);
  if (!target) return [];
  const out: Problem[] = [];
  for (const n of nodes) {
    const v = n.version;
    if (!v) continue;
    if (compareVersions(v, target) > 0) {
      out.push(
        n.role === 'agent'
          ? {
              severity: 'error',
              path: 'k3s.version',
              message: `${n.name} runs k3s ${v.text}, newer than the ${target.text} the servers would run: a kubelet must never be newer than the API server, and k3s does not downgrade`,
              hint: `set k3s.version to ${v.text} or newer (the servers are upgraded first), or reinstall ${n.name} (k8s-ha node remove ${n.name}, then add it back)`,
            }
          : {
              severity: 'error',
              path: 'k3s.version',
              message: `${n.name} runs k3s ${v.text}, and the cluster file says ${target.text}: k3s does not support downgrades (the datastore may already hold newer objects)`,
              hint: `put k3s.version back to ${v.text} (or newer); to go back to ${target.text}, restore a backup taken while the cluster ran it (k8s-ha restore)`,
            },
      );
      continue;
    }
    if (v.major === target.major && target.minor - v.minor > 1) {
      const next = `v${v.major}.${v.minor + 1}`;
      out.push({
        severity: 'error',
        path: 'k3s.version',
        message: `${n.name} runs k3s ${v.text}, and the cluster file says ${target.text}: that skips ${target.minor - v.minor - 1} minor version${target.minor - v.minor - 1 === 1 ? '' : 's'}, and Kubernetes upgrades one minor version at a time`,
        hint: `upgrade through each minor: set k3s.version to the latest ${next}.x+k3sN release, apply, then the next minor, up to ${target.text}`,
      });
    } else if (v.major !== target.major) {
      out.push({ severity: 'error', path: 'k3s.version', message: `${n.name} runs k3s ${v.text}; ${target.text} is another major version`, hint: 'upgrade one minor version at a time' });
    }
  }
  return out;
}

/** A Node as an upgrade sees it. */
export interface NodeState {
  name: string;
  ready: boolean;
  unschedulable: boolean;
  kubelet: string;
  /** k8s-ha cordoned it for an upgrade (CORDON_ANNOTATION) and has not uncordoned it yet. */
  cordonedByUs: boolean;
}

/**
 * Why the Node does not yet count as back after a restart (null: it does).
 * With `want` (an upgrade) its kubelet must report that version: the Ready
 * condition alone still shows the old kubelet's last heartbeat for up to
 * the node monitor's grace period (40 s) after it stopped, and a lab's
 * k3s (like k3s) tells systemd READY once the Node object exists, before the
 * new kubelet has posted its status.
 */
export function nodeNotBack(n: NodeState | undefined, name: string, want: K3sVersion | null): string | null {
  if (!n) return `node ${name} is not registered`;
  if (want) {
    const v = parseK3sVersion(n.kubelet);
    if (!v || compareVersions(v, want) !== 0) return `node ${name} still reports kubelet ${n.kubelet || '(none)'}, not ${want.text}: the new kubelet has not posted its status yet`;
  }
  return n.ready ? null : `node ${name} is not Ready`;
}

/** Set on a Node k8s-ha cordons, so a re-run after a failure uncordons it (and never one the user cordoned). */
export const CORDON_ANNOTATION = 'k8s-ha.io/cordoned-for';

/** `kubectl get nodes -o json` through one server; null when no server's API answers. */
export async function readNodes(servers: Host[]): Promise<NodeState[] | null> {
  for (const h of servers) {
    const r = await h.exec(sh`${kubectlArgs('get', 'nodes', '-o', 'json')}`, { allowFailure: true, timeoutMs: 20_000 }).catch(() => null);
    if (!r || r.code !== 0) continue;
    try {
      const doc = JSON.parse(r.stdout) as { items?: { metadata: { name: string; annotations?: Record<string, string> }; spec?: { unschedulable?: boolean }; status?: { conditions?: { type: string; status: string }[]; nodeInfo?: { kubeletVersion?: string } } }[] };
      return (doc.items ?? []).map((n) => ({
        name: n.metadata.name,
        ready: n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
        unschedulable: n.spec?.unschedulable === true,
        kubelet: n.status?.nodeInfo?.kubeletVersion ?? '',
        cordonedByUs: n.metadata.annotations?.[CORDON_ANNOTATION] !== undefined,
      }));
    } catch {
      continue;
    }
  }
  return null;
}

/** How many agents `upgrade.agentBatch` means for `total` agents (a percentage rounds down, at least one). */
export function agentBatchSize(spec: number | `${number}%`, total: number): number {
  if (typeof spec === 'number') return Math.max(1, spec);
  return Math.max(1, Math.floor((total * Number(spec.slice(0, -1))) / 100));
}
