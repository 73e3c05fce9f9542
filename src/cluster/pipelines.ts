import type { AnyPhase } from '../engine/phase.js';
import type { Deployment } from './deployment.js';
import { loadBalancerPhase } from '../phases/loadbalancer.js';
import { vipPhase } from '../phases/vip.js';
import { datastorePhase } from '../phases/datastore.js';
import { galeraPhase } from '../phases/galera.js';
import { datastoreBackupPhase } from '../phases/datastore-backup.js';
import { k3sServersPhase, type K3sPhaseOptions } from '../phases/k3s-servers.js';
import { k3sAgentsPhase } from '../phases/k3s-agents.js';
import { metallbPhase, type MetallbPhaseOptions } from '../phases/metallb.js';
import { K3sArtifacts } from '../phases/k3s-install.js';
import { deadNodeRemovalPhase, forgetRemovedPhase, isAccountsChange, nodeRemovalPhase, onlyChanges } from '../phases/node-removal.js';

/**
 * The pipelines: one list of phases per command, top to bottom (STYLE.md 1;
 * k0sctl keeps apply, reset and backup lists the same way). The engine
 * (engine/engine.ts) runs whatever list it is given and imports no phase.
 *
 * How to add a command's pipeline (backup, restore, reset, node removal):
 *  - write a function here returning a fresh list, `fooPipeline(opts)`, and
 *    open the cluster with it: `ClusterRun.open(file, { phases: fooPipeline() })`
 *    (cluster/open.ts); `run.plan()` shows it, `run.apply(plan)` runs that plan
 *    under the cluster lock.
 *  - lists are made per run: a phase holding state across its hooks (the
 *    servers phase remembers when each k3s was restarted) is made by a
 *    factory, `fooPhase(opts)`; a stateless phase may be a plain constant.
 *  - a phase (engine/phase.ts) is `targets` + `observe` (read only) + `diff`
 *    (pure: Change data, engine/change.ts) and optionally `preflight`
 *    (refuse before any change, with the way out), `batch` or `rollout`
 *    (order and batches over all hosts' observations), `settle` (a bounded
 *    wait after a host's changes) and `cleanup` (after the run, also on failure).
 *  - a change may run on another host than the step's (`target.host`): drain
 *    an agent through a server, drop a grant on the datastore for a server.
 *  - reuse the phase types: a reset list is the same phases with other
 *    options, not copies of them.
 */

export interface ApplyPipelineOptions {
  /** The k3s phases' waits; the artifacts are shared by servers and agents so each file is hashed once. */
  k3s?: K3sPhaseOptions;
  metallb?: MetallbPhaseOptions;
}

/**
 * `apply`: later phases rely on earlier ones — the load balancer and the
 * datastore exist before the first server starts; servers before agents.
 */
export function applyPipeline(opts: ApplyPipelineOptions = {}): AnyPhase<Deployment>[] {
  const k3s: K3sPhaseOptions = { ...opts.k3s, artifacts: opts.k3s?.artifacts ?? new K3sArtifacts() };
  return [
    loadBalancerPhase, // upstreams without the hosts to remove: a leaving server is out before its k3s stops
    vipPhase,
    nodeRemovalPhase(), // remove: true hosts: cordon, drain, delete Node, uninstall (nothing to do without them)
    deadNodeRemovalPhase(), // --force: the Node objects of hosts to remove that cannot be reached
    datastorePhase, // one MariaDB; nothing to do with Galera
    galeraPhase, // the Galera data nodes and arbitrator; nothing to do without Galera
    datastoreBackupPhase, // datastore.backup: a timer on the writer; removed again when the section goes
    k3sServersPhase(k3s), // one at a time: the first server ready before the next; restarts one at a time
    k3sAgentsPhase(k3s), // joined through the LB; each must reach every server's 6443
    metallbPhase(opts.metallb), // needs the API up, servicelb off on every server, agents for its pods
    forgetRemovedPhase(), // last: removed hosts forgotten in the state file once everything else is done
  ];
}

/**
 * `k8s-ha node remove NAME` (and what `remove: true` does inside apply,
 * above): only the steps a removal needs, in its order. The load balancer
 * (and the VIP's track script, which asks the servers) first, so a leaving
 * server takes no new connection before its k3s stops; the datastore phases
 * for the accounts alone (an unrelated edit of the file waits for apply).
 */
export function removalPipeline(): AnyPhase<Deployment>[] {
  return [
    loadBalancerPhase,
    vipPhase,
    nodeRemovalPhase(),
    deadNodeRemovalPhase(),
    onlyChanges(datastorePhase, isAccountsChange),
    onlyChanges(galeraPhase, isAccountsChange),
    forgetRemovedPhase(),
  ];
}
