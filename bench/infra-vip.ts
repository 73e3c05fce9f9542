import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Lab } from '../lab/index.js';
import type { BenchResult } from './result.js';
import { outage, sample, untilServed, type Attempt } from './infra-lab.js';

/**
 * Virtual-IP failover as clients see it: a new TLS connection through the
 * VIP every 50 ms while the primary load balancer (infra) fails in one of
 * four ways, against the ≤ 1 s goal. Shared by bench/infra.ts and
 * test/lab/infra.test.ts. Traffic goes only to lab addresses.
 */

export type LbFailure = 'stopped' | 'killed' | 'hung' | 'machine dead';
export const LB_FAILURES: readonly LbFailure[] = ['stopped', 'killed', 'hung', 'machine dead'];

const EVERY_MS = 50;
const FAIL_AT_MS = 1_000;

/** Waits until `holder` holds the VIP, it serves, and keepalived had time to settle (both instances past their rise). */
export async function vipSettledOn(lab: Lab, holder: string, deadlineMs = 30_000): Promise<void> {
  const vip = lab.virtualIP!;
  const t0 = Date.now();
  for (;;) {
    const r = await lab.exec(holder, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'host0'], { allowFailure: true });
    if (r.stdout.includes(`inet ${vip}/`) && (await untilServed(vip, 2_000)) !== null) break;
    if (Date.now() - t0 > deadlineMs) throw new Error(`${holder} does not hold the virtual IP ${vip} within ${deadlineMs / 1000} s`);
    await sleep(250);
  }
  // rise 2 at interval 1 on the peer too: give both track scripts time to pass.
  await sleep(3_000);
}

/** Breaks the primary LB's daemon (unit `unit`) or machine. */
async function fail(lab: Lab, unit: string, f: LbFailure): Promise<void> {
  if (f === 'stopped') await lab.exec('infra', ['systemctl', 'stop', unit]);
  else if (f === 'killed') await lab.exec('infra', ['systemctl', 'kill', '--signal=SIGKILL', unit]);
  else if (f === 'hung') await lab.exec('infra', ['systemctl', 'kill', '--signal=SIGSTOP', unit]);
  else await lab.stop('infra', { hard: true });
}

async function restore(lab: Lab, unit: string, f: LbFailure): Promise<void> {
  if (f === 'machine dead') await lab.start('infra');
  else if (f === 'hung') await lab.exec('infra', ['systemctl', 'kill', '--signal=SIGCONT', unit]);
  else await lab.exec('infra', ['sh', '-c', `systemctl reset-failed ${unit} 2>/dev/null; systemctl start ${unit}`]);
}

/** A new TLS connection and GET on the lab bridge takes a few ms; this much is a stall. */
const SLOW_MS = 500;

/**
 * Seconds from the first new connection that failed (or stalled) to the
 * first one after which every new connection succeeded promptly (0 when none failed): the failover a
 * client sees. It starts at the first failure, not at the command that
 * caused it (which takes a lab round trip to act).
 */
export function failoverS(attempts: Attempt[], stalls = true): number {
  // Slower than SLOW_MS counts too: after a machine dies, a connection to the
  // VIP waits for SYN retransmits until the peer answers ARP for it.
  const bad = attempts.filter((a) => !a.ok || (stalls && a.ms > SLOW_MS));
  if (!bad.length) return 0;
  const first = Math.min(...bad.map((a) => a.at));
  const lastBad = Math.max(...bad.map((a) => a.at));
  const next = attempts.find((a) => a.at > lastBad);
  const end = next ? next.at : lastBad + EVERY_MS;
  return Math.round((end - first) / 10) / 100;
}

export interface FailoverReading {
  failure: LbFailure;
  failoverS: number;
  /** The same counting only connections that failed (refused, reset, timed out), not slow ones. */
  failedForS: number;
  /** New connections that failed or stalled (> 0.5 s). */
  failed: number;
  total: number;
  /** Includes connections that hung on the failed host until their timeout. */
  outageS: number;
}

/**
 * A TLS connection through the VIP held open, as kubectl watches and the
 * agents' connections are: nginx's graceful stop waits for such connections
 * (Debian's unit: QUIT, then TERM after 5 s), which is what made a process
 * check hold the address for seconds after the listener closed.
 */
function holdConnection(address: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: address, port: 6443, rejectUnauthorized: false }, () => resolve(s));
    s.on('error', reject);
    s.setTimeout(5_000, () => s.destroy(new Error('no TLS handshake within 5 s')));
  });
}

/** One failure of the primary LB while sampling the VIP; the primary is repaired and holds the VIP again afterwards. */
export async function measureVipFailover(lab: Lab, unit: string, f: LbFailure): Promise<FailoverReading> {
  await vipSettledOn(lab, 'infra');
  const held = await holdConnection(lab.virtualIP!);
  held.setTimeout(0);
  held.on('error', () => {}); // cut by the failure: expected
  let attempts: Attempt[];
  try {
    attempts = await sample(lab.virtualIP!, { everyMs: EVERY_MS, durationMs: 6_000, failAtMs: FAIL_AT_MS, timeoutMs: 2_000, onFail: () => fail(lab, unit, f) });
  } finally {
    held.destroy();
    await restore(lab, unit, f);
  }
  const o = outage(attempts.map((a) => ({ ...a, ok: a.ok && a.ms <= SLOW_MS })));
  // Preempt: the VIP returns to infra once its check passes again.
  await vipSettledOn(lab, 'infra', 60_000);
  return { failure: f, failoverS: failoverS(attempts), failedForS: failoverS(attempts, false), failed: o.failed, total: o.total, outageS: o.outageS };
}

/** The bench rows for one load-balancer kind. */
export async function benchVipFailover(lab: Lab, kind: 'nginx' | 'haproxy', advert: string): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  for (const f of LB_FAILURES) {
    const r = await measureVipFailover(lab, kind, f);
    out.push({
      name: `VIP failover, ${kind} ${f} on the primary LB (advert ${advert})`,
      value: r.failoverS,
      unit: 's',
      target: 1,
      note: `${r.failed} of ${r.total} new connections failed or stalled > 0.5 s; outage incl. connections hung on the failed host until their 2 s timeout ${r.outageS} s`,
    });
  }
  return out;
}
