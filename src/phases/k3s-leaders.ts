import type { Change, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import type { FlagValue } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { kubectlArgs, seconds, waitUntil } from './k3s-health.js';

/**
 * Before a drain: a kube-controller-manager and a kube-scheduler actually
 * lead. Each k3s server runs one of each; they elect a leader through a Lease
 * in kube-system (coordination.k8s.io/v1: holderIdentity `host_uuid`,
 * renewTime, leaseDurationSeconds 15, renewed every 2 s). Right after the
 * server that led restarted (an upgrade's servers go first), no one leads
 * until its Lease expires and another server's takes it: meanwhile the
 * EndpointSlice controller does not drop an evicted pod from its Services,
 * the ReplicaSet controller makes no replacement and the disruption
 * controller does not update PodDisruptionBudgets, and no scheduler places a
 * pod (CI saw a drained pod killed while its Service still listed it). So the
 * drain waits until both Leases have a live holder (waits.leaderElection).
 *
 * Live, decided twice, as client-go's own elector does (it never trusts a
 * renewTime written by another machine's clock; it watches the record
 * change): renewTime within a third of the lease of the API server's host
 * clock (the live leader renews every 2 s), or else a renewTime that moved
 * since the previous read, which proves a renewing holder whatever the clocks.
 */

export const LEADER_LEASES = ['kube-controller-manager', 'kube-scheduler'] as const;
export type LeaderLease = (typeof LEADER_LEASES)[number];

/** A renewTime this far ahead of the reader's clock is taken as "now" (clock granularity), beyond it as skew. */
const FUTURE_SLACK_MS = 1000;

/** One Lease as read: null fields where the API left them out. */
export interface LeaseView {
  name: string;
  holder: string | null;
  /** renewTime, ms since the epoch (MicroTime, µs precision). */
  renewMs: number | null;
  leaseDurationS: number | null;
}

export type Leadership = { leading: true; holder: string; text: string } | { leading: false; text: string };

/** kube-system Leases (`get leases -o json`) by name. */
export function parseLeases(json: string): Map<string, LeaseView> {
  const out = new Map<string, LeaseView>();
  const doc = JSON.parse(json) as { items?: { metadata?: { name?: string }; spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number } }[] };
  for (const it of doc.items ?? []) {
    const name = it.metadata?.name;
    if (!name) continue;
    const renew = it.spec?.renewTime ? Date.parse(it.spec.renewTime) : NaN;
    out.set(name, { name, holder: it.spec?.holderIdentity || null, renewMs: Number.isFinite(renew) ? renew : null, leaseDurationS: it.spec?.leaseDurationSeconds ?? null });
  }
  return out;
}

const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** How recent a live holder's renewTime is: a third of the lease (5 s of kube's 15 s, with renewals every 2 s), at least 2 s. */
export function freshWithinMs(l: Pick<LeaseView, 'leaseDurationS'>): number {
  return Math.max(2000, ((l.leaseDurationS ?? 15) * 1000) / 3);
}

/**
 * Pure: whether `lease` shows a leader now. `nowMs` is the clock of the host
 * whose API was read, taken after the read; `before` is the same Lease at
 * the previous read of this wait (absent on the first).
 */
export function leadership(name: string, lease: LeaseView | undefined, nowMs: number, reader: string, before?: LeaseView): Leadership {
  const id = `Lease kube-system/${name}`;
  if (!lease) return { leading: false, text: `${name}: no ${id} yet (none of its instances has been elected)` };
  if (!lease.holder) return { leading: false, text: `${name}: ${id} has no holder (its leader let it go on exit; another instance takes it)` };
  if (lease.renewMs === null) return { leading: false, text: `${name}: ${id} held by ${lease.holder} has no renewTime` };
  const age = nowMs - lease.renewMs;
  const fresh = freshWithinMs(lease);
  if (age >= -FUTURE_SLACK_MS && age <= fresh) return { leading: true, holder: lease.holder, text: `${name} held by ${lease.holder}, renewed ${s1(Math.max(0, age))} ago` };
  // Renewed since the last read: a live holder, whatever the clocks say.
  const moved = before && before.renewMs !== null && (before.renewMs !== lease.renewMs || before.holder !== lease.holder);
  const skew = age < 0 ? `${s1(-age)} ahead of` : `${s1(age)} behind`;
  if (moved) return { leading: true, holder: lease.holder, text: `${name} held by ${lease.holder}, renewed since the last read (its renewTime is ${skew} ${reader}'s clock: the servers' clocks differ, check their time sync)` };
  if (age < 0) return { leading: false, text: `${name}: ${id} held by ${lease.holder} has a renewTime ${s1(-age)} ahead of ${reader}'s clock; waiting to see it renewed` };
  return { leading: false, text: `${name}: ${id} held by ${lease.holder}, last renewed ${s1(age)} ago (lease ${lease.leaseDurationS ?? '?'} s): its holder stopped renewing (its server restarted?); another server's takes it once it expires` };
}

