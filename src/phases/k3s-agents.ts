import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import { KILLALL_PATH, renderKillall, renderUninstall, uninstallPath } from '../render/k3s-scripts.js';
import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import { restartsUnit } from '../engine/change.js';
import type { Deployment } from '../cluster/deployment.js';
import type { Host } from '../transport/host.js';
import { K3S_CONFIG_PATH, k3sConfigSecrets, k3sEnvFilePath, k3sEnvSecrets, k3sUnitPath, renderK3sConfig, renderK3sEnvFile, renderK3sUnit, type K3sAgentConfigInput } from '../render/k3s.js';
import { hostsWithRole, type ClusterHost } from '../spec/cluster.js';
import { systemctl } from '../transport/os.js';
import { sh } from '../transport/quote.js';
import { Secret } from '../util/secret.js';
import { K3S_API_PORT, renderProblem } from './infra-common.js';
import { NotReadyError, journalTail, kubectlArgs, lastSeenText, seconds, waitFailureText, waitUntil } from './k3s-health.js';
import { K3sArtifacts, installChanges, observeInstalled, wantedArtifacts, type InstalledArtifacts, type WantedArtifacts } from './k3s-install.js';
import { SERVER_UNIT, nodeIps, type K3sPhaseOptions } from './k3s-servers.js';
import { NODE_PASSWORD_REJECTED_LOG, nodePasswordRejectedMessage, readServerToken, sameClusterToken } from './k3s-token.js';
import { CORDON_ANNOTATION, agentBatchSize, installedVersion, nodeNotBack, parseK3sVersion, readNodes, upgradeProblems, type K3sVersion, type NodeState } from './k3s-versions.js';
import { K3S_BINARY_PATH } from '../render/k3s.js';
import type { RunOptions } from '../cluster/deployment.js';
import { NODE_PASSWORD_FILE, rejoinChanges } from './k3s-nodes.js';
import { leaderWaitChange } from './k3s-leaders.js';

/**
 * k3s agents, joined through the load balancer (or VIP) with the token.
 * FACTS: the `server` URL is used only to register; afterwards an agent
 * talks to every server's 6443 directly through its client-side balancer,
 * so each agent must reach every server, not only the LB: checked first.
 */

export const AGENT_UNIT = 'k3s-agent';
/** How long one TCP probe from an agent to a server may take. */
const PROBE_TIMEOUT_S = 3;

export type Reach = 'ok' | 'refused' | 'timeout' | 'unreachable';

export interface ServerReach {
  server: string;
  address: string;
  result: Reach;
  detail: string;
  /** k3s is active on that server (a refused port before it started is expected). */
  serverUp: boolean;
}

export interface AgentObserved {
  state: ObservedState;
  want: WantedArtifacts;
  installed: InstalledArtifacts;
  reach: ServerReach[];
  /**
   * The servers' full token (`K10<CA hash>::server:<secret>`) when a server
   * has one with the same secret: with it the agent verifies the server's CA
   * before trusting it (FACTS). Null before any server started.
   */
  secureToken: Secret | null;
  /** The installed binary's version (null: not installed). */
  version: K3sVersion | null;
  /** This agent's Node as a running server lists it (null: not registered, or no API answers). */
  node: NodeState | null;
  /** The first server whose k3s runs: where cordon, drain and uncordon go. */
  via: string | null;
  /** /etc/rancher/node/password exists (k3s ran here; a re-installed machine has none). */
  nodePasswordFile: boolean;
}

function agentHost(d: Deployment, name: string): ClusterHost {
  const h = d.spec.hosts.find((x) => x.name === name);
  if (!h) throw new Error(`${name} is not in the cluster file`);
  return h;
}

export function agentConfigInput(d: Deployment, h: ClusterHost, secureToken: Secret | null): K3sAgentConfigInput {
  const c = d.spec;
  return {
    role: 'agent',
    nodeName: h.name,
    nodeIp: nodeIps(h),
    nodeLabels: Object.entries(h.labels).map(([k, v]) => `${k}=${v}`),
    nodeTaints: [...h.taints],
    extraArgs: c.k3s.agentArgs,
    server: { host: c.apiAddress, port: c.apiPort },
    // A separate agent token when the file sets one; else the servers'
    // token, in its CA-pinning form once the servers have made their CA.
    token: d.secrets.agentToken ?? secureToken ?? d.secrets.k3sToken,
  };
}

