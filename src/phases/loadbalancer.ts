import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import { galeraNodes, hostByName, hostsWithRole, type Cluster } from '../spec/cluster.js';
import { HAPROXY_CFG_PATH, renderHaproxyCfg, type HaproxyDatastoreInput } from '../render/haproxy.js';
import { NGINX_CONF_PATH, renderNginxConf } from '../render/nginx.js';
import {
  LBCHECK_SCRIPT_PATH,
  LBCHECK_STATE_PATH,
  LBCHECK_UNIT,
  LBCHECK_UNIT_PATH,
  LB_HOLD_PATH,
  normalizeUpstreamState,
  parseHeld,
  renderLbCheckScript,
  renderLbCheckUnit,
  renderUpstreamState,
} from '../render/lbcheck.js';
import { NGINX_DATASTORE_STATE_PATH, renderDatastoreState, type NginxDatastoreInput } from '../render/nginx-datastore.js';
import { LB_CONTAINER_DEFAULT_IMAGE, LB_DOCKER_UNIT_PATH, renderLbComposeFile, renderLbDockerUnit } from '../render/docker.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { systemctl } from '../transport/os.js';
import { apiUpstreams, renderProblem } from './infra-common.js';

/** Where the container flavour keeps its files on the LB host. */
export const LB_CONTAINER_DIR = '/etc/k8s-ha/lb';
export const LB_CONTAINER_CONF = `${LB_CONTAINER_DIR}/nginx.conf`;
export const LB_COMPOSE_FILE = `${LB_CONTAINER_DIR}/compose.yaml`;

/** The systemd unit that runs the load balancer, by how it is deployed. */
export function lbUnit(c: Cluster): string {
  if (c.loadBalancer.deploy === 'docker') return 'k8s-ha-lb';
  return c.loadBalancer.kind;
}

/** `loadBalancer.nginx.activeCheck` (default true): run k8s-ha-lbcheck beside nginx. */
export function nginxActiveCheck(c: Cluster): boolean {
  return c.loadBalancer.nginx.activeCheck;
}

/** Socket activation of MariaDB off: it holds *:3306 and would start a Galera node behind k8s-ha's back. */
export const MARIADB_SOCKET_OFF = { unit: 'mariadb.socket', enabled: false, running: false };

/** The checker stopped and disabled wherever it is not wanted (kind or deploy changed, or turned off). */
const CHECKER_OFF = { unit: LBCHECK_UNIT, enabled: false, running: false };

/**
 * The datastore listener with Galera: every data node behind one address,
 * the preferred writer first. `self` is this load balancer's host name.
 */
export function galeraRoute(c: Cluster, self: string): HaproxyDatastoreInput | undefined {
  const g = c.datastore.galera;
  if (!g) return undefined;
  const nodes = galeraNodes(c);
  const ordered = [...nodes.filter((n) => n.name === g.writer), ...nodes.filter((n) => n.name !== g.writer)];
  const hc = c.loadBalancer.healthCheck;
  return {
    listenPort: c.datastore.port,
    nodes: ordered.map((n) => ({ name: n.name, address: n.address, port: g.nodePort })),
    checkPort: g.checkPort,
    intervalMs: hc.intervalMs,
    fall: hc.fall,
    rise: hc.rise,
    holdMs: g.writerHoldMs,
    proxyProtocol: true,
    peers: { self, all: hostsWithRole(c, 'loadbalancer').map((h) => ({ name: h.name, address: h.address })), port: g.peerPort },
  };
}

/**
 * The same route for nginx (render/nginx-datastore.ts): k8s-ha-lbcheck keeps
 * one node up in the datastore upstream, and with a virtual IP only on the
 * load balancer that holds it.
 */
export function nginxGaleraRoute(c: Cluster): NginxDatastoreInput | undefined {
  const g = c.datastore.galera;
  if (!g) return undefined;
  const nodes = galeraNodes(c);
  const ordered = [...nodes.filter((n) => n.name === g.writer), ...nodes.filter((n) => n.name !== g.writer)];
  const vip = c.loadBalancer.virtualIP?.address;
  return {
    listenPort: c.datastore.port,
    nodes: ordered.map((n) => ({ name: n.name, address: n.address, port: g.nodePort })),
    checkPort: g.checkPort,
    holdMs: g.writerHoldMs,
    proxyProtocol: true,
    ...(vip !== undefined ? { virtualIP: vip } : {}),
  };
}

/**
 * The packages, files and service of the load balancer; throws
 * RenderInputError on inputs it cannot render. `held`: servers k8s-ha holds
 * out of this host's upstreams (phases/lb-hold.ts), rendered down/disabled.
 */
