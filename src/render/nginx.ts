import {
  RenderInputError,
  assertListenerAndServers,
  assertInt,
  assertPath,
  byString,
  durationText,
  hostPort,
  managedHeader,
} from './common.js';
import { nginxDatastoreLines, validateNginxDatastore, type NginxDatastoreInput } from './nginx-datastore.js';

/** Where nginx.conf is installed on the LB host (Debian packaging). */
export const NGINX_CONF_PATH = '/etc/nginx/nginx.conf';

/** One k3s server behind the load balancer. */
export interface LbUpstream {
  /** Node name; orders the list and labels the line. */
  name: string;
  /** IP address (preferred) or DNS name of the server. */
  address: string;
  /** The server's apiserver port, normally 6443. */
  port: number;
}

export interface NginxLbInput {
  /** Port the LB listens on, normally 6443. */
  listenPort: number;
  /**
   * Address to bind. Default: all IPv4 addresses. Binding a keepalived VIP
   * on the host that does not hold it needs `net.ipv4.ip_nonlocal_bind=1`,
   * or nginx fails to start on the backup LB; listening on all addresses
   * avoids that.
   */
  listenAddress?: string;
  servers: LbUpstream[];
  /** Per-attempt connect timeout (nginx default 60s; a few seconds wanted). */
  connectTimeoutMs: number;
  /** Idle timeout of a proxied connection (nginx default 10m; watches and `logs -f` need longer). */
  idleTimeoutMs: number;
  /** Failed connects within failTimeoutMs that mark a server down (nginx default 1). */
  maxFails: number;
  /** Window for maxFails, and how long a failed server is then skipped (nginx default 10s). */
  failTimeoutMs: number;
  /** Connections per worker, both client and upstream sides count. Default 4096. */
  workerConnections?: number;
  /**
   * Who runs nginx. 'debian' (default): the Debian package, which loads the
   * stream module from /etc/nginx/modules-enabled and runs workers as
   * www-data. 'official-image': the `nginx` Docker image, which has stream
   * built in and a `nginx` user and no www-data.
   */
  flavor?: 'debian' | 'official-image';
  /**
   * Take the upstream's server lines from this file instead of listing them
   * inline. Set when k8s-ha-lbcheck (render/lbcheck.ts) runs beside nginx:
   * it rewrites the file to mark servers that fail its check `down`.
   * Default: the servers are listed inline.
   */
  upstreamInclude?: string;
  /**
   * Servers (by name) held out of the upstream: marked `down`, so new
   * connections go to the others while k8s-ha restarts or removes them
   * (phases/lb-hold.ts). Default: none.
   */
  down?: readonly string[];
  /**
   * A Galera datastore routed to one writer (render/nginx-datastore.ts): a
   * second upstream and listener whose servers k8s-ha-lbcheck marks. Default: none.
   */
  datastore?: NginxDatastoreInput;
}

const DEFAULT_WORKER_CONNECTIONS = 4096;

function validate(input: NginxLbInput): void {
  assertListenerAndServers(input);
  assertInt('maxFails', input.maxFails, 0, 100);
  durationText('connectTimeoutMs', input.connectTimeoutMs);
  durationText('idleTimeoutMs', input.idleTimeoutMs);
  durationText('failTimeoutMs', input.failTimeoutMs);
  if (input.workerConnections !== undefined) assertInt('workerConnections', input.workerConnections, 64, 1_000_000);
  if (input.flavor !== undefined && input.flavor !== 'debian' && input.flavor !== 'official-image') {
    throw new RenderInputError('flavor', `must be 'debian' or 'official-image', got ${JSON.stringify(input.flavor)}`);
  }
  if (input.upstreamInclude !== undefined) assertPath('upstreamInclude', input.upstreamInclude);
  if (input.datastore !== undefined) {
    validateNginxDatastore(input.datastore, input.listenPort);
    // Only the checker marks the datastore's nodes: without it every node would take writes.
    if (input.upstreamInclude === undefined) throw new RenderInputError('datastore', 'a Galera datastore behind nginx needs k8s-ha-lbcheck (upstreamInclude)');
  }
}

/** The servers of the upstream, sorted by name; shared with the active checker's state file. */
export function sortedUpstreams(servers: readonly LbUpstream[]): LbUpstream[] {
  return [...servers].sort((a, b) => byString(a.name, b.name));
}

/** One `server` line of the upstream without its `;`, so a checker can append ` down`. */
export function nginxServerDirective(s: LbUpstream, maxFails: number, failTimeoutMs: number): string {
  return `server ${hostPort(s.address, s.port)} max_fails=${maxFails} fail_timeout=${durationText('failTimeoutMs', failTimeoutMs)}`;
}

