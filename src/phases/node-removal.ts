import type { Problem } from '../engine/errors.js';
import type { AnyPhase, Change, Phase, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { hostsWithRole, type ClusterHost } from '../spec/cluster.js';
import type { NodeState } from './k3s-versions.js';
import { apiView, deleteNodeChanges, hasNodePasswordSecret, type ApiView } from './k3s-nodes.js';
import { drainChanges } from './k3s-agents.js';
import { observeK3sOnHost, uninstallChange, type K3sOnHost } from './reset.js';
import { heldOn, holdChanges, releaseChanges } from './lb-hold.js';

/**
 * Taking k3s nodes out of the cluster (`remove: true`, `k8s-ha node remove
 * NAME`; FACTS, Day-2 operations). The load balancer phase runs before
 * these (cluster/pipelines.ts), so a server is out of every upstream — and
 * nginx/HAProxy reloaded gracefully — before its k3s stops. Then, one host
 * at a time: cordon -> drain (the upgrade's drain: evictions, so
 * PodDisruptionBudgets hold, bounded) -> delete its Node object through a
 * server that stays (k3s deletes the `NAME.node-password.k3s` secret with it;
 * deleted here too when still there, or a host of that name is refused when
 * it joins again: k3s#802) -> k3s-(agent-)uninstall.sh on it. The datastore
 * phase after these drops its account, and the last phase forgets it in the
 * state file.
 *
 * A host that cannot be reached is refused (cluster/open.ts) unless
 * --force: then only what lives elsewhere goes (its Node object and secret
 * here, its upstream and account in their phases).
 */

export interface RemovalObserved {
  role: 'server' | 'agent';
  k3s: K3sOnHost;
  api: ApiView;
  /** Its Node as the staying server lists it (null: not registered). */
  node: NodeState | null;
  secret: boolean;
  /** Load-balancer hosts whose hold file still names this server (a removal cut off after its hold). */
  held: string[];
}

function removingNodes(d: Deployment): ClusterHost[] {
  const nodes = d.spec.removing.filter((h) => h.roles.includes('server') || h.roles.includes('agent'));
  // Agents first: a server leaving is the riskier step and goes last.
  return [...nodes.filter((h) => !h.roles.includes('server')), ...nodes.filter((h) => h.roles.includes('server'))];
}

const roleOf = (h: ClusterHost | undefined): 'server' | 'agent' => (h?.roles.includes('server') ? 'server' : 'agent');

/** cordon -> drain -> delete Node (+ secret) -> uninstall, one reachable host to remove at a time. */
export function nodeRemovalPhase(opts: { pollIntervalMs?: number } = {}): Phase<Deployment, RemovalObserved> {
  return {
    id: 'node-removal',
    title: 'Remove nodes',
    batch: 1,
    targets: (ctx) => removingNodes(ctx.cluster).map((h) => h.name),

    async observe(ctx, host): Promise<RemovalObserved> {
      const role = roleOf(ctx.cluster.spec.removing.find((h) => h.name === host.name));
      const [k3s, api] = await Promise.all([observeK3sOnHost(host, role), apiView(ctx)]);
      const node = api.nodes.find((n) => n.name === host.name) ?? null;
      const secret = api.via ? await hasNodePasswordSecret(await ctx.host(api.via), host.name) : false;
      const held = role === 'server' ? await heldOn(ctx, host.name) : [];
      return { role, k3s, api, node, secret, held };
    },

    diff(ctx, name, o): Change[] {
      const d = ctx.cluster;
      const out: Change[] = [];
      const via = o.api.via;
      const self = d.spec.removing.find((h) => h.name === name);
      // A server: the load balancer phase (before this one) already renders
      // the upstreams without it; the hold (lb-hold.ts, the one way k8s-ha
      // takes a server out) gives the connections still open through it
      // waits.lbDrain to end and closes the rest, so clients move to another
      // server while this one still answers. Released once it is gone, so a
      // server of that name added later is not held out.
      const hold = o.role === 'server' && o.k3s.installed && self;
      if (hold) out.push(...holdChanges(ctx, { name, address: self.address }));
      if (via && o.node) {
        const drain = drainChanges(ctx, name, via, d.options ?? {}, d.spec.waits.agentReadyMs, opts.pollIntervalMs ?? 2000, 'node-removal');
        out.push(...drain.leaders);
        if (!o.node.unschedulable) out.push({ ...drain.cordon, summary: `cordon node ${name} (through ${via}): no new pods` });
        out.push(drain.drain);
      }
      if (via) out.push(...deleteNodeChanges(name, via, { node: o.node !== null, secret: o.secret }, `${name} leaves the cluster`));
      if (o.k3s.installed) out.push(uninstallChange(name, o.role, o.k3s));
      if (hold) out.push(...releaseChanges(ctx, { name, address: self.address }).map((c) => ({ ...c, summary: `forget the hold of ${name} on ${c.target.host} (it is out of every upstream for good)` })));
      else if (o.held.length && self) out.push(...releaseChanges(ctx, { name, address: self.address }, o.held).map((c) => ({ ...c, summary: `forget the hold of ${name} on ${c.target.host} (left by a removal cut off)` })));
      return out;
    },

    preflight(ctx, observed): Problem[] {
      const problems: Problem[] = [];
      for (const [name, o] of observed) {
        if (o.api.via || !(o.k3s.installed || o.node)) continue;
        problems.push(
          ctx.cluster.options?.force
            ? {
                severity: 'warning',
                path: 'hosts',
                message: `no server that stays answers with the Node list: ${name} is uninstalled without being drained, and its Node object (if any) stays in the datastore`,
                hint: `once a server answers again, \`k3s kubectl delete node ${name}\` there`,
              }
            : {
                severity: 'error',
                path: 'hosts',
                message: `no server that stays answers with the Node list, so ${name} can be neither drained nor its Node object deleted`,
                hint: 'bring a server back first (`k8s-ha status` shows which is down); or run again with --force to uninstall it without draining',
              },
        );
      }
      return problems;
    },
  };
}

interface DeadObserved {
  api: ApiView;
  /** Unreachable hosts to remove: whether their Node and secret exist. */
  dead: { name: string; node: boolean; secret: boolean }[];
}

/**
 * --force for hosts that cannot be reached: their Node objects and secrets,
 * through a server that stays (one step on it; nothing runs on the dead host).
 */
export function deadNodeRemovalPhase(): Phase<Deployment, DeadObserved> {
  const dead = (ctx: RunContext<Deployment>) => removingNodes(ctx.cluster).filter((h) => ctx.unreachable?.(h.name));
  return {
    id: 'node-removal-dead',
    title: 'Remove unreachable nodes (--force)',
    targets: (ctx) => {
      if (!dead(ctx).length) return [];
      const s = hostsWithRole(ctx.cluster.spec, 'server')[0];
      return s ? [s.name] : [];
    },
    async observe(ctx): Promise<DeadObserved> {
      const api = await apiView(ctx);
      const h = api.via ? await ctx.host(api.via) : null;
      const out: DeadObserved['dead'] = [];
      for (const x of dead(ctx)) out.push({ name: x.name, node: api.nodes.some((n) => n.name === x.name), secret: h ? await hasNodePasswordSecret(h, x.name) : false });
      return { api, dead: out };
    },
    diff(ctx, _host, o): Change[] {
      // Without --force the plan refuses these hosts (cluster/open.ts).
      if (!ctx.cluster.options?.force || !o.api.via) return [];
      return o.dead.flatMap((x) => deleteNodeChanges(x.name, o.api.via!, x, `${x.name} cannot be reached: removed with --force`));
    },
  };
}

/** Where the state-file step runs: the engine needs a host; the change itself is local. */
function anchorHost(d: Deployment): string | undefined {
  return (hostsWithRole(d.spec, 'datastore')[0] ?? hostsWithRole(d.spec, 'server')[0])?.name;
}

/**
 * The last step: the removed hosts forgotten in the state file (their record
 * and pinned host key), so a later plan does not ask for them and a new
 * machine under that address is pinned afresh. Runs only after every earlier
 * phase succeeded (the engine stops at the first failure).
 */
export function forgetRemovedPhase(): Phase<Deployment, string[]> {
  return {
    id: 'node-removal-forget',
    title: 'Forget removed hosts',
    targets: (ctx) => {
      const a = anchorHost(ctx.cluster);
      return a && ctx.cluster.spec.removing.length && ctx.cluster.state ? [a] : [];
    },
    observe: async (ctx) => ctx.cluster.spec.removing.map((h) => h.name).filter((n) => ctx.cluster.state?.remembers(n)),
    diff(ctx, host, remembered): Change[] {
      const st = ctx.cluster.state;
      if (!st) return [];
      return remembered.map((name) => ({
        action: 'delete' as const,
        // The change is to the local state file; `host` is only where the engine files the step.
        target: { host, object: `state-file/hosts/${name}` },
        before: 'recorded',
        after: null,
        summary: `forget ${name} in ${st.path} (its record and pinned host key)`,
        apply: () => st.forget(name),
      }));
    },
  };
}

/**
 * A phase with only its changes of `keep` (node removal runs the datastore
 * phases for the accounts alone: a removal must not restart MariaDB for an
 * unrelated edit of the file).
 */
export function onlyChanges<O>(phase: Phase<Deployment, O>, keep: (c: Change) => boolean, id = phase.id): AnyPhase<Deployment> {
  const filtered: Phase<Deployment, O> = { ...phase, id, diff: (ctx, host, o, all) => phase.diff(ctx, host, o, all).filter(keep) };
  return filtered as AnyPhase<Deployment>;
}

/** The datastore's account changes (datastore.ts and galera.ts target them so). */
export const isAccountsChange = (c: Change): boolean => 'object' in c.target && / accounts$/.test(c.target.object);