function desired(d: Deployment, h: ClusterHost, secureToken: Secret | null, restartFor: string[] = []): Desired {
  const config = K3S_CONFIG_PATH;
  const unit = k3sUnitPath('agent');
  const env = k3sEnvFilePath('agent');
  return {
    files: [
      { path: config, secretsIn: k3sConfigSecrets, content: renderK3sConfig(agentConfigInput(d, h, secureToken)), mode: 0o600 },
      { path: unit, content: renderK3sUnit({ role: 'agent' }) },
      { path: env, content: renderK3sEnvFile({}), mode: 0o600, secretsIn: k3sEnvSecrets },
      // The helper scripts k3s's installer leaves, which users and tools expect (render/k3s-scripts.ts).
      { path: KILLALL_PATH, content: renderKillall(), mode: 0o755 },
      { path: uninstallPath('agent'), content: renderUninstall('agent'), mode: 0o755 },
    ],
    services: [{ unit: AGENT_UNIT, restartOn: [config, unit, env], restartFor }],
  };
}

/** One round trip: a TCP connect from the agent to each address's 6443, `ADDR<TAB>rc<TAB>stderr` per line. */
export function reachProbe(addresses: string[]): ReturnType<typeof sh> {
  return sh`for a in ${addresses}; do r=$(timeout ${PROBE_TIMEOUT_S} bash -c 'exec 3<>/dev/tcp/'"$a"'/${K3S_API_PORT}' 2>&1); printf '%s\t%s\t%s\n' "$a" "$?" "$(printf %s "$r" | tr '\n' ' ')"; done`;
}

export function parseReach(stdout: string): Map<string, { result: Reach; detail: string }> {
  const out = new Map<string, { result: Reach; detail: string }>();
  for (const line of stdout.split('\n')) {
    const [addr, rc, detail = ''] = line.split('\t');
    if (!addr || rc === undefined) continue;
    const text = detail.replace(/^bash: line \d+: /, '').replace(/^\/dev\/tcp\/[^:]*: /, '').trim();
    let result: Reach;
    if (rc === '0') result = 'ok';
    else if (rc === '124') result = 'timeout';
    else if (/refused/i.test(detail)) result = 'refused';
    else result = 'unreachable';
    const words = result === 'timeout' ? `no answer within ${PROBE_TIMEOUT_S} s (dropped by a firewall or no route)` : result === 'refused' ? 'connection refused' : text || `exit ${rc}`;
    out.set(addr, { result, detail: result === 'ok' ? '' : words });
  }
  return out;
}

async function serverStates(ctx: RunContext<Deployment>, servers: ClusterHost[]): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  await Promise.all(
    servers.map(async (s) => {
      try {
        const r = await (await ctx.host(s.name)).exec(systemctl('is-active', SERVER_UNIT), { allowFailure: true, sudo: false });
        out.set(s.name, r.code === 0);
      } catch {
        out.set(s.name, false);
      }
    }),
  );
  return out;
}

async function secureTokenFrom(ctx: RunContext<Deployment>, servers: ClusterHost[]): Promise<Secret | null> {
  for (const s of servers) {
    try {
      const t = await readServerToken(await ctx.host(s.name));
      if (t && t.reveal().startsWith('K10') && sameClusterToken(t, ctx.cluster.secrets.k3sToken)) return t;
    } catch {
      // An unreachable server is reported by the servers phase.
    }
  }
  return null;
}

