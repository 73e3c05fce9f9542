import {
  RenderInputError,
  assertListenerAndServers,
  assertInt,
  assertIp,
  assertName,
  assertPath,
  assertPort,
  byString,
  durationText,
  hostPort,
  managedHeader,
} from './common.js';
import type { LbUpstream } from './nginx.js';

/** Where haproxy.cfg is installed (Debian packaging). */
export const HAPROXY_CFG_PATH = '/etc/haproxy/haproxy.cfg';
/**
 * The admin socket the status command reads upstream states from, e.g.
 * `echo 'show servers state k3s_servers' | socat - UNIX:/run/haproxy/admin.sock`.
 * /run/haproxy is created by Debian's package (tmpfiles.d) for its own socket.
 */
export const HAPROXY_ADMIN_SOCKET = '/run/haproxy/admin.sock';
/** Backend name in the rendered file, for `show servers state <backend>`. */
export const HAPROXY_BACKEND = 'k3s_servers';

export interface HaproxyHealthCheck {
  /**
   * HTTP path probed over TLS on each server. '/ping' answers 200 "pong"
   * without authentication on k3s; '/readyz' is 401 for anonymous clients
   * unless the apiserver allows it, so it would mark every server down.
   */
  path: string;
  /** Time between checks (HAProxy `inter`, default 2s). */
  intervalMs: number;
  /** Consecutive failures that mark a server down (HAProxy default 3). */
  fall: number;
  /** Consecutive successes that bring it back (HAProxy default 2). */
  rise: number;
  /**
   * CA that signed the servers' certificates (k3s server CA), to verify the
   * check's TLS. Default: no verification; the check proves liveness, it
   * carries no credentials.
   */
  caFile?: string;
}

export interface HaproxyLbInput {
  listenPort: number;
  /** Address to bind. Default: all addresses (see NginxLbInput.listenAddress about VIPs). */
  listenAddress?: string;
  servers: LbUpstream[];
  /** Per-attempt connect timeout (`timeout connect`). */
  connectTimeoutMs: number;
  /** Idle timeout of a proxied connection (`timeout client/server/tunnel`). */
  idleTimeoutMs: number;
  healthCheck: HaproxyHealthCheck;
  /** Global connection limit. Default: HAProxy's own (derived from the file descriptor limit). */
  maxConnections?: number;
  /** An HTTP stats page, e.g. {address: '127.0.0.1', port: 8404}. Default: none. */
  statsListener?: { address: string; port: number };
  /** A Galera datastore routed to one writer (datastore-endpoint). Default: none. */
  datastore?: HaproxyDatastoreInput;
  /**
   * Servers (by name) held out of the backend (`disabled`: maintenance), as
   * k8s-ha sets them at run time through the admin socket before it
   * restarts or removes one (phases/lb-hold.ts), so a reload keeps them out.
   * Default: none.
   */
  down?: readonly string[];
}

/** Backend of the datastore listener, for `show servers state` and `show table`. */
export const HAPROXY_DATASTORE_BACKEND = 'k3s_datastore';

export interface HaproxyDatastoreInput {
  /** Port the k3s servers' datastore-endpoint names (3306). */
  listenPort: number;
  /**
   * The data nodes, the preferred writer first: it is the only non-backup
   * server, so every connection goes to it while it is up; the others are
   * backups, tried in this order.
   */
  nodes: LbUpstream[];
  /** Port of each node's Galera HTTP check (200 = Synced and Primary). */
  checkPort: number;
  intervalMs: number;
  fall: number;
  rise: number;
  /** Send a PROXY protocol v2 header so MariaDB sees the k3s server's address. Default: false. */
  proxyProtocol?: boolean;
  /**
   * This load balancer's name and every load balancer's address: HAProxy's
   * `peers` keep the writer (the stick table) across a reload, whose old
   * process still holds kine's sessions on it, and share it with the other
   * load balancer so a virtual IP failover keeps the writer.
   */
  peers: { self: string; all: { name: string; address: string }[] };
}

/** TCP port HAProxy's peers use between the load balancers (and old/new process at a reload). */
export const HAPROXY_PEER_PORT = 10000;