export function lbDesired(c: Cluster, self: string = hostsWithRole(c, 'loadbalancer')[0]?.name ?? '', held: readonly string[] = []): Desired {
  const lb = c.loadBalancer;
  const servers = apiUpstreams(c);
  const down = held.filter((n) => servers.some((s) => s.name === n));
  const common = {
    listenPort: lb.port,
    servers,
    connectTimeoutMs: lb.timeouts.connectMs,
    idleTimeoutMs: lb.timeouts.idleMs,
    ...(down.length ? { down } : {}),
  };
  if (lb.deploy === 'docker') {
    const image = LB_CONTAINER_DEFAULT_IMAGE;
    const conf = renderNginxConf({ ...common, maxFails: lb.nginx.maxFails, failTimeoutMs: lb.nginx.failTimeoutMs, flavor: 'official-image' });
    return {
      files: [
        // The image's own nginx checks the file, so what goes live is what the container runs.
        { path: LB_CONTAINER_CONF, content: conf, check: (tmp) => sh`docker run --rm --network none -v ${tmp + ':/etc/nginx/nginx.conf:ro'} ${image} nginx -t` },
        // For users who run the container with compose instead of the unit; both use the same conf.
        { path: LB_COMPOSE_FILE, content: renderLbComposeFile({ confPath: LB_CONTAINER_CONF, image }) },
        { path: LB_DOCKER_UNIT_PATH, content: renderLbDockerUnit({ confPath: LB_CONTAINER_CONF, image }) },
      ],
      // The unit's ExecReload sends SIGHUP into the container: nginx reloads in place.
      services: [{ unit: 'k8s-ha-lb', restartOn: [LB_DOCKER_UNIT_PATH], reloadOn: [LB_CONTAINER_CONF] }, CHECKER_OFF],
    };
  }
  if (lb.kind === 'haproxy') {
    const datastore = galeraRoute(c, self);
    const cfg = renderHaproxyCfg({
      ...common,
      healthCheck: { path: lb.healthCheck.path, intervalMs: lb.healthCheck.intervalMs, fall: lb.healthCheck.fall, rise: lb.healthCheck.rise },
      ...(datastore ? { datastore } : {}),
    });
    // Debian's mariadb.socket (socket activation) listens on *:3306, the
    // datastore listener's port; on a data node MariaDB uses galera.nodePort.
    const dataNode = datastore !== undefined && hostByName(c, self)?.roles.includes('datastore') === true;
    return {
      // socat: `k8s-ha status` reads the servers' states from HAProxy's admin socket.
      packages: ['haproxy', 'socat'],
      files: [{ path: HAPROXY_CFG_PATH, content: cfg, check: (tmp) => sh`haproxy -c -f ${tmp}` }],
      // Debian's unit reloads through the master process: old workers finish
      // their sessions, new connections get the new server list.
      services: [...(dataNode ? [MARIADB_SOCKET_OFF] : []), { unit: 'haproxy', reloadOn: [HAPROXY_CFG_PATH] }, CHECKER_OFF],
    };
  }
  const passive = { maxFails: lb.nginx.maxFails, failTimeoutMs: lb.nginx.failTimeoutMs };
  const active = nginxActiveCheck(c);
  // Galera needs the checker (validate refuses it without): it marks the writer.
  const datastore = nginxGaleraRoute(c);
  const conf = renderNginxConf({ ...common, ...passive, ...(active ? { upstreamInclude: LBCHECK_STATE_PATH } : {}), ...(datastore ? { datastore } : {}) });
  const nginxConf = {
    path: NGINX_CONF_PATH,
    content: conf,
    // The file names its includes by absolute path, so -c on the temp
    // file resolves them as the live file would; no -p (renderer note).
    check: (tmp: string) => sh`nginx -q -t -c ${tmp}`,
  };
  // FACTS: the stream module is not in nginx-light's core; without
  // libnginx-mod-stream nginx rejects `stream {}` as an unknown directive.
  const packages = ['nginx-light', 'libnginx-mod-stream'];
  if (!active) {
    // Reload: nginx starts new workers with the new upstreams and lets the old
    // ones finish their (long-lived watch) connections; a restart would cut them.
    return { packages, files: [nginxConf], services: [{ unit: 'nginx', reloadOn: [NGINX_CONF_PATH] }, CHECKER_OFF] };
  }
  // nginx open source cannot take out a server that accepts TCP but never
  // answers (frozen, hung): k8s-ha-lbcheck asks each one for /ping over TLS.
  const check = { servers, ...passive, ...lb.healthCheck, ...(datastore ? { datastore } : {}) };
  const dataNode = datastore !== undefined && hostByName(c, self)?.roles.includes('datastore') === true;
  return {
    packages: [...packages, 'curl'],
    files: [
      // Before nginx.conf, whose check reads it through the include. The
      // checker marks servers `down` in it; diff() ignores those marks.
      { path: LBCHECK_STATE_PATH, content: renderUpstreamState(check, down) },
      // Every data node down until the checker has chosen the writer (the same marks are ignored).
      ...(datastore ? [{ path: NGINX_DATASTORE_STATE_PATH, content: renderDatastoreState(datastore) }] : []),
      nginxConf,
      { path: LBCHECK_SCRIPT_PATH, content: renderLbCheckScript(check), mode: 0o755 },
      { path: LBCHECK_UNIT_PATH, content: renderLbCheckUnit() },
    ],
    services: [
      ...(dataNode ? [MARIADB_SOCKET_OFF] : []),
      { unit: 'nginx', reloadOn: [NGINX_CONF_PATH, LBCHECK_STATE_PATH, ...(datastore ? [NGINX_DATASTORE_STATE_PATH] : [])] },
      // The server list is in the script: a new list restarts the checker,
      // which puts the file back in step with it on its first round.
      { unit: LBCHECK_UNIT, restartOn: [LBCHECK_SCRIPT_PATH, LBCHECK_UNIT_PATH] },
    ],
  };
}