export function k3sAgentsPhase(opts: K3sPhaseOptions = {}): Phase<Deployment, AgentObserved> {
  const artifacts = opts.artifacts ?? new K3sArtifacts();
  const pollIntervalMs = opts.pollIntervalMs ?? 2000;

  return {
    id: 'k3s-agents',
    title: 'k3s agents',
    targets: (ctx) => hostsWithRole(ctx.cluster.spec, 'agent').map((h) => h.name),

    async observe(ctx, host): Promise<AgentObserved> {
      const d = ctx.cluster;
      const servers = hostsWithRole(d.spec, 'server');
      const arch = ctx.facts.get(host.name)?.arch ?? 'amd64';
      const want = await wantedArtifacts(artifacts, d.spec, arch);
      const secureToken = await secureTokenFrom(ctx, servers);
      if (secureToken) ctx.secrets.add(secureToken);
      const [state, installed, probe, up] = await Promise.all([
        observeDesired(host, desired(d, agentHost(d, host.name), secureToken)),
        observeInstalled(host, want),
        servers.length ? host.exec(reachProbe(servers.map((s) => s.address)), { sudo: false, allowFailure: true, timeoutMs: 30_000 }) : null,
        serverStates(ctx, servers),
      ]);
      const parsed = parseReach(probe?.stdout ?? '');
      const reach = servers.map((s) => {
        const r = parsed.get(s.address) ?? { result: 'unreachable' as const, detail: (probe?.stderr ?? '').trim() || 'the probe printed nothing' };
        return { server: s.name, address: s.address, ...r, serverUp: up.get(s.name) ?? false };
      });
      const via = servers.find((x) => up.get(x.name))?.name ?? null;
      const version = installed.binary ? await installedVersion(host) : null;
      const nodes = via ? await readNodes([await ctx.host(via)]) : null;
      const nodePasswordFile = (await host.stat(NODE_PASSWORD_FILE)) !== null;
      return { state, want, installed, reach, secureToken, version, node: nodes?.find((n) => n.name === host.name) ?? null, via, nodePasswordFile };
    },

    diff(ctx, name, o): Change[] {
      const d = ctx.cluster;
      try {
        desired(d, agentHost(d, name), o.secureToken);
      } catch {
        return [];
      }
      const { changes, binaryChanged } = installChanges(name, d.spec.k3s.version, o.want, o.installed, AGENT_UNIT);
      // FACTS: the install script restarts k3s when the binary changed; so do we.
      // A re-installed machine: the old Node and its node-password secret go before the new k3s joins.
      const rejoin = rejoinChanges(name, { via: o.via, node: o.node, nodePasswordFile: o.nodePasswordFile, running: o.state.services.get(AGENT_UNIT)?.active ?? false });
      const base = [...rejoin, ...changes, ...diffDesired(desired(d, agentHost(d, name), o.secureToken, binaryChanged ? ['binary'] : []), o.state, ctx.secrets)];
      // An upgrade of a registered node: its pods move away first, and it
      // takes new ones only once it is Ready on the new version.
      if (binaryChanged && o.installed.binary && o.node && o.via) {
        const drain = drainChanges(ctx, name, o.via, d.options ?? {}, opts.readyTimeoutMs ?? d.spec.waits.agentReadyMs, pollIntervalMs);
        return [...drain.leaders, ...(o.node.unschedulable && o.node.cordonedByUs ? [] : [drain.cordon]), drain.drain, ...base, drain.uncordon];
      }
      // Left cordoned by an upgrade cut off after its restart: put it back in service.
      if (o.node?.cordonedByUs && o.via) return [...base, drainChanges(ctx, name, o.via, d.options ?? {}, opts.readyTimeoutMs ?? d.spec.waits.agentReadyMs, pollIntervalMs).uncordon];
      return base;
    },

    /** Upgrades go in batches of `upgrade.agentBatch`, the rest keep serving; a first install goes all at once. */
    rollout(ctx, changed, observed) {
      const upgrading = changed.filter((n) => {
        const o = observed.get(n) as AgentObserved | undefined;
        return o?.installed.binary && o.node && o.want.ok && o.installed.binary !== o.want.binary.sha256;
      });
      if (!upgrading.length) return { batches: [changed] };
      const size = agentBatchSize(ctx.cluster.spec.upgrade.agentBatch, hostsWithRole(ctx.cluster.spec, 'agent').length);
      const rest = changed.filter((n) => !upgrading.includes(n));
      const batches: string[][] = rest.length ? [rest] : [];
      for (let i = 0; i < upgrading.length; i += size) batches.push(upgrading.slice(i, i + size));
      return { batches, describe: `upgrade ${size === 1 ? 'one agent at a time' : `${size} agents at a time`}: cordon, drain, new binary, restart, Ready, uncordon` };
    },

    preflight(ctx, observed): Problem[] {
      const d = ctx.cluster;
      const problems: Problem[] = [];
      problems.push(...upgradeProblems(d.spec.k3s.version, [...observed].map(([name, o]) => ({ name, role: 'agent' as const, version: o.version, path: `hosts[${d.spec.hosts.findIndex((h) => h.name === name)}]` }))));
      for (const [name, o] of observed) {
        const path = `hosts[${d.spec.hosts.findIndex((h) => h.name === name)}]`;
        if (!o.want.ok) problems.push({ severity: 'error', path: 'k3s.install', message: o.want.error, hint: 'fix k3s.install / k3s.version, or use install.source: local with a downloaded binary' });
        try {
          agentConfigInput(d, agentHost(d, name), null);
          renderK3sConfig(agentConfigInput(d, agentHost(d, name), null));
        } catch (e) {
          problems.push(renderProblem(e, (f) => (f ? `${path} (${f})` : path), 'fix the value in the cluster file'));
        }
        // A refused port on a server whose k3s is not running yet (a plan on
        // bare hosts) is expected: the servers phase starts it first.
        const bad = o.reach.filter((r) => r.result !== 'ok' && !(r.result === 'refused' && !r.serverUp));
        if (bad.length) {
          problems.push({
            severity: 'error',
            path,
            message: `${name} cannot reach ${bad.map((r) => `${r.server} (${r.address}:${K3S_API_PORT}: ${r.detail})`).join(', ')}; agents register through the load balancer but then talk to every server's ${K3S_API_PORT} directly (FACTS)`,
            hint: `allow TCP ${K3S_API_PORT} from ${name} to ${bad.map((r) => r.address).join(', ')} (firewall, routes, VLANs), then apply again`,
          });
        }
      }
      return problems;
    },

    async settle(ctx, host, applied): Promise<void> {
      if (!applied.some((c) => restartsUnit(c, AGENT_UNIT))) return;
      const servers = hostsWithRole(ctx.cluster.spec, 'server');
      const readyTimeoutMs = opts.readyTimeoutMs ?? ctx.cluster.spec.waits.agentReadyMs;
      const noProgressMs = opts.noProgressMs ?? ctx.cluster.spec.waits.noProgressMs;
      // After an upgrade the Node counts once its new kubelet reports the new version (nodeNotBack).
      const want = applied.some(upgradesBinary) ? await upgradedVersion(ctx, host) : null;
      // A refused node password is retried by k3s for ever: say so at once.
      let refused = false;
      const last = await waitUntil({ timeoutMs: readyTimeoutMs, intervalMs: pollIntervalMs, signal: ctx.signal, noProgressMs }, async () => {
        // The agent's own unit and journal: they move while it works on joining.
        const active = await host.exec(systemctl('is-active', AGENT_UNIT), { allowFailure: true, sudo: false, timeoutMs: 20_000 });
        const state = active.code === 0 ? 'active' : active.stdout.trim();
        const journal = await host.exec(sh`journalctl -u ${AGENT_UNIT} -n 1 --show-cursor -q -o cat`, { allowFailure: true, timeoutMs: 20_000 });
        const cursor = /^-- cursor: (.*)$/m.exec(journal.stdout)?.[1] ?? '';
        if (journal.stdout.includes(NODE_PASSWORD_REJECTED_LOG)) refused = true;
        const progress = (why: string) => ({ why, progress: `${why}\n${state}\n${cursor}` });
        if (state !== 'active') return progress(`${AGENT_UNIT} is ${state || 'not active'}`);
        // After an upgrade: the Node Ready with its new kubelet's version, seen from a server.
        if (want) {
          const nodes = await readNodes(await Promise.all(servers.map((s) => ctx.host(s.name))));
          if (!nodes) return progress("no server's API lists the nodes");
          const why = nodeNotBack(nodes.find((n) => n.name === host.name), host.name, want);
          if (why) ctx.events({ type: 'wait', phase: 'k3s-agents', host: host.name, message: why });
          return why === null ? null : progress(why);
        }
        // The Node object, seen from a server: registered and Ready.
        let lastErr = 'no server answered';
        for (const s of servers) {
          const r = await (await ctx.host(s.name))
            .exec(sh`${kubectlArgs('get', 'node', host.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')}`, { allowFailure: true, timeoutMs: 20_000 })
            .catch((e: Error) => ({ code: 1, stdout: '', stderr: e.message }));
          if (r.code === 0) return r.stdout.trim() === 'True' ? null : progress(`node ${host.name} is registered but not Ready (Ready=${r.stdout.trim() || 'unknown'})`);
          lastErr = `${s.name}: ${r.stderr.trim().split('\n').pop() ?? ''}`;
          if (/NotFound|not found/.test(r.stderr)) return progress(`node ${host.name} not registered yet (${lastErr})`);
        }
        return progress(lastErr);
      }, () => (refused ? NODE_PASSWORD_REJECTED_LOG : null));
      if (last === null) return;
      const journal = await journalTail(host, AGENT_UNIT);
      if (refused) {
        const m = nodePasswordRejectedMessage(host.name);
        throw new NotReadyError(host.name, m.message, NODE_PASSWORD_REJECTED_LOG, journal, m.hint);
      }
      throw new NotReadyError(
        host.name,
        waitFailureText('k3s agent did not become a Ready node', last, readyTimeoutMs),
        lastSeenText(last),
        journal,
        `check that ${host.name} reaches the API at ${ctx.cluster.spec.apiServerUrl} and every server's ${K3S_API_PORT}, and look at \`journalctl -u ${AGENT_UNIT}\` there`,
      );
    },
  };
}

