/**
 * k8s-ha as a library: the same loading, planning and applying the CLI uses.
 *
 *   const run = await ClusterRun.open('cluster.yaml', { events: (e) => console.log(e) });
 *   const plan = await run.plan();   // changes nothing
 *   await run.apply(plan);           // runs that plan, under the cluster lock
 *   await run.close();
 */
export { ClusterRun, loadCluster, type ClusterSecrets, type Deployment, type OpenOptions } from './cluster/open.js';
export { Engine, PlanChangedError, PreflightError, type ApplyResult, type Plan, type PlanStep } from './engine/engine.js';
export { ClusterLock, LockedError } from './engine/lock.js';
export type { EngineEvent, EventSink } from './engine/events.js';
export { HostError, InterruptedError, MultiHostError, UserError, type Problem } from './engine/errors.js';
export type { Change, ChangeAction, ChangeTarget } from './engine/change.js';
export type { Phase, Rollout, RunContext } from './engine/phase.js';
export { applyPipeline } from './cluster/pipelines.js';
export { loadClusterFile, parseCluster } from './spec/load.js';
export type { Cluster, ClusterHost } from './spec/cluster.js';
export { clusterJsonSchema } from './spec/schema.js';
export type { Host } from './transport/host.js';
export { MemoryHost } from './transport/memory.js';
export { Secret } from './util/secret.js';
export { main as cli } from './cli/main.js';
