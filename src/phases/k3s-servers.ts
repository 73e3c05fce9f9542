import { parse as parseYaml } from 'yaml';
import { KILLALL_PATH, renderKillall, renderUninstall, uninstallPath } from '../render/k3s-scripts.js';
import { clearPending, diffDesired, markPending, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import { restartsUnit } from '../engine/change.js';
import type { Deployment } from '../cluster/deployment.js';
import { StateFile } from '../cluster/state.js';
import {
  k3sConfigSecrets,
  k3sEnvSecrets,
  K3S_CONFIG_PATH,
  criticalSettings,
  diffCriticalSettings,
  k3sConfigObject,
  k3sEnvFilePath,
  k3sUnitPath,
  renderK3sConfig,
  renderK3sEnvFile,
  renderK3sUnit,
  type CriticalValue,
  type K3sServerConfigInput,
} from '../render/k3s.js';
import { datastoreEndpoint } from '../render/mariadb.js';
import { datastoreEndpointAddress, datastoreEndpointHost, hostsWithRole, type ClusterHost } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { isIp } from '../render/common.js';
import { Secret } from '../util/secret.js';
import { DATASTORE_TLS } from './infra-tls.js';
import { renderProblem } from './infra-common.js';
import { NotReadyError, journalTail, parseServerProbe, seconds, serverNotReady, serverProbe, serverProgress, lastSeenText, stuckBootCheck, waitFailureText, waitUntil } from './k3s-health.js';
import { K3sArtifacts, installChanges, observeInstalled, wantedArtifacts, type InstalledArtifacts, type WantedArtifacts } from './k3s-install.js';
import { installedVersion, nodeNotBack, parseK3sVersion, readNodes, upgradeProblems, type K3sVersion, type NodeState } from './k3s-versions.js';
import { heldOn, holdChanges, lbHostNames, releaseChanges } from './lb-hold.js';
import { K3S_BINARY_PATH } from '../render/k3s.js';
import { NODE_PASSWORD_FILE, apiView, rejoinChanges } from './k3s-nodes.js';
import { DIFFERENT_TOKEN_LOG, SERVER_TOKEN_PATH, differentTokenMessage, readServerToken, sameClusterToken } from './k3s-token.js';

/**
 * k3s servers on the external datastore (FACTS: servers join by sharing the
 * same token and datastore-endpoint; no --server, no --cluster-init). Serial:
 * the first server is up and ready before the second is touched, and a
 * setting change restarts one server at a time.
 */

export const SERVER_UNIT = 'k3s';
/** Where the datastore's CA goes on each server (datastore-cafile). */
export const DATASTORE_CA_PATH = '/etc/rancher/k3s/datastore-ca.pem';

/**
 * Critical settings that cannot change on a running cluster one server at a
 * time: the networks are baked into every node and Service, and
 * secrets-encryption has its own procedure. The others (datastore-endpoint,
 * disable, disable-*) may roll through the servers.
 */
const FIXED_AFTER_START = new Set(['cluster-cidr', 'service-cidr', 'cluster-dns', 'cluster-domain', 'flannel-backend', 'secrets-encryption', 'egress-selector-mode', 'agent-token']);

export interface K3sPhaseOptions {
  /** Shared with the agents phase so each file is hashed once. Default: one per phase made. */
  artifacts?: K3sArtifacts;
  /** How long a server (agent) may take to be ready after a (re)start. Default: waits.serverReady (agentReady) of the cluster file, 5 m. */
  readyTimeoutMs?: number;
  /** Give up once nothing the wait watches changes for this long. Default: waits.noProgress, 45 s. */
  noProgressMs?: number;
  /** Default 2 s. */
  pollIntervalMs?: number;
  /** How long a check that never recovers (stuckBootCheck) may hold a server back before k3s is restarted once. Default 60 s. */
  stuckRestartMs?: number;
}

export interface ServerObserved {
  state: ObservedState;
  want: WantedArtifacts;
  installed: InstalledArtifacts;
  /** The server's existing config.yaml, parsed; null when absent or unreadable. */
  config: Record<string, unknown> | null;
  /** The server's token file: k3s ran here with it. */
  token: Secret | null;
  /** The datastore CA as on the datastore host (TLS only; null before the datastore phase made it). */
  datastoreCa: string | null;
  /** The CA as on this server (TLS only). */
  caOnHost: string | null;
  /** The installed binary's version (null: not installed, or it does not say). */
  version: K3sVersion | null;
  /** The Nodes as this server's API lists them (null: its API does not answer); read only when k3s runs here. */
  nodes: NodeState[] | null;
  /** Load-balancer hosts that hold this server out of their upstreams (phases/lb-hold.ts): a run cut off before it released it. */
  held: string[];
  /**
   * Read only when k3s does not run here and /etc/rancher/node/password is
   * absent (a re-installed machine): another server's view of this name's Node.
   */
  rejoin: { via: string | null; node: NodeState | null } | null;
}

function serverHost(d: Deployment, name: string): ClusterHost {
  const h = d.spec.hosts.find((x) => x.name === name);
  if (!h) throw new Error(`${name} is not in the cluster file`);
  return h;
}

/** The address k3s advertises: nodeIP, else the host's address when it is an IP. */
export function nodeIps(h: ClusterHost): string[] | undefined {
  if (h.nodeIP) return [h.nodeIP];
  return isIp(h.address) ? [h.address] : undefined;
}

export function serverConfigInput(d: Deployment, h: ClusterHost): K3sServerConfigInput {
  const c = d.spec;
  // With Galera: the load balancer (or its virtual IP), which routes to the one writer.
  const ds = datastoreEndpointAddress(c);
  if (!ds) throw new Error('the cluster file has no datastore host: give one host the datastore role');
  const lbAddresses = hostsWithRole(c, 'loadbalancer').map((x) => x.address);
  return {
    role: 'server',
    nodeName: h.name,
    nodeIp: nodeIps(h),
    nodeLabels: Object.entries(h.labels).map(([k, v]) => `${k}=${v}`),
    nodeTaints: [...c.k3s.serverTaints, ...h.taints],
    extraArgs: c.k3s.serverArgs,
    token: d.secrets.k3sToken,
    ...(d.secrets.agentToken ? { agentToken: d.secrets.agentToken } : {}),
    datastoreEndpoint: datastoreEndpoint({ user: c.datastore.user, password: d.secrets.datastorePassword, host: ds.host, port: ds.port, database: c.datastore.database }),
    ...(c.datastore.tls.enabled ? { datastoreCaFile: DATASTORE_CA_PATH } : {}),
    // FACTS: tls-san must hold the LB / VIP address and names before the
    // first start. The load-balancer hosts' own addresses too, so the API
    // can be reached through either LB host when a VIP fronts them.
    tlsSan: [...new Set([...c.k3s.tlsSan, ...lbAddresses])],
    // FACTS: MetalLB requires servicelb disabled on all servers.
    disable: [...new Set([...c.k3s.disable, ...(c.metallb ? ['servicelb'] : [])])],
    clusterCidr: c.k3s.clusterCidr,
    serviceCidr: c.k3s.serviceCidr,
    clusterDns: c.k3s.clusterDns,
    clusterDomain: c.k3s.clusterDomain,
    flannelBackend: c.k3s.flannelBackend,
    secretsEncryption: c.k3s.secretsEncryption,
  };
}

/** How the server unit restarts, and why besides its files (FACTS: the binary; the datastore CA is read only at start). */
interface RestartHow {
  restartFor?: string[];
  restart?: (h: Host) => Promise<void>;
}

function desired(d: Deployment, h: ClusterHost, how: RestartHow = {}): Desired {
  const config = K3S_CONFIG_PATH;
  const unit = k3sUnitPath('server');
  const env = k3sEnvFilePath('server');
  return {
    files: [
      // FACTS: the config holds the token and the datastore password: 0600.
      { path: config, secretsIn: k3sConfigSecrets, content: renderK3sConfig(serverConfigInput(d, h)), mode: 0o600 },
      { path: unit, content: renderK3sUnit({ role: 'server' }) },
      { path: env, content: renderK3sEnvFile({}), mode: 0o600, secretsIn: k3sEnvSecrets },
      // The helper scripts k3s's installer leaves, which users and tools expect (render/k3s-scripts.ts).
      { path: KILLALL_PATH, content: renderKillall(), mode: 0o755 },
      { path: uninstallPath('server'), content: renderUninstall('server'), mode: 0o755 },
    ],
    // FACTS: a change to config.yaml alone needs an explicit restart.
    services: [{ unit: SERVER_UNIT, restartOn: [config, unit, env], ...how }],
  };
}

function parseConfig(text: string | null | undefined): Record<string, unknown> | null {
  if (!text) return null;
  try {
    const v: unknown = parseYaml(text, { version: '1.1' });
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The critical value for a message: secrets never shown. */
function shown(v: CriticalValue | undefined): string {
  if (v === undefined) return '(k3s default)';
  if (v instanceof Secret) return '(secret)';
  return Array.isArray(v) ? `[${v.join(', ')}]` : v;
}

function hostPath(d: Deployment, name: string): string {
  return `hosts[${d.spec.hosts.findIndex((h) => h.name === name)}]`;
}

export function k3sServersPhase(opts: K3sPhaseOptions = {}): Phase<Deployment, ServerObserved> {
  const artifacts = opts.artifacts ?? new K3sArtifacts();
  const pollIntervalMs = opts.pollIntervalMs ?? 2000;

  async function readDatastoreCa(ctx: RunContext<Deployment>): Promise<string | null> {
    const ds = datastoreEndpointHost(ctx.cluster.spec);
    if (!ds) return null;
    const buf = await (await ctx.host(ds.name)).readFile(DATASTORE_TLS.caFile);
    return buf ? buf.toString('utf8') : null;
  }

  /**
   * When each host's k3s last became active before this run restarted it
   * (CLOCK_MONOTONIC µs, systemd's ActiveEnterTimestampMonotonic): the new
   * process counts as up only once systemd records a later READY=1.
   */
  const enteredBefore = new Map<string, number>();
  /** The journal's cursor when the restart was queued (null: k3s never logged there). */
  const cursorBefore = new Map<string, string | null>();

  /**
   * `systemctl restart` of a Type=notify unit blocks until READY=1, and the
   * unit has no start timeout (TimeoutStartSec=0): a k3s that cannot reach
   * its datastore would hang the apply, and one that exits would fail it
   * with systemd's "Job failed" instead of the reason. So the restart is
   * queued (--no-block) and `settle` does the bounded wait and explains.
   */
  const queuedRestart = async (host: Host): Promise<void> => {
    const r = await host.exec(
      sh`systemctl show -p ActiveEnterTimestampMonotonic --value ${SERVER_UNIT}; journalctl -u ${SERVER_UNIT} -n 1 --show-cursor -q -o cat 2>/dev/null | sed -n 's/^-- cursor: //p'; systemctl --no-block restart ${SERVER_UNIT}`,
    );
    const [entered = '', cursor = ''] = r.stdout.split('\n').map((l) => l.trim());
    enteredBefore.set(host.name, Number(entered) || 0);
    cursorBefore.set(host.name, cursor || null);
    // Queued to systemd: it runs even if this apply is cut off now.
    await clearPending(host, SERVER_UNIT);
  };

  /** Servers whose readiness a change of their step already waited for (before they went back into the load balancer). */
  const waited = new Set<string>();

  async function settle(ctx: RunContext<Deployment>, host: Host, applied: Change[]): Promise<void> {
    if (waited.delete(host.name)) return;
    if (!applied.some((c) => restartsUnit(c, SERVER_UNIT))) return;
    await waitServerReady(ctx, host, applied);
  }

  /**
   * Bounded: /readyz through the server's own port (after a restart: once
   * systemd has a READY=1 newer than it), then, after an upgrade, its own
   * Node Ready on the new version.
   */
  async function waitServerReady(ctx: RunContext<Deployment>, host: Host, applied: Change[]): Promise<void> {
    const before = enteredBefore.get(host.name) ?? 0;
    const cursor = cursorBefore.get(host.name) ?? null;
    let differentToken = false;
    const readyTimeoutMs = opts.readyTimeoutMs ?? ctx.cluster.spec.waits.serverReadyMs;
    const noProgressMs = opts.noProgressMs ?? ctx.cluster.spec.waits.noProgressMs;
    const stuckRestartMs = opts.stuckRestartMs ?? 60_000;
    // A check that never passes on its own (k3s-health.ts NEVER_RECOVERING_CHECKS):
    // since when it alone has held the server back, and whether k3s was restarted for it.
    let stuckSince: number | null = null;
    let restartedForStuck = false;
    const last = await waitUntil(
      { timeoutMs: readyTimeoutMs, intervalMs: pollIntervalMs, signal: ctx.signal, noProgressMs },
      async () => {
        const p = parseServerProbe((await host.exec(serverProbe(cursor), { allowFailure: true, timeoutMs: 30_000 })).stdout);
        differentToken ||= p.differentToken;
        const notReady = serverNotReady(p);
        const stuck = notReady === null ? null : stuckBootCheck(p);
        stuckSince = stuck === null ? null : (stuckSince ?? Date.now());
        if (stuck !== null && stuckSince !== null && !restartedForStuck && Date.now() - stuckSince >= stuckRestartMs) {
          restartedForStuck = true;
          stuckSince = null;
          const message = `restarting k3s: its API server has been held back by ${stuck} for ${seconds(stuckRestartMs)}, a check that does not recover by itself (an APIService create reported done but never written, kine v0.17; see README "Galera datastore")`;
          ctx.events({ type: 'wait', phase: 'k3s-servers', host: host.name, message });
          await host.exec(sh`systemctl --no-block restart ${SERVER_UNIT}`, { timeoutMs: 30_000 });
          return { why: message, progress: `restarted for ${stuck}` };
        }
        const why = p.entered > before ? notReady : `k3s has not signalled READY to systemd since the restart (${p.active || 'state unknown'}); ${notReady ?? 'the API answers'}`;
        if (why) ctx.events({ type: 'wait', phase: 'k3s-servers', host: host.name, message: stuck === null ? why : `${why}; only ${stuck} fails` });
        return why === null ? null : { why, progress: serverProgress(p) };
      },
      () => (differentToken ? 'token' : null),
    );
    if (last === null) {
      // An upgraded server counts once its own Node is Ready again too (the next server waits for it).
      if (applied.some((c) => c.action === 'update' && 'file' in c.target && c.target.file === K3S_BINARY_PATH)) await waitNodeReady(ctx, host);
      return;
    }
    const journal = await journalTail(host, SERVER_UNIT);
    if (differentToken) {
      const m = differentTokenMessage(`the datastore ${datastoreEndpointHost(ctx.cluster.spec)?.name ?? ''}`.trim(), StateFile.pathFor(ctx.cluster.file));
      throw new NotReadyError(host.name, `k3s refused to start: "${DIFFERENT_TOKEN_LOG}". ${m.message}`, DIFFERENT_TOKEN_LOG, journal, m.hint);
    }
    throw new NotReadyError(
      host.name,
      waitFailureText('k3s server not ready', last, readyTimeoutMs),
      lastSeenText(last),
      journal,
      `look at \`journalctl -u ${SERVER_UNIT}\` on ${host.name}; a server that cannot reach the datastore (${datastoreEndpointHost(ctx.cluster.spec)?.address ?? '?'}:${ctx.cluster.spec.datastore.port}) or cannot log in keeps retrying`,
    );
  }

  async function waitNodeReady(ctx: RunContext<Deployment>, host: Host): Promise<void> {
    const readyTimeoutMs = opts.readyTimeoutMs ?? ctx.cluster.spec.waits.serverReadyMs;
    // The version its kubelet must report: the pinned one, else what the binary now says.
    const want = parseK3sVersion(ctx.cluster.spec.k3s.version) ?? (await installedVersion(host));
    const last = await waitUntil({ timeoutMs: readyTimeoutMs, intervalMs: pollIntervalMs, signal: ctx.signal }, async () => {
      const nodes = await readNodes([host]);
      const why = !nodes ? 'its API does not list the nodes yet' : nodeNotBack(nodes.find((n) => n.name === host.name), host.name, want);
      if (why) ctx.events({ type: 'wait', phase: 'k3s-servers', host: host.name, message: why });
      return why;
    });
    if (last !== null) throw new NotReadyError(host.name, waitFailureText("the upgraded server's node did not become Ready", last, readyTimeoutMs), lastSeenText(last), await journalTail(host, SERVER_UNIT), `look at \`k3s kubectl describe node ${host.name}\` and \`journalctl -u ${SERVER_UNIT}\` on ${host.name}; the servers not yet upgraded keep serving`);
  }

  /**
   * A serving server's restart goes between a hold and a release on every
   * load balancer (phases/lb-hold.ts): new connections go to the other
   * servers while it restarts, and it is put back only once its /readyz and
   * its Node are ready. A server a cut-off run left held is released once
   * it is ready. A lone server is not held: there is nowhere else to send
   * its clients.
   */
  function withLbHold(ctx: RunContext<Deployment>, h: ClusterHost, o: ServerObserved, changes: Change[]): Change[] {
    const spec = ctx.cluster.spec;
    const lbs = lbHostNames(spec);
    const i = changes.findIndex((c) => restartsUnit(c, SERVER_UNIT));
    const serving = o.installed.binary !== null && o.state.services.get(SERVER_UNIT)?.active === true;
    const hold = i >= 0 && serving && lbs.length > 0 && hostsWithRole(spec, 'server').length > 1;
    if (!hold && !o.held.length) return changes;
    const server = { name: h.name, address: h.address };
    const version = spec.k3s.version ? ` on ${spec.k3s.version}` : '';
    const ready: Change = {
      action: 'run',
      target: { host: h.name, unit: SERVER_UNIT },
      summary: `wait until ${h.name} is ready (its /readyz, its Node Ready${version}) before it takes connections again`,
      apply: async (host) => {
        await waitServerReady(ctx, host, changes);
        await waitNodeReady(ctx, host);
        waited.add(host.name);
      },
    };
    const release = releaseChanges(ctx, server, hold ? lbs : o.held);
    if (i < 0) return [...changes, ready, ...release];
    return [...changes.slice(0, i), ...(hold ? holdChanges(ctx, server) : []), changes[i]!, ready, ...release, ...changes.slice(i + 1)];
  }

  return {
    id: 'k3s-servers',
    title: 'k3s servers',
    batch: 1, // the first server ready before the next; restarts one at a time
    targets: (ctx) => hostsWithRole(ctx.cluster.spec, 'server').map((h) => h.name),

    async observe(ctx, host): Promise<ServerObserved> {
      const d = ctx.cluster;
      const h = serverHost(d, host.name);
      const arch = ctx.facts.get(host.name)?.arch ?? 'amd64';
      const want = await wantedArtifacts(artifacts, d.spec, arch);
      const [state, installed, token, datastoreCa] = await Promise.all([
        observeDesired(host, desired(d, h)),
        observeInstalled(host, want),
        readServerToken(host),
        d.spec.datastore.tls.enabled ? readDatastoreCa(ctx) : Promise.resolve(null),
      ]);
      const caOnHost = d.spec.datastore.tls.enabled ? ((await host.readFile(DATASTORE_CA_PATH))?.toString('utf8') ?? null) : null;
      const version = installed.binary ? await installedVersion(host) : null;
      const running = state.services.get(SERVER_UNIT)?.active ?? false;
      const nodes = running ? await readNodes([host]) : null;
      const fresh = !running && (await host.stat(NODE_PASSWORD_FILE)) === null;
      const others = fresh ? await apiView(ctx) : null;
      const rejoin = others ? { via: others.via, node: others.nodes.find((n) => n.name === host.name) ?? null } : null;
      // The token this server runs with is a secret of the run from now on, whatever the cluster file says.
      if (token) ctx.secrets.add(token, ...k3sConfigSecrets(`token: ${JSON.stringify(token.reveal())}\n`));
      const held = await heldOn(ctx, host.name);
      return { state, want, installed, config: parseConfig(state.files.get(K3S_CONFIG_PATH)?.content), token, datastoreCa, caOnHost, version, nodes, held, rejoin };
    },

    diff(ctx, name, o): Change[] {
      const d = ctx.cluster;
      const h = serverHost(d, name);
      try {
        desired(d, h);
      } catch {
        return []; // preflight reports the renderer's refusal
      }
      const { changes: install, binaryChanged } = installChanges(name, d.spec.k3s.version, o.want, o.installed, SERVER_UNIT);
      // A re-installed machine: the old Node and its node-password secret go before the new k3s joins.
      const rejoin = o.rejoin ? rejoinChanges(name, { ...o.rejoin, nodePasswordFile: false, running: false }) : [];
      const changes: Change[] = [...rejoin, ...install];
      let caChanged = false;
      if (d.spec.datastore.tls.enabled) {
        const have = o.caOnHost;
        if (o.datastoreCa === null || have !== o.datastoreCa) {
          caChanged = have !== null;
          // Before the datastore phase has made it (a plan on bare hosts) the
          // CA is read from the datastore host when this change runs.
          changes.push({
            action: have ? 'update' : 'create',
            target: { host: name, file: DATASTORE_CA_PATH },
            before: have,
            after: o.datastoreCa,
            summary: `${have ? 'update' : 'create'} ${DATASTORE_CA_PATH} (the datastore's CA)`,
            apply: async (host) => {
              const ca = o.datastoreCa ?? (await readDatastoreCa(ctx));
              if (!ca) throw new Error(`the datastore CA ${DATASTORE_TLS.caFile} is missing on the datastore host; apply the datastore phase first`);
              if (have) await markPending(host, SERVER_UNIT, 'restart');
              await host.writeFile(DATASTORE_CA_PATH, ca, { mode: 0o644 });
            },
          });
        }
      }
      // FACTS: the install script restarts k3s when the binary changed; so
      // do we. The datastore CA, too, is read only at start.
      const restartFor = [...(binaryChanged ? ['binary'] : []), ...(caChanged ? [DATASTORE_CA_PATH] : [])];
      changes.push(...diffDesired(desired(d, h, { restartFor, restart: queuedRestart }), o.state, ctx.secrets));
      return withLbHold(ctx, h, o, changes);
    },

    preflight(ctx, observed): Problem[] {
      const d = ctx.cluster;
      const problems: Problem[] = [];
      const rendered = new Map<string, Record<string, CriticalValue>>();
      for (const name of observed.keys()) {
        const o = observed.get(name)!;
        if (!o.want.ok) problems.push({ severity: 'error', path: 'k3s.install', message: o.want.error, hint: 'fix k3s.install / k3s.version, or use install.source: local with a downloaded binary' });
        try {
          rendered.set(name, criticalSettings(k3sConfigObject(serverConfigInput(d, serverHost(d, name)))));
        } catch (e) {
          problems.push(renderProblem(e, (f) => (f ? `k3s (${name}: ${f})` : `k3s (${name})`), 'fix the value in the cluster file'));
        }
      }
      // Rendered configs: identical critical settings on every server (FACTS).
      const names = [...rendered.keys()];
      const first = names[0];
      for (const other of names.slice(1)) {
        const keys = diffCriticalSettings(rendered.get(first!)!, rendered.get(other)!);
        if (keys.length) {
          problems.push({
            severity: 'error',
            path: hostPath(d, other),
            message: `cluster-critical settings of ${other} differ from ${first}'s: ${keys.join(', ')}; k3s needs them identical on every server`,
            hint: 'set them once under k3s (not per host)',
          });
        }
      }
      // Configs already on the hosts: a running cluster's network settings
      // cannot roll through the servers one at a time.
      for (const [name, o] of observed) {
        const want = rendered.get(name);
        if (!o.config || !want) continue;
        const have = criticalSettings(o.config);
        const fixed = diffCriticalSettings(have, want).filter((k) => FIXED_AFTER_START.has(k));
        if (fixed.length) {
          problems.push({
            severity: 'error',
            path: 'k3s',
            message: `${name} already runs with ${fixed.map((k) => `${k} ${shown(have[k])}`).join(', ')}; the cluster file says ${fixed.map((k) => `${k} ${shown(want[k])}`).join(', ')}. These cluster-critical settings must be identical on every server and cannot be changed on a running cluster one server at a time`,
            hint: `put the running values back in the cluster file; changing them means rebuilding the cluster (uninstall k3s, drop the datastore database, apply)`,
          });
        }
        const sans = (v: unknown) => new Set((Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : []).map((s) => String(s).trim()));
        const oldSans = sans(o.config['tls-san']);
        const added = [...sans(k3sConfigObject(serverConfigInput(d, serverHost(d, name)))['tls-san'])].filter((s) => !oldSans.has(s));
        if (o.token && added.length) {
          problems.push({
            severity: 'warning',
            path: 'k3s.tlsSan',
            message: `${name}: tls-san gains ${added.join(', ')} after k3s first started there; its serving certificate may not name them until it is rotated (FACTS)`,
            hint: `after this apply, run \`k3s certificate rotate\` on each server one at a time (stop k3s, rotate, start) if clients report a certificate name mismatch`,
          });
        }
      }
      problems.push(...upgradeProblems(d.spec.k3s.version, [...observed].map(([name, o]) => ({ name, role: 'server' as const, version: o.version, path: hostPath(d, name) }))));
      problems.push(...unhealthyStart(d, observed));
      // A server that already ran k3s with another token (FACTS: bootstrap data).
      for (const [name, o] of observed) {
        if (o.token && !sameClusterToken(o.token, d.secrets.k3sToken)) {
          const m = differentTokenMessage(`${name} (${SERVER_TOKEN_PATH})`, StateFile.pathFor(d.file));
          problems.push({ severity: 'error', path: 'k3s.token', message: m.message, hint: m.hint });
        }
      }
      return problems;
    },

    settle,
  };
}

const UNHEALTHY_UPGRADE = 'would start on an unhealthy cluster';

/** Whether a problem is unhealthyStart's (a restore, which stops every node itself, says something else). */
export function isUnhealthyUpgradeProblem(p: Problem): boolean {
  return p.path === 'k3s.version' && p.message.includes(UNHEALTHY_UPGRADE);
}

/**
 * An upgrade starts only on a healthy cluster (every server's k3s running,
 * every Node Ready): rolling a new version through a degraded cluster can
 * take the last working server down. `--force` overrides it.
 */
function unhealthyStart(d: Deployment, observed: ReadonlyMap<string, ServerObserved>): Problem[] {
  const target = d.spec.k3s.version;
  // In the cluster file's order (the map is filled as observations finish).
  const upgrading = hostsWithRole(d.spec, 'server')
    .map((h) => h.name)
    .filter((n) => {
      const o = observed.get(n);
      return o?.version && target && o.version.text !== target;
    });
  if (!upgrading.length || d.options?.force) return [];
  const why: string[] = [];
  for (const [name, o] of observed) if (o.installed.binary && !o.state.services.get(SERVER_UNIT)?.active) why.push(`k3s is not running on ${name}`);
  const lists = [...observed.values()].map((o) => o.nodes).filter((n): n is NodeState[] => n !== null);
  if (!lists.length) why.push("no server's API lists the nodes");
  else for (const n of lists[0]!) if (!n.ready) why.push(`node ${n.name} is NotReady`);
  if (!why.length) return [];
  return [
    {
      severity: 'error',
      path: 'k3s.version',
      message: `the upgrade to ${target} (${upgrading.join(', ')} first) ${UNHEALTHY_UPGRADE}: ${why.join('; ')}`,
      hint: 'bring the cluster back first (`k8s-ha status` shows what is degraded, `k8s-ha apply` with the running version repairs it), or upgrade anyway with --force',
    },
  ];
}
