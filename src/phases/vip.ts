import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import { galeraNodes, hostsWithRole, type Cluster } from '../spec/cluster.js';
import { KEEPALIVED_CONF_PATH, keepalivedSecrets, renderKeepalivedConf } from '../render/keepalived.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import type { Secret } from '../util/secret.js';
import { LB_ALIVE_SCRIPT_PATH, lbAliveScriptTimeoutS, renderLbAliveScript } from '../render/lb-alive.js';
import { apiUpstreams, renderProblem, tabLines } from './infra-common.js';
import { HAPROXY_ADMIN_SOCKET } from '../render/haproxy.js';
import { VIP_HOLD_SCRIPT_PATH, VIP_RELEASE_SCRIPT_PATH, renderVipHoldScript, renderVipReleaseScript } from '../render/haproxy-datastore.js';
import { renderNginxTakeoverScript } from '../render/nginx-datastore.js';

/**
 * How long the track script waits for an answer through the local listener
 * (and then from the servers directly). A LAN TLS handshake takes
 * milliseconds; a hung load balancer costs this much before it counts as failed.
 */
export const LB_ALIVE_TIMEOUT_MS = 500;

/**
 * The second LB host's priority is this much lower (cluster.ts: "the second
 * gets 50 less"), so the first one holds the virtual IP whenever it is healthy.
 */
const PRIORITY_STEP = 50;

/** keepalived's desired state on one LB host; throws RenderInputError on inputs it cannot render. */
export function vipDesired(c: Cluster, hostName: string, prefixLength: number, vrrpPass: Secret): Desired {
  const vip = c.loadBalancer.virtualIP;
  if (!vip) return {};
  const lbs = hostsWithRole(c, 'loadbalancer');
  const i = lbs.findIndex((h) => h.name === hostName);
  const self = lbs[i];
  if (!self) return {};
  // VRRP v3 (a sub-second advert interval) has no authentication; v2 uses
  // the first 8 characters of the password (FACTS).
  const v2 = vip.advertIntervalMs % 1000 === 0;
  const alive = {
    listenPort: c.loadBalancer.port,
    path: c.loadBalancer.healthCheck.path,
    servers: apiUpstreams(c),
    timeoutMs: LB_ALIVE_TIMEOUT_MS,
    // The load balancer's own check puts a server that just started in service after `rise` passes.
    closedGraceS: Math.ceil((c.loadBalancer.healthCheck.rise * c.loadBalancer.healthCheck.intervalMs) / 1000) + 1,
  };
  // Galera: taking the VIP starts the datastore hold-down (HAProxy: marks its
  // hold table; nginx: records the time, k8s-ha-lbcheck holds from it).
  const g = c.datastore.galera;
  const datastoreHold = g !== undefined && g.writerHoldMs > 0;
  const holdScript = c.loadBalancer.kind === 'haproxy' ? renderVipHoldScript(HAPROXY_ADMIN_SOCKET) : renderNginxTakeoverScript();
  // HAProxy with Galera: giving the VIP up closes the datastore sessions
  // through this host (renderVipReleaseScript).
  const release = g !== undefined && c.loadBalancer.kind === 'haproxy' ? renderVipReleaseScript(HAPROXY_ADMIN_SOCKET, galeraNodes(c).map((h) => h.name)) : undefined;
  const conf = renderKeepalivedConf({
    hostName,
    routerId: vip.routerId,
    interface: vip.interface,
    virtualAddress: vip.address,
    prefixLength,
    priority: Math.max(1, vip.priority - PRIORITY_STEP * i),
    peers: lbs.filter((h) => h.name !== hostName).map((h) => h.address),
    selfAddress: self.address,
    unicast: vip.unicast,
    advertIntervalMs: vip.advertIntervalMs,
    preempt: vip.preempt,
    ...(v2 ? { authPass: vrrpPass } : {}),
    checkScript: LB_ALIVE_SCRIPT_PATH,
    checkTimeoutS: lbAliveScriptTimeoutS(alive),
    ...(datastoreHold ? { notifyMaster: VIP_HOLD_SCRIPT_PATH } : {}),
    ...(release !== undefined ? { notifyRelease: VIP_RELEASE_SCRIPT_PATH } : {}),
  });
  return {
    // curl runs the track script's TLS requests.
    packages: ['keepalived', 'curl'],
    files: [
      // Before the config that names it: keepalived refuses a missing script.
      { path: LB_ALIVE_SCRIPT_PATH, content: renderLbAliveScript(alive), mode: 0o755 },
      ...(datastoreHold ? [{ path: VIP_HOLD_SCRIPT_PATH, content: holdScript, mode: 0o755 }] : []),
      ...(release !== undefined ? [{ path: VIP_RELEASE_SCRIPT_PATH, content: release, mode: 0o755 }] : []),
      // 0600: it holds the VRRP password.
      { path: KEEPALIVED_CONF_PATH, content: conf, mode: 0o600, secretsIn: keepalivedSecrets, check: (tmp) => sh`keepalived --config-test -f ${tmp}` },
    ],
    // keepalived re-reads its config on SIGHUP (the unit's reload) without
    // dropping the address it holds; the script is run afresh every second.
    services: [{ unit: 'keepalived', reloadOn: [KEEPALIVED_CONF_PATH] }],
  };
}

