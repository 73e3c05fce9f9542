/**
 * The flags `k3s server` and `k3s agent` accept (long names, as keys of
 * /etc/rancher/k3s/config.yaml), taken from k3s v1.31's CLI: the documented
 * `--help` output plus the hidden flags in pkg/cli/cmds (disable-etcd,
 * apiserver-port, ...), because users copy those from issues and they work.
 * Extra arguments in the cluster file are checked against these lists so a
 * misspelled flag fails `validate` instead of crash-looping k3s on a host.
 */

/** Flags of `k3s agent`; a server runs an agent, so it accepts most of these too. */
export const K3S_AGENT_FLAGS: readonly string[] = [
  // config and logging
  'config', 'debug', 'v', 'vmodule', 'log', 'alsologtostderr',
  // cluster
  'token', 'token-file', 'server',
  // data
  'data-dir',
  // node
  'node-name', 'with-node-id', 'node-label', 'node-taint',
  'image-credential-provider-bin-dir', 'image-credential-provider-config',
  'selinux', 'lb-server-port', 'protect-kernel-defaults',
  // runtime
  'container-runtime-endpoint', 'default-runtime', 'image-service-endpoint',
  'pause-image', 'snapshotter', 'private-registry',
  'disable-default-registry-endpoint', 'nonroot-devices', 'airgap-extra-registry',
  'docker',
  // networking
  'node-ip', 'bind-address', 'node-external-ip', 'node-internal-dns', 'node-external-dns',
  'resolv-conf', 'flannel-iface', 'flannel-conf', 'flannel-cni-conf',
  'vpn-auth', 'vpn-auth-file', 'disable-apiserver-lb',
  // component flags
  'kubelet-arg', 'kube-proxy-arg',
  // experimental
  'enable-pprof', 'rootless', 'prefer-bundled-bin',
  // deprecated but still parsed
  'no-flannel', 'cluster-secret',
];

const SERVER_ONLY_FLAGS: readonly string[] = [
  // listener
  'https-listen-port', 'advertise-address', 'advertise-port', 'tls-san', 'tls-san-security',
  'supervisor-port', 'apiserver-port', 'apiserver-bind-address',
  // networking
  'cluster-cidr', 'service-cidr', 'service-node-port-range', 'cluster-dns', 'cluster-domain',
  'flannel-backend', 'flannel-ipv6-masq', 'flannel-external-ip', 'egress-selector-mode',
  'servicelb-namespace',
  // client
  'write-kubeconfig', 'write-kubeconfig-mode', 'write-kubeconfig-group',
  // helm
  'helm-job-image',
  // cluster
  'agent-token', 'agent-token-file', 'cluster-init', 'cluster-reset', 'cluster-reset-restore-path',
  // component flags
  'kube-apiserver-arg', 'etcd-arg', 'kube-controller-manager-arg', 'kube-scheduler-arg',
  'kube-cloud-controller-manager-arg', 'kube-controller-arg', 'kube-cloud-controller-arg',
  // datastore
  'datastore-endpoint', 'datastore-cafile', 'datastore-certfile', 'datastore-keyfile',
  'etcd-expose-metrics', 'etcd-disable-snapshots', 'etcd-snapshot-name',
  'etcd-snapshot-schedule-cron', 'etcd-snapshot-retention', 'etcd-snapshot-dir',
  'etcd-snapshot-compress', 'etcd-s3', 'etcd-s3-endpoint', 'etcd-s3-endpoint-ca',
  'etcd-s3-skip-ssl-verify', 'etcd-s3-access-key', 'etcd-s3-secret-key', 'etcd-s3-bucket',
  'etcd-s3-region', 'etcd-s3-folder', 'etcd-s3-proxy', 'etcd-s3-config-secret',
  'etcd-s3-insecure', 'etcd-s3-timeout',
  // storage
  'default-local-storage-path',
  // components
  'disable', 'disable-scheduler', 'disable-cloud-controller', 'disable-kube-proxy',
  'disable-network-policy', 'disable-helm-controller', 'disable-apiserver',
  'disable-controller-manager', 'disable-etcd', 'disable-agent',
  'embedded-registry', 'supervisor-metrics',
  // runtime
  'system-default-registry',
  // secrets
  'secrets-encryption', 'secrets-encryption-provider',
];

