/**
 * k8s-ha as a library: the same loading, planning and applying the CLI uses.
 *
 *   const run = await ClusterRun.open('cluster.yaml', { events: (e) => console.log(e) });
 *   const plan = await run.plan();   // changes nothing
 *   await run.apply();               // converges
 *   await run.close();
 */
export { ClusterRun, loadCluster, type ClusterSecrets, type Deployment, type OpenOptions } from './engine/run.js';
export { Engine, PreflightError, type ApplyResult, type Plan, type PlanStep } from './engine/engine.js';
export type { EngineEvent, EventSink } from './engine/events.js';
export { HostError, InterruptedError, MultiHostError, UserError, type Problem } from './engine/errors.js';
export type { Change, Phase, RunContext } from './engine/phase.js';
export { pipeline } from './engine/pipeline.js';
export { loadClusterFile, parseCluster } from './spec/load.js';
export type { Cluster, ClusterHost } from './spec/cluster.js';
export { clusterJsonSchema } from './spec/schema.js';
export type { Host } from './transport/host.js';
export { MemoryHost } from './transport/memory.js';
export { Secret } from './util/secret.js';
export { main as cli } from './cli/main.js';
