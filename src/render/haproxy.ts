import {
  RenderInputError,
  assertListenerAndServers,
  assertInt,
  assertIp,
  assertPath,
  assertPort,
  byString,
  durationText,
  hostPort,
  managedHeader,
} from './common.js';
import type { LbUpstream } from './nginx.js';
import { datastoreLines, validateDatastore, type HaproxyDatastoreInput } from './haproxy-datastore.js';

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

export { HAPROXY_DATASTORE_BACKEND, HAPROXY_PEER_PORT, HAPROXY_WRITER_TABLE, type HaproxyDatastoreInput } from './haproxy-datastore.js';

function validate(input: HaproxyLbInput): void {
  assertListenerAndServers(input);
  validateDatastore(input.datastore, input.listenPort);
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