/** Agent flags that a server does not take (it has no upstream to balance). */
const AGENT_ONLY_FLAGS = new Set(['disable-apiserver-lb']);

export const K3S_SERVER_FLAGS: readonly string[] = [
  ...K3S_AGENT_FLAGS.filter((f) => !AGENT_ONLY_FLAGS.has(f)),
  ...SERVER_ONLY_FLAGS,
];

/** A flag k8s-ha sets itself, and the cluster file field that controls it. */
export interface ManagedFlag {
  /** Dotted path of the dedicated field, or undefined when it is not configurable. */
  field?: string;
  /** Why k8s-ha owns it. */
  reason: string;
}

const COMMON_MANAGED: Record<string, ManagedFlag> = {
  token: { field: 'k3s.token', reason: 'the token must be the same everywhere and is kept out of config files on the command line' },
  'token-file': { field: 'k3s.token', reason: 'k8s-ha writes the token file itself' },
  server: { reason: 'agents join through the load balancer and servers share the datastore; k8s-ha sets the address' },
  'node-name': { field: 'hosts[].name', reason: 'the node name is the host name' },
  'node-label': { field: 'hosts[].labels', reason: 'labels are set per host' },
  'node-ip': { field: 'hosts[].nodeIP', reason: 'the node address is set per host' },
  config: { reason: 'k8s-ha writes /etc/rancher/k3s/config.yaml itself' },
};

export const MANAGED_SERVER_FLAGS: Readonly<Record<string, ManagedFlag>> = {
  ...COMMON_MANAGED,
  'node-taint': { field: 'k3s.serverTaints', reason: 'server taints are set for every server at once' },
  'agent-token': { field: 'k3s.agentToken', reason: 'it must be identical on every server' },
  'agent-token-file': { field: 'k3s.agentToken', reason: 'k8s-ha writes the token file itself' },
  'datastore-endpoint': { field: 'datastore', reason: 'k8s-ha builds the DSN from the datastore section and keeps the password out of sight' },
  'datastore-cafile': { field: 'datastore.tls', reason: 'k8s-ha issues and places the datastore certificates' },
  'datastore-certfile': { field: 'datastore.tls', reason: 'k8s-ha issues and places the datastore certificates' },
  'datastore-keyfile': { field: 'datastore.tls', reason: 'k8s-ha issues and places the datastore certificates' },
  'cluster-init': { field: 'datastore', reason: 'embedded etcd is not used: the servers share the MariaDB datastore' },
  'cluster-reset': { field: 'datastore', reason: 'embedded etcd is not used: the servers share the MariaDB datastore' },
  'tls-san': { field: 'k3s.tlsSan', reason: 'the load balancer and virtual IP addresses must be on the certificate before first start' },
  disable: { field: 'k3s.disable', reason: 'it must be identical on every server (servicelb!)' },
  'cluster-cidr': { field: 'k3s.clusterCidr', reason: 'it must be identical on every server' },
  'service-cidr': { field: 'k3s.serviceCidr', reason: 'it must be identical on every server' },
  'cluster-dns': { field: 'k3s.clusterDns', reason: 'it must be identical on every server' },
  'cluster-domain': { field: 'k3s.clusterDomain', reason: 'it must be identical on every server' },
  'flannel-backend': { field: 'k3s.flannelBackend', reason: 'it must be identical on every server' },
  'secrets-encryption': { field: 'k3s.secretsEncryption', reason: 'it must be identical on every server' },
  'https-listen-port': { reason: 'the load balancer and its health checks reach the servers on 6443' },
};

export const MANAGED_AGENT_FLAGS: Readonly<Record<string, ManagedFlag>> = {
  ...COMMON_MANAGED,
  'node-taint': { field: 'hosts[].taints', reason: 'taints are set per host' },
};

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The closest name in `list`, or undefined when nothing is close enough to be
 * a plausible typo (more than a third of the name, and at least 2, differs).
 */
export function suggestFlag(name: string, list: readonly string[]): string | undefined {
  const bare = name.replace(/^-+/, '');
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of list) {
    const d = editDistance(bare, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.max(2, Math.floor(bare.length / 3));
  return bestDistance <= limit ? best : undefined;
}