/**
 * The checker rewrites its state file with `down` marks: the same file with
 * the marks removed is no change (a second apply must not undo the checker).
 */
function tolerateCheckerMarks(d: Desired, o: ObservedState): Desired {
  const marked = [LBCHECK_STATE_PATH, NGINX_DATASTORE_STATE_PATH];
  return {
    ...d,
    files: (d.files ?? []).map((f) => {
      const cur = marked.includes(f.path) ? o.files.get(f.path)?.content : undefined;
      return cur != null && normalizeUpstreamState(cur) === normalizeUpstreamState(f.content) ? { ...f, content: cur } : f;
    }),
  };
}

export interface LbObserved {
  state: ObservedState;
  /** Only looked up for `deploy: docker`. */
  docker: boolean;
  /** Load balancers k8s-ha set up earlier with another kind or deploy, still enabled or running. */
  previous: { unit: string; active: boolean; enabled: boolean }[];
  /** Servers k8s-ha holds out of this host's upstreams (LB_HOLD_PATH): rendered so, released by the servers phase. */
  held: string[];
}

/** Every way k8s-ha runs a load balancer: its unit and the file that marks it as ours. */
const LB_FLAVOURS: { unit: string; file: string }[] = [
  { unit: 'nginx', file: NGINX_CONF_PATH },
  { unit: 'haproxy', file: HAPROXY_CFG_PATH },
  { unit: 'k8s-ha-lb', file: LB_DOCKER_UNIT_PATH },
];

function safeDesired(c: Cluster, self: string, held: readonly string[] = []): Desired | null {
  try {
    return lbDesired(c, self, held);
  } catch {
    return null;
  }
}

/**
 * The API load balancer on every `loadbalancer` host: nginx (stream) or
 * HAProxy (tcp) in front of every server's 6443, installed from the OS
 * packages or run as a container.
 */
