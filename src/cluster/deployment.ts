import type { Cluster } from '../spec/cluster.js';
import type { Secret } from '../util/secret.js';

/**
 * The cluster context every phase works from: the loaded cluster file and
 * the secrets it runs on. Made by cluster/open.ts; phases only read it.
 */
export interface Deployment {
  spec: Cluster;
  secrets: ClusterSecrets;
  /** The cluster file's path (relative local files are resolved from here). */
  file: string;
}

/** The secrets a cluster runs on, resolved from the cluster file and the state file. */
export interface ClusterSecrets {
  k3sToken: Secret;
  agentToken?: Secret;
  datastorePassword: Secret;
  /** keepalived's VRRP password (only 8 characters are used by keepalived). */
  vrrpPass: Secret;
}
