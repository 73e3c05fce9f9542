/** The cluster file: schema, loading, checks and the resolved Cluster. Pure except loadClusterFile. */
export { loadClusterFile, parseCluster, type Env, type LoadResult } from './load.js';
export {
  clusterSecrets,
  datastoreEndpointHost,
  datastoreEndpointAddress,
  galeraNodes,
  hasRole,
  hostByName,
  hostsWithRole,
  resolveSecretRef,
  type Cluster,
  type ClusterHost,
  type Datastore,
  type FlagValue,
  type HostSsh,
  type K3s,
  type LoadBalancer,
  type MetalLB,
  type SecretRef,
  type VirtualIp,
} from './cluster.js';
export {
  formatDiagnostics,
  formatPath,
  hasErrors,
  parsePath,
  sortDiagnostics,
  type Diagnostic,
  type PathSegment,
  type Severity,
} from './diagnostics.js';
export {
  API_VERSION,
  ClusterFileSchema,
  K3S_COMPONENTS,
  ROLES,
  clusterJsonSchema,
  type ClusterFile,
  type Role,
} from './schema.js';
export { crossFieldChecks } from './checks.js';
export { K3S_AGENT_FLAGS, K3S_SERVER_FLAGS, MANAGED_AGENT_FLAGS, MANAGED_SERVER_FLAGS, suggestFlag } from './k3s-flags.js';
export { formatDuration, parseDuration } from './duration.js';
export { starterClusterFile, type StarterAnswers } from './starter.js';
export { clusterReferenceMarkdown, clusterSchemaJsonText } from './reference.js';