export const loadBalancerPhase: Phase<Deployment, LbObserved> = {
  id: 'loadbalancer',
  title: 'API load balancer',
  targets: (ctx) => hostsWithRole(ctx.cluster.spec, 'loadbalancer').map((h) => h.name),

  async observe(ctx: RunContext<Deployment>, host: Host): Promise<LbObserved> {
    const c = ctx.cluster.spec;
    const held = parseHeld((await host.readFile(LB_HOLD_PATH))?.toString('utf8'));
    const d = safeDesired(c, host.name, held) ?? {};
    const state = await observeDesired(host, d);
    let docker = false;
    if (c.loadBalancer.deploy === 'docker') {
      docker = (await host.exec(sh`command -v docker`, { allowFailure: true })).code === 0;
    }
    // Switching kind (nginx <-> haproxy) or deploy leaves the old daemon on
    // the API port; stop it, but only when its config is k8s-ha's (a daemon
    // the user runs for something else is left alone).
    const previous: LbObserved['previous'] = [];
    const others = LB_FLAVOURS.filter((f) => f.unit !== lbUnit(c));
    const st = await observeDesired(host, { services: others.map((o) => ({ unit: o.unit })) });
    for (const o of others) {
      const svc = st.services.get(o.unit);
      if (!svc || (!svc.active && !svc.enabled)) continue;
      const text = (await host.readFile(o.file))?.toString('utf8') ?? '';
      if (text.includes('Managed by k8s-ha')) previous.push({ unit: o.unit, active: svc.active, enabled: svc.enabled });
    }
    return { state, docker, previous, held };
  },

  diff(ctx, hostName, o): Change[] {
    const d = safeDesired(ctx.cluster.spec, hostName, o.held);
    // preflight reports why; an unrenderable config never goes anywhere.
    if (!d) return [];
    const changes = diffDesired(tolerateCheckerMarks(d, o.state), o.state, ctx.secrets);
    const stops: Change[] = o.previous.map((p) => ({
      action: 'update',
      target: { host: hostName, unit: p.unit },
      before: p.active ? 'active' : 'enabled',
      after: 'disabled, inactive',
      summary: `stop and disable ${p.unit} (the load balancer is now ${lbUnit(ctx.cluster.spec)})`,
      // The checker first: its `systemctl reload nginx` (it marks servers
      // while it runs) would replace a pending stop job, which then fails
      // with "Job for nginx.service canceled" (seen on the lab).
      apply: async (h) => {
        if (p.unit === 'nginx') await h.exec(systemctl('stop', LBCHECK_UNIT), { allowFailure: true }); // absent with activeCheck: false
        await h.exec(sh`systemctl disable --now ${p.unit}`);
      },
    }));
    if (!stops.length) return changes;
    // Both cannot hold the API port. The old daemon is stopped in the same
    // change that starts the new one, right before it: everything else (the
    // package, the checked config, enable) is done first, so the gap is one
    // daemon start long, and an interrupt (checked between changes) can never
    // fall between the stop and the start (the plan's preflight says so).
    const unit = lbUnit(ctx.cluster.spec);
    const j = changes.findIndex((ch) => 'unit' in ch.target && ch.target.unit === unit && ch.action === 'restart');
    if (j < 0) {
      const i = changes.findIndex((ch) => 'unit' in ch.target);
      return i < 0 ? [...changes, ...stops] : [...changes.slice(0, i), ...stops, ...changes.slice(i)];
    }
    const start = changes[j]!;
    const switched: Change = {
      ...start,
      summary: `${stops.map((x) => `stop and disable ${'unit' in x.target ? x.target.unit : ''}`).join(', ')}, then at once ${start.summary} (the load balancer is now ${unit})`,
      apply: async (h) => {
        for (const x of stops) await x.apply(h);
        await start.apply(h);
      },
    };
    return [...changes.slice(0, j), switched, ...changes.slice(j + 1)];
  },

  preflight(ctx, observed): Problem[] {
    const c = ctx.cluster.spec;
    const problems: Problem[] = [];
    for (const [name, o] of observed) {
      if (!o.previous.length) continue;
      const old = o.previous.map((p) => p.unit).join(' and ');
      problems.push({
        severity: 'warning',
        path: 'loadBalancer.kind',
        message:
          `${name} switches from ${old} to ${lbUnit(c)}: both cannot hold port ${c.loadBalancer.port}, so the API through ${name} refuses connections ` +
          `from the stop of ${old} until ${lbUnit(c)} has started — one step of the apply, as long as ${lbUnit(c)} takes to start (about a second); ` +
          'everything else is in place before it',
        hint: 'nothing to change in the file: apply it at a quiet moment (clients see refused connections, which kubectl and the agents retry)',
      });
    }
    if (c.loadBalancer.deploy === 'docker' && c.loadBalancer.kind !== 'nginx') {
      problems.push({
        severity: 'error',
        path: 'loadBalancer.deploy',
        message: `deploy: docker runs the nginx image only, but kind is ${c.loadBalancer.kind}`,
        hint: 'use kind: nginx with deploy: docker, or deploy: package for HAProxy',
      });
      return problems;
    }
    try {
      lbDesired(c);
    } catch (e) {
      problems.push(renderProblem(e, (f) => (f.startsWith('servers') ? 'hosts' : `loadBalancer${f ? '.' + f : ''}`), 'fix the cluster file so the load balancer can be configured'));
    }
    if (c.loadBalancer.deploy === 'docker') {
      for (const [name, o] of observed) {
        if (!o.docker) {
          problems.push({
            severity: 'error',
            path: 'loadBalancer.deploy',
            message: `${name} has no docker command, and deploy: docker runs the load balancer as a container`,
            hint: `install Docker Engine on ${name} (https://docs.docker.com/engine/install/debian/), or set loadBalancer.deploy: package`,
          });
        }
      }
    }
    return problems;
  },
};