function validateDatastore(input: HaproxyLbInput): void {
  const d = input.datastore;
  if (d === undefined) return;
  assertPort('datastore.listenPort', d.listenPort);
  if (d.listenPort === input.listenPort) throw new RenderInputError('datastore.listenPort', 'must differ from listenPort');
  if (!Array.isArray(d.nodes) || d.nodes.length < 2) throw new RenderInputError('datastore.nodes', 'a Galera datastore needs at least two data nodes');
  d.nodes.forEach((n, i) => {
    if (typeof n.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(n.name)) throw new RenderInputError(`datastore.nodes[${i}].name`, `must be letters, digits, '.', '_' or '-', got ${JSON.stringify(n.name)}`);
    assertIp(`datastore.nodes[${i}].address`, n.address);
    assertPort(`datastore.nodes[${i}].port`, n.port);
  });
  if (new Set(d.nodes.map((n) => n.name)).size !== d.nodes.length) throw new RenderInputError('datastore.nodes', 'node names must be unique');
  assertPort('datastore.checkPort', d.checkPort);
  durationText('datastore.intervalMs', d.intervalMs);
  assertInt('datastore.fall', d.fall, 1, 100);
  assertInt('datastore.rise', d.rise, 1, 100);
  d.peers.all.forEach((p, i) => {
    assertName(`datastore.peers.all[${i}].name`, p.name);
    assertIp(`datastore.peers.all[${i}].address`, p.address);
  });
  if (!d.peers.all.some((p) => p.name === d.peers.self)) throw new RenderInputError('datastore.peers.self', `must be one of the peers, got ${JSON.stringify(d.peers.self)}`);
}

function validate(input: HaproxyLbInput): void {
  assertListenerAndServers(input);
  validateDatastore(input);
  durationText('connectTimeoutMs', input.connectTimeoutMs);
  durationText('idleTimeoutMs', input.idleTimeoutMs);
  const hc = input.healthCheck;
  // A path is one HAProxy word: no spaces, quotes, '#' or '\'.
  if (typeof hc?.path !== 'string' || !/^\/[A-Za-z0-9._~/?=&%-]*$/.test(hc.path)) {
    throw new RenderInputError('healthCheck.path', `must be a URL path of letters, digits and . _ ~ / ? = & % -, got ${JSON.stringify(hc?.path)}`);
  }
  durationText('healthCheck.intervalMs', hc.intervalMs);
  assertInt('healthCheck.fall', hc.fall, 1, 100);
  assertInt('healthCheck.rise', hc.rise, 1, 100);
  if (hc.caFile !== undefined) assertPath('healthCheck.caFile', hc.caFile);
  if (input.maxConnections !== undefined) assertInt('maxConnections', input.maxConnections, 1, 10_000_000);
  if (input.statsListener !== undefined) {
    assertIp('statsListener.address', input.statsListener.address);
    assertPort('statsListener.port', input.statsListener.port);
    if (input.statsListener.port === input.listenPort) throw new RenderInputError('statsListener.port', 'must differ from listenPort');
  }
}

/**
 * One writer (FACTS "Datastore HA with kine"): kine needs every server to
 * write to the same Galera node. `backup` alone is not enough: when the
 * preferred node comes back, new connections would go to it while the old
 * ones stay on the backup (two writers). The one-entry stick table under a
 * constant key holds the current writer, so HAProxy moves only when that
 * node is marked down, and never back by itself.
 */
function datastoreLines(d: HaproxyDatastoreInput, listenAddress: string | undefined): string[] {
  const bind = listenAddress === undefined ? `:${d.listenPort}` : hostPort(listenAddress, d.listenPort);
  const l: string[] = [];
  l.push('peers k8s_ha_lbs');
  for (const p of [...d.peers.all].sort((a, b) => byString(a.name, b.name))) l.push(`    peer ${p.name} ${hostPort(p.address, HAPROXY_PEER_PORT)}`);
  l.push('');
  l.push('frontend k3s_datastore_in');
  l.push(`    bind ${bind}`);
  l.push('    option tcplog');
  l.push(`    default_backend ${HAPROXY_DATASTORE_BACKEND}`);
  l.push('');
  l.push(`backend ${HAPROXY_DATASTORE_BACKEND}`);
  l.push('    # Galera, one writer: the first node, the others only when it is down.');
  l.push('    # The check asks each node whether it is Synced in the primary component');
  l.push('    # (k8s-ha-galera-check); a plain TCP or mysql check passes on a Donor or a');
  l.push('    # node cut off in a non-primary component.');
  l.push('    option httpchk GET /');
  l.push('    http-check expect status 200');
  l.push('    # The current writer under one constant key: HAProxy moves it only when');
  l.push('    # that node is marked down, never back by itself (no nopurge: with it the');
  l.push('    # full table refuses the new writer and the old one gets writes back).');
  l.push('    # Kept across reloads and shared with the other load balancer by the peers.');
  l.push('    stick-table type integer size 1 peers k8s_ha_lbs');
  l.push('    stick on int(1)');
  l.push('    # The writer marked down: close its sessions (kine reconnects through the');
  l.push('    # new writer) so no server keeps writing to a node the others have left.');
  const proxy = d.proxyProtocol ? ' send-proxy-v2' : '';
  l.push(`    default-server check port ${d.checkPort} inter ${durationText('datastore.intervalMs', d.intervalMs)} fall ${d.fall} rise ${d.rise} on-marked-down shutdown-sessions${proxy}`);
  d.nodes.forEach((n, i) => l.push(`    server ${n.name} ${hostPort(n.address, n.port)}${i === 0 ? '' : ' backup'}`));
  return l;
}