const upgradesBinary = (c: Change): boolean => c.action === 'update' && 'file' in c.target && c.target.file === K3S_BINARY_PATH;

/** The version an upgraded node's kubelet must report: the pinned one, else what its binary now says. */
async function upgradedVersion(ctx: RunContext<Deployment>, host: Host): Promise<K3sVersion | null> {
  return parseK3sVersion(ctx.cluster.spec.k3s.version) ?? (await installedVersion(host));
}

/**
 * Cordon, drain and uncordon of one agent, run through a server's kubectl,
 * after a wait for the control plane's leaders (k3s-leaders.ts).
 * `kubectl drain` evicts through the eviction API, so PodDisruptionBudgets
 * hold (it retries an eviction a budget refuses until its timeout); DaemonSet
 * pods stay (they would come back at once). `--force` and
 * `--delete-emptydir-data` are passed only when asked, as with kubectl.
 */
export function drainChanges(ctx: RunContext<Deployment>, name: string, via: string, opts: RunOptions, readyTimeoutMs: number, pollIntervalMs: number, phase = 'k3s-agents'): { leaders: Change[]; cordon: Change; drain: Change; uncordon: Change } {
  const node = { host: via, object: `Node/${name}` };
  // Before each drain, not only the first after a server restart: one read when the leaders are there (k3s-leaders.ts).
  const leaders = leaderWaitChange(ctx, phase, name, via, pollIntervalMs);
  const timeoutS = opts.drainTimeoutS ?? 300;
  const kubectl = async (h: Host, args: string[], timeoutMs = 60_000) => h.exec(sh`${kubectlArgs(...args)}`, { timeoutMs });
  const extra = [...(opts.force ? ['--force'] : []), ...(opts.deleteEmptyDirData ? ['--delete-emptydir-data'] : [])];
  return {
    leaders: leaders ? [leaders] : [],
    cordon: {
      action: 'update',
      target: node,
      before: 'schedulable',
      after: 'cordoned',
      summary: `cordon node ${name} (through ${via})`,
      apply: async (h) => {
        await kubectl(h, ['annotate', '--overwrite', 'node', name, `${CORDON_ANNOTATION}=upgrade`]);
        await kubectl(h, ['cordon', name]);
      },
    },
    drain: {
      action: 'run',
      target: node,
      summary: `drain node ${name}: evict its pods, honouring PodDisruptionBudgets, up to ${timeoutS} s${extra.length ? ` (${extra.join(' ')})` : ''}`,
      apply: async (h) => {
        const r = await h.exec(sh`${kubectlArgs('drain', name, '--ignore-daemonsets', `--timeout=${timeoutS}s`, ...extra)}`, { timeoutMs: (timeoutS + 60) * 1000, allowFailure: true });
        if (r.code !== 0) {
          const why = r.stderr.trim().split('\n').slice(-4).join('; ');
          const hint = /emptyDir|local storage/i.test(why)
            ? 'pods with emptyDir volumes block it: run apply again with --delete-emptydir-data (their emptyDir data is lost)'
            : /not managed|ReplicationController|unmanaged|bare pod/i.test(why)
              ? 'pods no controller manages block it: run apply again with --force (they are deleted, not moved)'
              : /disruption budget|Cannot evict/i.test(why)
                ? 'a PodDisruptionBudget allows no eviction now: scale the workload up (or wait for its pods to be Ready elsewhere), then run apply again'
                : `look at \`k3s kubectl get pods -A -o wide --field-selector spec.nodeName=${name}\``;
          throw new Error(`draining ${name} did not finish: ${why || `exit ${r.code}`}; ${name} stays cordoned and keeps its old version, the other nodes serve. Fix: ${hint}`);
        }
      },
    },
    uncordon: {
      action: 'update',
      target: node,
      before: 'cordoned',
      after: 'schedulable',
      summary: `uncordon node ${name} once it is Ready`,
      apply: async (h) => {
        const want = await upgradedVersion(ctx, await ctx.host(name));
        const last = await waitUntil({ timeoutMs: readyTimeoutMs, intervalMs: pollIntervalMs, signal: ctx.signal }, async () => {
          const nodes = await readNodes([h]);
          const why = nodes ? nodeNotBack(nodes.find((x) => x.name === name), name, want) : 'its API does not list the nodes';
          if (why) ctx.events({ type: 'wait', phase: 'k3s-agents', host: name, message: why });
          return why;
        });
        if (last !== null) throw new Error(`${name} did not become Ready within ${seconds(readyTimeoutMs)} (${lastSeenText(last)}); it stays cordoned: look at \`journalctl -u ${AGENT_UNIT}\` on ${name}, then run apply again`);
        await kubectl(h, ['uncordon', name]);
        await kubectl(h, ['annotate', 'node', name, `${CORDON_ANNOTATION}-`]);
      },
    },
  };
}
