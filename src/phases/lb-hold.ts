import type { Change, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { hostsWithRole, type Cluster } from '../spec/cluster.js';
import { HAPROXY_ADMIN_SOCKET, HAPROXY_BACKEND, HAPROXY_CFG_PATH } from '../render/haproxy.js';
import { LB_HOLD_PATH, LBCHECK_STATE_PATH, parseHeld } from '../render/lbcheck.js';
import { NGINX_CONF_PATH } from '../render/nginx.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { systemctl } from '../transport/os.js';
import { K3S_API_PORT } from './infra-common.js';
import { LB_CONTAINER_CONF, lbDesired, lbUnit } from './loadbalancer.js';

/**
 * Holding a k3s server out of the API load balancer, on every load-balancer
 * host (both of a keepalived pair), while k8s-ha restarts it (an upgrade, a
 * setting) or removes it: the one way k8s-ha does it. The servers phase
 * holds a server before its restart and releases it once its /readyz and
 * its Node are ready again; node removal holds it before its k3s stops and
 * releases the hold once the host is uninstalled (a server of that name added
 * back later must not be rendered down).
 *
 * How, by load balancer (FACTS, "The API load balancer"):
 * - nginx (package or container): the upstream is rendered with the server
 *   marked `down` and nginx reloads. A reload is graceful: new workers take
 *   new connections with the new upstream, the old ones finish the
 *   connections they hold. k8s-ha-lbcheck reads the hold file and keeps a
 *   held server `down` whatever its checks say.
 * - HAProxy: the admin socket sets the server to `drain` (no new
 *   connections, existing ones go on), then `maint` once they ended or the
 *   bound passed; no reload. haproxy.cfg is rewritten with the server
 *   `disabled` (checked, not reloaded), so a later reload keeps it out.
 * Then the connections the load balancer still holds to the server get
 * `waits.lbDrain` to end on their own (short API calls do); whatever is left
 * (watches, which never end by themselves) is closed, as HAProxy's
 * on-marked-down shutdown-sessions does, so clients reconnect through
 * another server before this one goes away under them.
 *
 * The hold file (LB_HOLD_PATH, one server name a line) records what k8s-ha
 * holds on that host: the load-balancer phase renders with it (a re-apply
 * never undoes a hold), and a run cut off between hold and release finds
 * it and releases the server once it is ready.
 */

export { LB_HOLD_PATH, parseHeld } from '../render/lbcheck.js';

/** A server as the load balancer knows it. */
export interface LbServer {
  name: string;
  address: string;
}

/** The servers k8s-ha holds out of this load-balancer host (empty when none). */
export async function readHeld(lb: Host): Promise<string[]> {
  return parseHeld((await lb.readFile(LB_HOLD_PATH))?.toString('utf8'));
}

/** The load-balancer hosts of the cluster. */
export function lbHostNames(c: Cluster): string[] {
  return hostsWithRole(c, 'loadbalancer').map((h) => h.name);
}

/** Which load-balancer hosts hold `server` now, per their hold files; an unreachable one is left out (its phase reports it). */
export async function heldOn(ctx: RunContext<Deployment>, server: string): Promise<string[]> {
  const out: string[] = [];
  for (const lb of lbHostNames(ctx.cluster.spec)) {
    try {
      if ((await readHeld(await ctx.host(lb))).includes(server)) out.push(lb);
    } catch {
      // reported by the load-balancer phase
    }
  }
  return out;
}

/** Files that carry the upstream list, by flavour (what a hold rewrites). */
const UPSTREAM_FILES = new Set([NGINX_CONF_PATH, LBCHECK_STATE_PATH, LB_CONTAINER_CONF, HAPROXY_CFG_PATH]);

/** The HAProxy admin socket, one command (socat is installed with HAProxy for `status`). */
function haproxyCommand(cmd: string) {
  return sh`echo ${cmd} | socat stdio unix-connect:${HAPROXY_ADMIN_SOCKET}`;
}

/** Servers marked `down` in nginx's upstream state file (by k8s-ha-lbcheck or a hold). */
function downIn(state: string | undefined): string[] {
  return [...(state ?? '').matchAll(/ down; # (\S+)$/gm)].map((m) => m[1]!);
}

/**
 * Rewrites the upstream files for `held` (each checked by its daemon before
 * it goes live); true when one changed. `before`: what was held until now,
 * so the marks k8s-ha-lbcheck made itself (a failing server) are kept.
 */
async function writeUpstreams(c: Cluster, lb: Host, held: string[], before: string[]): Promise<boolean> {
  let changed = false;
  const checker = downIn((await lb.readFile(LBCHECK_STATE_PATH))?.toString('utf8')).filter((n) => !before.includes(n));
  for (const f of lbDesired(c, lb.name, [...new Set([...held, ...checker])]).files ?? []) {
    if (!UPSTREAM_FILES.has(f.path)) continue;
    const cur = (await lb.readFile(f.path))?.toString('utf8');
    if (cur === f.content) continue;
    await lb.writeFile(f.path, f.content, { mode: f.mode ?? 0o644, ...(f.check ? { check: f.check } : {}) });
    changed = true;
  }
  return changed;
}

async function writeHeld(lb: Host, held: string[]): Promise<void> {
  if (held.length) await lb.writeFile(LB_HOLD_PATH, held.map((n) => `${n}\n`).join(''), { mode: 0o644 });
  else await lb.removeFile(LB_HOLD_PATH);
}

/** Established connections from this host to the server's API port. */
function connectionCount(s: LbServer) {
  return sh`ss -Htn state established dst ${s.address} dport = :${String(K3S_API_PORT)} | wc -l`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits up to `boundMs` for the load balancer's connections to the server
 * to end (at least 1 s, so a just-reloaded nginx's old workers have stopped
 * taking new ones), then closes what is left. Returns how many were closed.
 */
async function drainConnections(lb: Host, s: LbServer, boundMs: number, pollMs: number): Promise<number> {
  const t0 = Date.now();
  const count = async () => Number((await lb.exec(connectionCount(s), { allowFailure: true, timeoutMs: 10_000 })).stdout.trim()) || 0;
  let left = await count();
  while (Date.now() - t0 < Math.max(1000, boundMs) && (left > 0 || Date.now() - t0 < 1000)) {
    await sleep(pollMs);
    left = await count();
  }
  if (left > 0) {
    await lb.exec(sh`ss -K dst ${s.address} dport = :${String(K3S_API_PORT)}`, { allowFailure: true, timeoutMs: 10_000 });
  }
  return left;
}

export interface HoldOptions {
  /** How long connections get to end on their own. Default: waits.lbDrain of the cluster file. */
  drainMs?: number;
  /** Default 250 ms. */
  pollMs?: number;
}

function how(c: Cluster): string {
  if (c.loadBalancer.kind === 'haproxy' && c.loadBalancer.deploy !== 'docker') return 'HAProxy: drain, then maint, through its admin socket';
  return `${lbUnit(c)}: marked down, graceful reload`;
}

/**
 * One change per load-balancer host that takes `server` out of the API
 * upstreams there (in the order of the cluster file), each waiting for its
 * connections to end. The server keeps running: only new connections stop.
 */
export function holdChanges(ctx: RunContext<Deployment>, server: LbServer, opts: HoldOptions = {}): Change[] {
  const c = ctx.cluster.spec;
  const drainMs = opts.drainMs ?? c.waits.lbDrainMs;
  const pollMs = opts.pollMs ?? 250;
  return lbHostNames(c).map((lb) => ({
    action: 'update',
    target: { host: lb, object: `lb-upstream/${server.name}` },
    before: 'in service',
    after: 'held out',
    summary: `take ${server.name} out of the API load balancer on ${lb} (${how(c)}; its connections get ${drainMs / 1000} s to end, then are closed)`,
    apply: async (h) => {
      const before = await readHeld(h);
      const held = parseHeld([...before, server.name].join('\n'));
      // The hold file first: the nginx checker then keeps it down from its next round on.
      await writeHeld(h, held);
      const changed = await writeUpstreams(c, h, held, before);
      const haproxy = c.loadBalancer.kind === 'haproxy' && c.loadBalancer.deploy !== 'docker';
      if (haproxy) await h.exec(haproxyCommand(`set server ${HAPROXY_BACKEND}/${server.name} state drain`), { timeoutMs: 10_000 });
      else if (changed) await h.exec(systemctl('reload', lbUnit(c)), { timeoutMs: 60_000 });
      let closed = await drainConnections(h, server, drainMs, pollMs);
      // k8s-ha-lbcheck may have put its own view back between our write and its next
      // round (it re-reads the hold file every round): make sure the mark held.
      if (!haproxy && (await writeUpstreams(c, h, held, before))) {
        await h.exec(systemctl('reload', lbUnit(c)), { timeoutMs: 60_000 });
        closed += await drainConnections(h, server, drainMs, pollMs);
      }
      if (haproxy) await h.exec(haproxyCommand(`set server ${HAPROXY_BACKEND}/${server.name} state maint`), { timeoutMs: 10_000 });
      ctx.events({ type: 'info', phase: 'k3s-servers', host: lb, message: `${server.name} is out of the load balancer on ${lb}${closed ? ` (${closed} connection${closed === 1 ? '' : 's'} still open after ${drainMs / 1000} s were closed)` : ''}` });
    },
  }));
}

/** One change per load-balancer host in `on` (default: all) that puts `server` back into the API upstreams. */
export function releaseChanges(ctx: RunContext<Deployment>, server: LbServer, on: string[] = lbHostNames(ctx.cluster.spec)): Change[] {
  const c = ctx.cluster.spec;
  return on.map((lb) => ({
    action: 'update',
    target: { host: lb, object: `lb-upstream/${server.name}` },
    before: 'held out',
    after: 'in service',
    summary: `put ${server.name} back into the API load balancer on ${lb}`,
    apply: async (h) => {
      const before = await readHeld(h);
      const held = before.filter((n) => n !== server.name);
      await writeHeld(h, held);
      const changed = await writeUpstreams(c, h, held, before);
      if (c.loadBalancer.kind === 'haproxy' && c.loadBalancer.deploy !== 'docker') {
        await h.exec(haproxyCommand(`set server ${HAPROXY_BACKEND}/${server.name} state ready`), { timeoutMs: 10_000 });
      } else if (changed) {
        await h.exec(systemctl('reload', lbUnit(c)), { timeoutMs: 60_000 });
      }
    },
  }));
}