/**
 * A complete /etc/haproxy/haproxy.cfg: a `mode tcp` frontend on the API port
 * and a backend of k3s servers with an active TLS HTTP check. Check it with
 * `haproxy -c -f FILE` before moving it into place.
 */
export function renderHaproxyCfg(input: HaproxyLbInput): string {
  validate(input);
  const hc = input.healthCheck;
  const servers = [...input.servers].sort((a, b) => byString(a.name, b.name));
  const bind = input.listenAddress === undefined ? `:${input.listenPort}` : hostPort(input.listenAddress, input.listenPort);
  const idle = durationText('idleTimeoutMs', input.idleTimeoutMs);
  const verify = hc.caFile === undefined ? 'verify none' : `verify required ca-file ${hc.caFile}`;

  const l: string[] = [];
  l.push(managedHeader('#', 'haproxy.cfg: TCP load balancer for the k3s API servers.'));
  l.push('global');
  l.push('    log /dev/log local0');
  l.push('    chroot /var/lib/haproxy');
  l.push('    user haproxy');
  l.push('    group haproxy');
  l.push('    # Read by `k8s-ha status` (show servers state) and usable for drain/ready.');
  l.push(`    stats socket ${HAPROXY_ADMIN_SOCKET} mode 660 level admin`);
  l.push('    stats timeout 30s');
  if (input.datastore !== undefined) {
    l.push('    # This process\'s name among the peers below (the datastore writer).');
    l.push(`    localpeer ${input.datastore.peers.self}`);
  }
  if (input.maxConnections !== undefined) l.push(`    maxconn ${input.maxConnections}`);
  l.push('');
  l.push('defaults');
  l.push('    mode tcp');
  l.push('    log global');
  l.push('    option dontlognull');
  l.push('    # retries is 3 by default (stated here); redispatch is off by default, so');
  l.push('    # every retry went to the same dead server. Measured with a killed server:');
  l.push('    # 10 of 78 new connections failed without these two lines, none with them.');
  l.push('    retries 3');
  l.push('    # `redispatch 1`: every retry may pick another server, not only the last');
  l.push('    # one, so a connect that times out on a cut-off server is retried on a');
  l.push('    # live one after one connect timeout, before the check marks it down.');
  l.push('    option redispatch 1');
  l.push('    # Per attempt; short so a blackholed server costs little before the retry.');
  l.push(`    timeout connect ${durationText('connectTimeoutMs', input.connectTimeoutMs)}`);
  l.push('    # Long idle timeouts: watches, exec, port-forward and logs -f streams sit');
  l.push('    # quiet for minutes and must not be cut. In TCP mode `timeout tunnel`');
  l.push('    # takes over once the connection is established.');
  l.push(`    timeout client ${idle}`);
  l.push(`    timeout server ${idle}`);
  l.push(`    timeout tunnel ${idle}`);
  l.push('');
  l.push('frontend k3s_api');
  l.push(`    bind ${bind}`);
  l.push('    option tcplog');
  l.push(`    default_backend ${HAPROXY_BACKEND}`);
  l.push('');
  l.push(`backend ${HAPROXY_BACKEND}`);
  l.push('    balance roundrobin');
  l.push('    # A plain TCP check passes while a frozen apiserver still completes');
  l.push('    # handshakes in the kernel; an HTTP check over TLS does not. k3s answers');
  l.push('    # /ping with 200 "pong" without authentication; anonymous /readyz is 401.');
  l.push(`    option httpchk GET ${hc.path}`);
  l.push('    http-check expect status 200');
  l.push(`    # Defaults inter 2s fall 3 rise 2; faster detection bounds the damage of`);
  l.push('    # a hung server to about inter x fall. on-marked-down closes the sessions');
  l.push('    # it held so clients reconnect (and re-watch) through a healthy server.');
  l.push(
    `    default-server check check-ssl ${verify} inter ${durationText('healthCheck.intervalMs', hc.intervalMs)} fall ${hc.fall} rise ${hc.rise} on-marked-down shutdown-sessions`,
  );
  for (const s of servers) l.push(`    server ${s.name} ${hostPort(s.address, s.port)}${input.down?.includes(s.name) ? ' disabled' : ''}`);
  if (input.datastore !== undefined) l.push('', ...datastoreLines(input.datastore, input.listenAddress));
  if (input.statsListener !== undefined) {
    l.push('');
    l.push('listen stats');
    l.push('    mode http');
    l.push(`    bind ${hostPort(input.statsListener.address, input.statsListener.port)}`);
    l.push('    timeout client 30s');
    l.push('    stats enable');
    l.push('    stats uri /');
    l.push('    stats refresh 5s');
  }
  return l.join('\n') + '\n';
}
