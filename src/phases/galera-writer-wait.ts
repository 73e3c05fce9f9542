import type { RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { hostsWithRole } from '../spec/cluster.js';
import { HAPROXY_DATASTORE_BACKEND, parseWriterTable } from '../render/haproxy-datastore.js';
import { SHOW_WRITER } from './galera-writer.js';

/**
 * The first writer of a new cluster. HAProxy makes the writer whichever node
 * is up when the first datastore connection comes, and keeps it (it never
 * fails back). Right after a join the preferred node may still be marked down
 * — it was the joiner's donor (Desynced, so its check answered 503) and needs
 * `rise` good checks again — and a k3s server started then makes the other
 * node the writer (CI saw it: infra2 after a bare apply). So after a join,
 * while no load balancer has chosen a writer yet, apply waits (bounded) until
 * every HAProxy load balancer has the preferred node up, before the k3s
 * servers start. Once a writer is chosen there is nothing to wait for.
 */

/** `show servers state <backend>` rows -> the servers whose operational state is 2 (running). */
export function serversUp(stdout: string, backend: string = HAPROXY_DATASTORE_BACKEND): string[] {
  const up: string[] = [];
  for (const line of stdout.split('\n')) {
    // be_id be_name srv_id srv_name srv_addr srv_op_state ...
    const f = line.trim().split(/\s+/);
    if (f[1] === backend && f[5] === '2' && f[3] !== undefined) up.push(f[3]);
  }
  return up;
}

export type WriterReadiness = { ready: true; why: string } | { ready: false; waiting: string };

/** One load balancer's answer to SHOW_WRITER -> whether the first connection would reach `preferred`. */
export function writerReadiness(lb: string, stdout: string, preferred: string): WriterReadiness {
  const named = parseWriterTable(stdout);
  if (named !== null) return { ready: true, why: `${lb} already writes to ${named}` };
  if (serversUp(stdout).includes(preferred)) return { ready: true, why: `${lb} has ${preferred} up` };
  return { ready: false, waiting: `${lb} has ${preferred} down (up: ${serversUp(stdout).join(', ') || 'none'})` };
}

const WAIT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wait until every HAProxy load balancer would send a first connection to the
 * preferred writer, or has chosen a writer already. Bounded: after WAIT_MS it
 * warns (the cluster works with either node as the writer) and goes on.
 */
export async function waitForPreferredWriter(ctx: RunContext<Deployment>, host: string): Promise<void> {
  const c = ctx.cluster.spec;
  const g = c.datastore.galera;
  if (!g || c.loadBalancer.kind !== 'haproxy') return;
  const lbs = hostsWithRole(c, 'loadbalancer');
  const until = Date.now() + WAIT_MS;
  let last: string[] = [];
  for (;;) {
    const answers = await Promise.all(
      lbs.map(async (lb): Promise<WriterReadiness> => {
        try {
          const r = await (await ctx.host(lb.name)).exec(SHOW_WRITER, { allowFailure: true, timeoutMs: 10_000 });
          return r.code === 0 ? writerReadiness(lb.name, r.stdout, g.writer) : { ready: false, waiting: `${lb.name}: HAProxy's admin socket did not answer (${r.stderr.trim() || `exit ${r.code}`})` };
        } catch (e) {
          return { ready: false, waiting: `${lb.name}: ${e instanceof Error ? e.message : String(e)}` };
        }
      }),
    );
    last = answers.flatMap((a) => (a.ready ? [] : [a.waiting]));
    if (last.length === 0) return;
    if (Date.now() > until) {
      ctx.events({ type: 'warning', host, phase: 'galera', message: `after ${WAIT_MS / 1000} s the load balancers still do not all have the preferred writer ${g.writer} up (${last.join('; ')}): the first k3s connection picks the writer among the nodes up, and it stays there` });
      return;
    }
    await sleep(1000);
  }
}