/**
 * The Leases to wait for: both, except one whose leader election the
 * cluster file turns off (`kube-controller-manager-arg: [leader-elect=false]`):
 * that one never renews a Lease.
 */
export function leasesToWaitFor(serverArgs: Record<string, FlagValue>): LeaderLease[] {
  return LEADER_LEASES.filter((name) => {
    const v = serverArgs[`${name}-arg`];
    const args = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
    return !args.some((a) => /^(--)?leader-elect=false$/.test(a.trim()));
  });
}

/** One round trip: kube-system's Leases, then this host's clock (`rc=`, `now=` seconds, then kubectl's output). */
export function leaseProbe(): ReturnType<typeof sh> {
  return sh`out=$(${kubectlArgs('get', 'leases', '-n', 'kube-system', '-o', 'json')} 2>&1); rc=$?; printf 'rc=%s\nnow=%s\n%s\n' "$rc" "$(date +%s.%3N)" "$out"`;
}

export type LeaseRead = { ok: true; nowMs: number; leases: Map<string, LeaseView> } | { ok: false; error: string };

export function parseLeaseProbe(stdout: string): LeaseRead {
  const m = /^rc=(\d+)\nnow=([\d.]+)\n([\s\S]*)$/.exec(stdout);
  if (!m) return { ok: false, error: `unexpected answer: ${stdout.trim().slice(0, 200) || '(nothing)'}` };
  const body = m[3]!.trim();
  if (m[1] !== '0') return { ok: false, error: body.split('\n').slice(-2).join(' ') || `kubectl exit ${m[1]}` };
  try {
    return { ok: true, nowMs: Math.round(Number(m[2]) * 1000), leases: parseLeases(body) };
  } catch {
    return { ok: false, error: `not JSON: ${body.slice(0, 200)}` };
  }
}

/**
 * The step before a drain, run on `via` (a server): wait, bounded, until the
 * leaders lead. On timeout it fails rather than warn and drain (unlike the
 * Galera writer wait, where either writer works): without a controller-manager
 * an evicted pod is neither replaced nor dropped from its Services, and a
 * PodDisruptionBudget's count goes stale, so a drain then can take a
 * workload down — the node stays uncordoned and the rollout stops where it
 * is, as `kubectl drain` stops at a budget; re-running apply resumes.
 */
export function leaderWaitChange(ctx: RunContext<Deployment>, phase: string, node: string, via: string, pollIntervalMs: number): Change | null {
  const wanted = leasesToWaitFor(ctx.cluster.spec.k3s.serverArgs);
  if (!wanted.length) return null;
  const timeoutMs = ctx.cluster.spec.waits.leaderElectionMs;
  return {
    action: 'run',
    target: { host: via, object: `Lease/kube-system/${wanted.join(',')}` },
    summary: `wait until ${wanted.join(' and ')} ${wanted.length === 1 ? 'has a leader' : 'have leaders'} (a Lease holder renewing; up to ${seconds(timeoutMs)}) before ${node} is drained`,
    apply: async (h) => waitForLeaders(ctx, phase, h, node, wanted, timeoutMs, pollIntervalMs),
  };
}

async function waitForLeaders(ctx: RunContext<Deployment>, phase: string, h: Host, node: string, wanted: readonly LeaderLease[], timeoutMs: number, pollIntervalMs: number): Promise<void> {
  const start = Date.now();
  let before = new Map<string, LeaseView>();
  let seen: Leadership[] = [];
  const last = await waitUntil({ timeoutMs, intervalMs: pollIntervalMs, signal: ctx.signal }, async () => {
    const r = parseLeaseProbe((await h.exec(leaseProbe(), { allowFailure: true, timeoutMs: 20_000 })).stdout);
    if (!r.ok) {
      ctx.events({ type: 'wait', phase, host: h.name, message: `reading the Leases: ${r.error}` });
      return `reading the Leases on ${h.name}: ${r.error}`;
    }
    seen = wanted.map((name) => leadership(name, r.leases.get(name), r.nowMs, h.name, before.get(name)));
    before = r.leases;
    const waiting = seen.filter((x) => !x.leading);
    if (!waiting.length) return null;
    const why = waiting.map((x) => x.text).join('; ');
    ctx.events({ type: 'wait', phase, host: h.name, message: `waiting for leaders before draining ${node}: ${why}` });
    return why;
  });
  const took = s1(Date.now() - start);
  if (last === null) {
    ctx.events({ type: 'info', phase, host: h.name, message: `leaders before draining ${node}: ${seen.map((x) => x.text).join('; ')} (waited ${took})` });
    return;
  }
  throw new Error(
    `no leader after ${seconds(timeoutMs)}: ${last.last}. ${node} is not drained: without a leading kube-controller-manager an evicted pod is neither replaced nor dropped from its Services, and without a kube-scheduler it is not placed. ` +
      `Fix: look at \`journalctl -u k3s | grep -i -e leader -e lease\` on the servers (a server whose k3s restarts in a loop, or clocks far apart), then run apply again (it resumes here); raise waits.leaderElection if the servers are slow to elect`,
  );
}
