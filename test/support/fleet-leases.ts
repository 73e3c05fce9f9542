import { createHash } from 'node:crypto';

/**
 * The leader election of kube-controller-manager and kube-scheduler as their
 * Leases in kube-system show it (every k3s server runs one of each): the
 * first ready server's instances take both; a holder renews while its
 * k3s runs; a holder whose k3s restarted stops renewing — the controller
 * manager keeps its Lease until it expires, the scheduler lets it go on exit
 * (holder emptied, lease 1 s; client-go's ReleaseOnCancel) — and another
 * ready server's instance (another server's when one is up) takes it over
 * after `takeoverReads` reads.
 *
 * Time is the model's own clock (the fleet has none): it moves 1 s per read,
 * and a holder's restart puts its last renewal 20 s back (a k3s restart and
 * its readiness wait take longer than the lease on real machines), so a
 * Lease read after the restart looks as stale as it would.
 */
export interface LeaseOptions {
  /** Reads that still see a restarted holder's Lease before another ready server takes it. Default 0. */
  takeoverReads?: number;
  /** The controller manager's Lease is never taken over (its instances cannot elect): the wait runs out. */
  neverTakeover?: boolean;
  /** How far each server's clock is ahead of the model's (negative: behind), ms. Default 0. */
  skewMs?: Record<string, number>;
}

const NAMES = ['kube-controller-manager', 'kube-scheduler'] as const;

interface Held {
  host: string;
  /** The k3s run (start) of the holder's server that holds it: its instance's identity. */
  run: number;
  identity: string;
  renewMs: number;
  durationS: number;
  transitions: number;
  staleReads: number;
  released: boolean;
}

export class FakeLeases {
  clockMs = Date.parse('2026-12-01T18:00:00.000Z');
  readonly #held = new Map<string, Held>();
  /** Every read: `via holder-of-kcm holder-of-scheduler`, for assertions. */
  readonly reads: string[] = [];

  /** Mutable: a test lets the election recover. */
  constructor(public opts: LeaseOptions = {}) {}

  /** A server's k3s became ready (run `run`): its instances take the Leases no one holds (a new cluster). */
  serverUp(host: string, run: number): void {
    for (const name of NAMES) {
      if (this.#held.has(name)) continue;
      this.#held.set(name, { host, run, identity: identity(host, run, name), renewMs: this.clockMs + (this.opts.skewMs?.[host] ?? 0), durationS: 15, transitions: 0, staleReads: 0, released: false });
    }
  }

  /**
   * One `get leases -n kube-system` on `via`; `runOf(host)` is the k3s run of
   * a ready server (null: its k3s is not ready), `servers` the candidates in
   * order. Returns that host's clock (s) and the Lease list.
   */
  read(via: string, servers: string[], runOf: (host: string) => number | null): { now: number; json: string } {
    this.clockMs += 1000;
    const at = (host: string) => this.clockMs + (this.opts.skewMs?.[host] ?? 0);
    for (const name of NAMES) {
      const h = this.#held.get(name);
      const live = h && !h.released && runOf(h.host) === h.run;
      if (h && live) {
        h.renewMs = at(h.host);
        continue;
      }
      if (h && !h.released && h.staleReads === 0) {
        // The first read since its k3s restarted: its last renewal was a restart ago.
        h.renewMs = Math.min(h.renewMs, this.clockMs - 20_000);
        if (name === 'kube-scheduler') Object.assign(h, { released: true, identity: '', durationS: 1 });
      }
      if (h) h.staleReads++;
      const wait = this.opts.takeoverReads ?? 0;
      if (h && (h.staleReads <= wait || (name === 'kube-controller-manager' && this.opts.neverTakeover))) continue;
      // Another server's instance, the one that restarted only when it is the only one up.
      const up = servers.filter((s) => runOf(s) !== null);
      const next = up.find((s) => s !== h?.host) ?? up[0];
      if (next === undefined) continue;
      const run = runOf(next)!;
      this.#held.set(name, { host: next, run, identity: identity(next, run, name), renewMs: at(next), durationS: 15, transitions: (h?.transitions ?? -1) + 1, staleReads: 0, released: false });
    }
    this.reads.push(`${via} ${NAMES.map((n) => this.#held.get(n)?.identity || '-').join(' ')}`);
    const items = NAMES.flatMap((name) => {
      const h = this.#held.get(name);
      if (!h) return [];
      return [{ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: 'kube-system' }, spec: { holderIdentity: h.identity, leaseDurationSeconds: h.durationS, leaseTransitions: h.transitions, renewTime: new Date(h.renewMs).toISOString().replace('Z', '000Z') } }];
    });
    return { now: at(via) / 1000, json: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }) };
  }

  /** Who holds each Lease now (`-` for none). */
  holders(): Record<string, string> {
    return Object.fromEntries(NAMES.map((n) => [n, this.#held.get(n)?.identity || '-']));
  }
}

/** `hostname_uuid`, as kube-controller-manager and kube-scheduler name themselves (a new uuid each start). */
function identity(host: string, run: number, name: string): string {
  const h = createHash('sha256').update(`${host} ${run} ${name}`).digest('hex');
  return `${host}_${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The shell answer of k3s-leaders.ts's leaseProbe. */
export function leaseProbeAnswer(r: { now: number; json: string }): string {
  return `rc=0\nnow=${r.now.toFixed(3)}\n${r.json}\n`;
}
