import type { AnyPhase } from './phase.js';
import type { Deployment } from './run.js';
import { loadBalancerPhase } from '../phases/loadbalancer.js';
import { vipPhase } from '../phases/vip.js';
import { datastorePhase } from '../phases/datastore.js';
import { galeraPhase } from '../phases/galera.js';
import { datastoreBackupPhase } from '../phases/datastore-backup.js';
import { k3sServers } from '../phases/k3s-servers.js';
import { k3sAgents } from '../phases/k3s-agents.js';
import { metallbPhase } from '../phases/metallb.js';

/**
 * The apply pipeline, top to bottom (STYLE.md 1). Each phase observes its
 * hosts, diffs them against the cluster file and, on apply, changes only
 * what differs. Later phases rely on earlier ones: the load balancer and the
 * datastore exist before the first server starts; servers before agents.
 */
export const pipeline: AnyPhase<Deployment>[] = [
  loadBalancerPhase,
  vipPhase,
  datastorePhase, // one MariaDB; nothing to do with Galera
  galeraPhase, // the Galera data nodes and arbitrator; nothing to do without Galera
  datastoreBackupPhase, // datastore.backup: a timer on the writer; removed again when the section goes
  k3sServers, // serial: the first server ready before the next; restarts one at a time
  k3sAgents, // joined through the LB; each must reach every server's 6443
  metallbPhase(), // last: needs the API up, servicelb off on every server, agents for its pods
];
