import type { Cluster } from '../spec/cluster.js';
import type { Secret } from '../util/secret.js';
import type { GaleraTls } from './galera-tls.js';

/**
 * The cluster context every phase works from: the loaded cluster file and
 * the secrets it runs on. Made by cluster/open.ts; phases only read it.
 */
export interface Deployment {
  spec: Cluster;
  secrets: ClusterSecrets;
  /** The cluster file's path (relative local files are resolved from here). */
  file: string;
  /** What the command line asked of this run (default: all off). */
  options?: RunOptions;
  /** The state file, for the one phase that changes it: forgetting removed hosts (phases/node-removal.ts). */
  state?: StateRecord;
}

/** What the removal phases may know and do of the state file (cluster/state.ts). */
export interface StateRecord {
  path: string;
  /** An apply recorded this host. */
  remembers(name: string): boolean;
  /** Drop its record and pinned host key, and save the file. */
  forget(name: string): Promise<void>;
}

/** Flags of `apply` that phases act on. */
export interface RunOptions {
  /**
   * Upgrade a cluster that is not healthy; drain pods no controller manages
   * (kubectl drain --force); remove a host that cannot be reached (its Node
   * object, upstream and account go, nothing runs on it). Default false.
   */
  force?: boolean;
  /** Drain pods with emptyDir volumes, losing that data (kubectl drain --delete-emptydir-data). Default false. */
  deleteEmptyDirData?: boolean;
  /** How long one node's drain may take. Default 300. */
  drainTimeoutS?: number;
}


/** The secrets a cluster runs on, resolved from the cluster file and the state file. */
export interface ClusterSecrets {
  k3sToken: Secret;
  agentToken?: Secret;
  datastorePassword: Secret;
  /** keepalived's VRRP password (only 8 characters are used by keepalived). */
  vrrpPass: Secret;
  /** datastore.galera.tls: the CA and each member's key and certificate (cluster/galera-tls.ts). */
  galeraTls?: GaleraTls;
}
