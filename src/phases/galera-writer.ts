import { galeraNodes, hostsWithRole, type Cluster } from '../spec/cluster.js';
import { HAPROXY_ADMIN_SOCKET } from '../render/haproxy.js';
import { HAPROXY_DATASTORE_BACKEND, HAPROXY_WRITER_TABLE, parseWriterTable } from '../render/haproxy-datastore.js';
import { NGINX_WRITER_PATH } from '../render/nginx-datastore.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { isSyncedPrimary, readGaleraNode } from './galera-state.js';

/**
 * Which Galera data node takes the writes now: the one every load balancer's
 * writer table names (HAProxy moves it only when that node is marked down),
 * or with nginx the one k8s-ha-lbcheck's writer file names.
 * For backup (dump from the writer) and status. `host` opens a host of the
 * cluster file (the engine's `host`, or any connection cache).
 */

/** The writer table and the server ids it refers to, in one CLI call (parseWriterTable reads it). */
export const SHOW_WRITER = sh`echo ${`show table ${HAPROXY_WRITER_TABLE}; show servers state ${HAPROXY_DATASTORE_BACKEND}`} | socat - ${`UNIX:${HAPROXY_ADMIN_SOCKET}`}`;

/** nginx: the writer k8s-ha-lbcheck chose (its writer file; empty before its first choice). */
export const SHOW_NGINX_WRITER = sh`cat ${NGINX_WRITER_PATH} 2>/dev/null || true`;

/** `SHOW_NGINX_WRITER`'s output -> a node of the cluster, or null. */
export function parseNginxWriter(stdout: string, nodes: readonly string[]): string | null {
  const name = stdout.trim();
  return nodes.includes(name) ? name : null;
}

/** The writer each load balancer names (null where it names none or cannot be asked). */
export async function writersByLoadBalancer(c: Cluster, host: (name: string) => Promise<Host>): Promise<{ lb: string; writer: string | null; error?: string }[]> {
  const nginx = c.loadBalancer.kind === 'nginx';
  const nodes = galeraNodes(c).map((h) => h.name);
  return Promise.all(
    hostsWithRole(c, 'loadbalancer').map(async (lb) => {
      try {
        const r = await (await host(lb.name)).exec(nginx ? SHOW_NGINX_WRITER : SHOW_WRITER, { allowFailure: true, timeoutMs: 10_000 });
        const writer = r.code !== 0 ? null : nginx ? parseNginxWriter(r.stdout, nodes) : parseWriterTable(r.stdout);
        return { lb: lb.name, writer, ...(r.code === 0 ? {} : { error: r.stderr.trim() || `exit ${r.code}` }) };
      } catch (e) {
        return { lb: lb.name, writer: null, error: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
}

/**
 * The writer: what the load balancers agree on; else (no connection made
 * yet, or they cannot be asked) the preferred writer if it is Synced in the
 * primary component, else the first such node; null when none is. Without
 * Galera: the only datastore host.
 */
export async function findWriter(c: Cluster, host: (name: string) => Promise<Host>): Promise<string | null> {
  const g = c.datastore.galera;
  if (!g) return hostsWithRole(c, 'datastore')[0]?.name ?? null;
  const named = [...new Set((await writersByLoadBalancer(c, host)).map((w) => w.writer).filter((w): w is string => w !== null))];
  const views = await Promise.all(galeraNodes(c).map((h) => readGaleraNode(h.name, () => host(h.name))));
  const fit = (n: string) => views.some((v) => v.name === n && isSyncedPrimary(v));
  if (named.length === 1 && fit(named[0]!)) return named[0]!;
  const order = [g.writer, ...galeraNodes(c).map((h) => h.name).filter((n) => n !== g.writer)];
  return order.find(fit) ?? null;
}
