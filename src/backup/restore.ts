import { readFile, rm, writeFile } from 'node:fs/promises';
import type { AnyPhase } from '../engine/phase.js';
import { ClusterRun, loadCluster, type Deployment, type OpenOptions } from '../cluster/open.js';
import { StateFile } from '../cluster/state.js';
import { loadBalancerPhase } from '../phases/loadbalancer.js';
import { vipPhase } from '../phases/vip.js';
import { datastorePhase } from '../phases/datastore.js';
import { datastoreBackupPhase } from '../phases/datastore-backup.js';
import { k3sServersPhase, SERVER_UNIT, type K3sPhaseOptions } from '../phases/k3s-servers.js';
import { AGENT_UNIT, k3sAgentsPhase } from '../phases/k3s-agents.js';
import { metallbPhase } from '../phases/metallb.js';
import { K3sArtifacts } from '../phases/k3s-install.js';
import { tokenPassphrase } from '../phases/k3s-token.js';
import { afterStop, restoreLoadPhase, restoreNodePasswordsPhase, stopPhases, type RestoreJob } from '../phases/restore.js';
import type { Cluster } from '../spec/cluster.js';
import type { DecryptWith } from './crypt.js';
import { Secret } from '../util/secret.js';
import { prepareRestore } from './restore-prep.js';

/**
 * `k8s-ha restore FILE`: onto the same machines or fresh ones named in the
 * cluster file. The pipeline, top to bottom: apply's load balancer, virtual
 * IP and datastore phases (a fresh machine gets MariaDB, the database and the
 * accounts), stop k3s on every agent then every server, replace the kine
 * database and move its revision up, then apply's servers (one at a time,
 * with the backup's token) and agents and MetalLB. `verify` follows.
 */

export function restorePipeline(job: RestoreJob, k3s: K3sPhaseOptions = {}): AnyPhase<Deployment>[] {
  const opts: K3sPhaseOptions = { ...k3s, artifacts: k3s.artifacts ?? new K3sArtifacts() };
  return [
    loadBalancerPhase,
    vipPhase,
    datastorePhase,
    datastoreBackupPhase,
    ...stopPhases(job), // agents first, then servers
    restoreLoadPhase(job), // the dump, then the revision above every one served
    restoreNodePasswordsPhase(job), // each node's password as the restored datastore knows it
    afterStop(job, k3sServersPhase(opts), SERVER_UNIT), // one at a time, the backup's token
    afterStop(job, k3sAgentsPhase(opts), AGENT_UNIT),
    metallbPhase(),
  ];
}

/** The state file's secrets a cluster file leaves to k8s-ha ("generate"), by their state-file name. */
function generated(c: Cluster): Set<string> {
  const out = new Set<string>();
  if (c.k3s.token.source === 'generate') out.add('k3sToken');
  if (c.k3s.agentToken?.source === 'generate') out.add('agentToken');
  if (c.datastore.password.source === 'generate') out.add('datastorePassword');
  if (!c.loadBalancer.virtualIP?.authPass) out.add('vrrpPass');
  return out;
}

export interface OpenedRestore {
  run: ClusterRun;
  job: RestoreJob;
  /** What the restore changes in the state file, in words (no values). */
  stateChanges: string[];
  /** Put the state file back as it was (the user said no, or nothing was applied). */
  revertState(): Promise<void>;
}

/**
 * Check the archive (no host contacted), put the backup's secrets in the
 * state file (only those the cluster file leaves to k8s-ha), and open the
 * cluster over the restore pipeline. Refusals are UserErrors (exit 2).
 */
export async function openRestore(clusterFile: string, archivePath: string, key: DecryptWith, open: OpenOptions = {}): Promise<OpenedRestore> {
  const { cluster } = loadCluster(clusterFile, open.env ?? process.env);
  const source = await prepareRestore(archivePath, cluster, key);
  const statePath = StateFile.pathFor(clusterFile);
  const original = await readFile(statePath).catch(() => null);
  const state = await StateFile.load(statePath, cluster.name);
  const stateChanges: string[] = [];
  const mine = generated(cluster);
  const incoming: Record<string, string> = { ...source.secrets.state, k3sToken: tokenPassphrase(source.token.reveal()) };
  if (source.secrets.agentToken) incoming.agentToken = source.secrets.agentToken;
  for (const [name, value] of Object.entries(incoming).sort()) {
    if (!mine.has(name)) continue;
    const had = state.has(name) ? state.exportSecrets()[name] : undefined;
    if (had === value) continue;
    state.setSecret(name, new Secret(value));
    stateChanges.push(`${had === undefined ? 'set' : 'replace'} ${name} from the backup`);
  }
  await state.save();
  const revertState = async (): Promise<void> => {
    if (!stateChanges.length) return;
    if (original) await writeFile(statePath, original, { mode: 0o600 });
    else await rm(statePath, { force: true });
  };
  const job: RestoreJob = { source, loaded: false };
  try {
    const run = await ClusterRun.open(clusterFile, { ...open, phases: restorePipeline(job) });
    return { run, job, stateChanges, revertState };
  } catch (e) {
    await revertState();
    throw e;
  }
}