export interface VipObserved {
  state: ObservedState;
  /** Prefix length of this host's address on the VIP interface; null when the interface is missing. */
  prefixLength: number | null;
}

/** `ip -o -4 addr show dev IF`: the prefix of `address` on it, or of its first address. */
export function parsePrefix(stdout: string, address: string): number | null {
  let first: number | null = null;
  for (const f of tabLines(stdout.replace(/ +/g, '\t'))) {
    const i = f.indexOf('inet');
    const cidr = i >= 0 ? f[i + 1] : undefined;
    if (!cidr) continue;
    const [ip, len] = cidr.split('/');
    const n = Number(len);
    if (!Number.isInteger(n)) continue;
    if (ip === address) return n;
    first ??= n;
  }
  return first;
}

function desiredOrNull(ctx: RunContext<Deployment>, hostName: string, prefix: number | null): Desired | null {
  if (prefix === null) return null;
  try {
    return vipDesired(ctx.cluster.spec, hostName, prefix, ctx.cluster.secrets.vrrpPass);
  } catch {
    return null;
  }
}

/**
 * keepalived on both load-balancer hosts sharing the API virtual IP. A
 * track script that asks for /ping through the local listener moves the
 * address away from a host whose load balancer stopped serving (stopped,
 * killed or hung).
 */
export const vipPhase: Phase<Deployment, VipObserved> = {
  id: 'vip',
  title: 'API virtual IP',
  targets: (ctx) => (ctx.cluster.spec.loadBalancer.virtualIP ? hostsWithRole(ctx.cluster.spec, 'loadbalancer').map((h) => h.name) : []),

  async observe(ctx, host: Host): Promise<VipObserved> {
    const vip = ctx.cluster.spec.loadBalancer.virtualIP;
    const self = ctx.cluster.spec.hosts.find((h) => h.name === host.name);
    let prefixLength: number | null = null;
    if (vip) {
      const r = await host.exec(sh`ip -o -4 addr show dev ${vip.interface}`, { allowFailure: true, sudo: false });
      if (r.code === 0) prefixLength = parsePrefix(r.stdout, self?.address ?? host.address);
    }
    // Observe with any prefix: the packages, service and file paths do not depend on it.
    const d = desiredOrNull(ctx, host.name, prefixLength ?? 32) ?? {};
    return { state: await observeDesired(host, d), prefixLength };
  },

  diff(ctx, hostName, o): Change[] {
    const d = desiredOrNull(ctx, hostName, o.prefixLength);
    return d ? diffDesired(d, o.state, ctx.secrets) : [];
  },

  preflight(ctx, observed): Problem[] {
    const vip = ctx.cluster.spec.loadBalancer.virtualIP;
    if (!vip) return [];
    const problems: Problem[] = [];
    for (const [name, o] of observed) {
      if (o.prefixLength === null) {
        problems.push({
          severity: 'error',
          path: 'loadBalancer.virtualIP.interface',
          message: `${name} has no IPv4 address on interface ${vip.interface}, which must carry the virtual IP`,
          hint: `set loadBalancer.virtualIP.interface to the interface holding ${name}'s address (see \`ip -4 addr\` on ${name})`,
        });
        continue;
      }
      try {
        vipDesired(ctx.cluster.spec, name, o.prefixLength, ctx.cluster.secrets.vrrpPass);
      } catch (e) {
        problems.push(renderProblem(e, (f) => `loadBalancer.virtualIP${f ? '.' + f : ''}`, 'fix loadBalancer.virtualIP in the cluster file'));
      }
    }
    return problems;
  },
};