/**
 * A complete /etc/nginx/nginx.conf for a dedicated LB host: a TCP (stream)
 * proxy in front of the k3s servers' 6443 and nothing else (no http block,
 * so nginx-light without its default site serves nothing but the API).
 * Check it with `nginx -t -c FILE` before moving it into place; do not pass
 * `-p`: Debian's module snippets load `modules/...so` relative to the
 * compiled-in prefix.
 */
export function renderNginxConf(input: NginxLbInput): string {
  validate(input);
  const flavor = input.flavor ?? 'debian';
  const workerConnections = input.workerConnections ?? DEFAULT_WORKER_CONNECTIONS;
  const servers = sortedUpstreams(input.servers);
  const listen = input.listenAddress === undefined ? String(input.listenPort) : hostPort(input.listenAddress, input.listenPort);
  // Bound the whole retry loop: every server tried once at the connect
  // timeout each, so a client is never held longer than that.
  const nextUpstreamTimeout = durationText('connectTimeoutMs', input.connectTimeoutMs * servers.length);

  const lines: string[] = [];
  lines.push(managedHeader('#', 'nginx.conf: TCP load balancer for the k3s API servers.'));
  lines.push(flavor === 'debian' ? 'user www-data;' : '# The official image has no www-data user; its workers run as nginx.\nuser nginx;');
  lines.push('worker_processes auto;');
  lines.push('pid /run/nginx.pid;');
  lines.push('error_log /var/log/nginx/error.log;');
  lines.push('# Every proxied connection uses two descriptors (client and upstream); the');
  lines.push("# usual soft limit of 1024 would cap worker_connections below what's set.");
  lines.push(`worker_rlimit_nofile ${workerConnections * 2};`);
  if (flavor === 'debian') {
    lines.push("# Debian builds the stream module as a dynamic module (libnginx-mod-stream);");
    lines.push("# without this include nginx rejects stream {} as an unknown directive.");
    lines.push('include /etc/nginx/modules-enabled/*.conf;');
  }
  lines.push('');
  lines.push('events {');
  lines.push('    # Default 512. Counts both sides of each proxied connection, and every');
  lines.push('    # agent, kubelet and controller holds long-lived watches.');
  lines.push(`    worker_connections ${workerConnections};`);
  lines.push('}');
  lines.push('');
  lines.push('stream {');
  lines.push('    upstream k3s_servers {');
  lines.push(`        # Passive checks${input.upstreamInclude === undefined ? ' only' : ''} (open-source nginx): a server is skipped for`);
  lines.push(`        # fail_timeout after max_fails failed connects within fail_timeout.`);
  if (input.upstreamInclude === undefined) {
    lines.push('        # A server that accepts TCP but is frozen or not ready is NOT detected.');
    if (servers.length === 1) lines.push('        # With a single server nginx ignores max_fails and fail_timeout.');
    for (const s of servers) lines.push(`        ${nginxServerDirective(s, input.maxFails, input.failTimeoutMs)}${input.down?.includes(s.name) ? ' down' : ''}; # ${s.name}`);
  } else {
    lines.push('        # A server that accepts TCP but is frozen or not ready is caught by');
    lines.push('        # k8s-ha-lbcheck (a TLS /ping check), which marks it `down` in this file');
    lines.push('        # and reloads nginx.');
    if (servers.length === 1) lines.push('        # With a single server nginx ignores max_fails and fail_timeout.');
    lines.push(`        include ${input.upstreamInclude};`);
  }
  lines.push('    }');
  lines.push('');
  lines.push('    server {');
  lines.push(`        listen ${listen};`);
  lines.push('        proxy_pass k3s_servers;');
  lines.push('        # Default 60s: a blackholed server would stall every new connection');
  lines.push('        # for a minute before the next server is tried.');
  lines.push(`        proxy_connect_timeout ${durationText('connectTimeoutMs', input.connectTimeoutMs)};`);
  lines.push('        # Default 10m: idle watches, exec, port-forward and logs -f streams');
  lines.push('        # would be cut after ten quiet minutes.');
  lines.push(`        proxy_timeout ${durationText('idleTimeoutMs', input.idleTimeoutMs)};`);
  lines.push('        # The default, stated: a failed connect moves on to the next server.');
  lines.push('        proxy_next_upstream on;');
  lines.push('        # Default 0 (unbounded): try each server at most once, and give up');
  lines.push('        # after one connect timeout per server.');
  lines.push(`        proxy_next_upstream_tries ${servers.length};`);
  lines.push(`        proxy_next_upstream_timeout ${nextUpstreamTimeout};`);
  lines.push('    }');
  if (input.datastore !== undefined) {
    const o = { connectTimeoutMs: input.connectTimeoutMs, idleTimeoutMs: input.idleTimeoutMs, ...(input.listenAddress !== undefined ? { listenAddress: input.listenAddress } : {}) };
    lines.push('', ...nginxDatastoreLines(input.datastore, o));
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
