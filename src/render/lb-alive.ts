import { RenderInputError, assertHost, assertInt, assertPort, hostPort, managedHeader } from './common.js';

/**
 * k8s-ha-lb-alive: keepalived's track script on a load-balancer host. It
 * checks what clients need — a TLS request through this host's own listener
 * answered — rather than that the daemon's process exists: nginx's graceful
 * stop keeps its processes alive for seconds after it closed the listener
 * (6.3 s of refused connections through the virtual IP on a lab with
 * `pgrep -x nginx`), and a hung (SIGSTOP) daemon's process exists while the
 * kernel still completes handshakes nobody serves.
 *
 * Three requests go through the local listener at once, so that one frozen
 * server behind it (which the load balancer's own checks take out within a
 * second or two) cannot fail the check. When all fail, the script asks the
 * servers directly: if
 * none answers either, the fault is not this host's and the peer could do no
 * better, so it keeps the address (the VIP must not vanish from both hosts
 * while the servers are down or not yet installed).
 */

export const LB_ALIVE_SCRIPT_PATH = '/usr/local/sbin/k8s-ha-lb-alive';

export interface LbAliveInput {
  /** The load balancer's port on this host (loadBalancer.port). */
  listenPort: number;
  /** HTTPS path every server answers with 2xx without credentials (k3s: /ping). */
  path: string;
  /** The k3s servers' API endpoints, asked directly when the listener fails. */
  servers: readonly { address: string; port: number }[];
  /** Each request's bound (curl --max-time): a hung listener fails after this. */
  timeoutMs: number;
  /**
   * Whole seconds the listener may take a connection and close it (it has
   * no server up yet) while a server answers directly, before this host
   * counts as failing: the load balancer's own check needs `rise` passes to
   * put a server that just started in service. Default 0 (fail at once).
   */
  closedGraceS?: number;
}

/** Where the script keeps, between runs, when its listener began closing connections that a server would answer. */
export const LB_ALIVE_CLOSED_SINCE = '/run/k8s-ha/lb-alive-closed-since';

// What may follow https://host:port in a single-quoted sh word and a URL.
const PATH = /^\/[A-Za-z0-9._~/-]*$/;

function validate(input: LbAliveInput): void {
  assertPort('listenPort', input.listenPort);
  if (typeof input.path !== 'string' || !PATH.test(input.path)) {
    throw new RenderInputError('path', `must be an absolute URL path of letters, digits and . _ ~ / -, got ${JSON.stringify(input.path)}`);
  }
  if (!Array.isArray(input.servers) || input.servers.length === 0) throw new RenderInputError('servers', 'at least one k3s server is needed');
  input.servers.forEach((s, i) => {
    assertHost(`servers[${i}].address`, s.address);
    assertPort(`servers[${i}].port`, s.port);
  });
  assertInt('timeoutMs', input.timeoutMs, 50, 10_000);
  if (input.closedGraceS !== undefined) assertInt('closedGraceS', input.closedGraceS, 0, 600);
}

/** keepalived's `timeout` for the script: both rounds of requests, rounded up to whole seconds, plus one. */
export function lbAliveScriptTimeoutS(input: Pick<LbAliveInput, 'timeoutMs'>): number {
  return Math.ceil((2 * input.timeoutMs) / 1000) + 1;
}

/** The script (install mode 0755, owned by root: keepalived's enable_script_security refuses others). */
export function renderLbAliveScript(input: LbAliveInput): string {
  validate(input);
  const url = (host: string, port: number) => `'https://${hostPort(host, port)}${input.path}'`;
  const servers = [...new Set(input.servers.map((s) => url(s.address, s.port)))].sort();
  const out: string[] = [];
  out.push('#!/bin/sh');
  out.push(managedHeader('#', "k8s-ha-lb-alive: keepalived's check that this load balancer serves clients.").trimEnd());
  out.push('# Exit 0: a TLS request through the local listener was answered (or no');
  out.push('# server answers at all, so moving the virtual IP would not help).');
  out.push('# Exit 1: the servers answer directly but not through this host.');
  out.push('set -u');
  out.push(`T=${input.timeoutMs / 1000}`);
  out.push(`GRACE=${input.closedGraceS ?? 0}`);
  out.push('# (tests point it elsewhere; keepalived runs the script with no such variable)');
  out.push(`SINCE=\${K8S_HA_LB_ALIVE_SINCE:-${LB_ALIVE_CLOSED_SINCE}}`);
  out.push('answered() { curl -gfsk --noproxy \'*\' --max-time "$T" -o /dev/null "$1" 2>/dev/null; }');
  out.push('# Three requests at once through the local listener: the load balancer');
  out.push('# spreads them over the servers, so one frozen server cannot fail them all');
  out.push('# (a hung or stopped load balancer fails every one).');
  out.push('pids=');
  out.push(`for i in 1 2 3; do answered ${url('127.0.0.1', input.listenPort)} & pids="$pids $!"; done`);
  out.push('# curl 35/52/56: the listener took the connection and closed it (no server');
  out.push('# up in it); 7 refused (stopped, killed) and 28 timed out (hung) are not that.');
  out.push('ok=1 closed=1; for p in $pids; do wait "$p"; rc=$?; [ "$rc" = 0 ] && ok=0; case $rc in 35|52|56) ;; *) closed=0 ;; esac; done');
  out.push('if [ "$ok" = 0 ]; then rm -f "$SINCE"; exit 0; fi');
  out.push('# Every server at once, so this costs one timeout, not one per server.');
  out.push('pids=');
  for (const s of servers) out.push(`answered ${s} & pids="$pids $!"`);
  out.push('up=0; for p in $pids; do wait "$p" && up=1; done');
  out.push('if [ "$up" = 0 ]; then rm -f "$SINCE"; exit 0; fi');
  out.push('# A server answers directly but not through this host. A listener that');
  out.push('# closes connections may just not have put a server that started a moment');
  out.push("# ago in service yet (its check's rise): both load balancers see the same,");
  out.push('# and failing at once would take the address off both. So: only GRACE s on.');
  out.push('if [ "$closed" = 1 ] && [ "$GRACE" -gt 0 ]; then');
  out.push('  now=$(date +%s)');
  out.push('  [ -s "$SINCE" ] || { mkdir -p "${SINCE%/*}"; echo "$now" > "$SINCE"; }');
  out.push('  [ $((now - $(cat "$SINCE"))) -lt "$GRACE" ] && exit 0');
  out.push('else');
  out.push('  rm -f "$SINCE"');
  out.push('fi');
  out.push('exit 1');
  return out.join('\n') + '\n';
}
