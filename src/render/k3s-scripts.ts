import { K3S_BINARY_PATH, K3S_CONFIG_PATH, k3sEnvFilePath, k3sServiceName, k3sUnitPath } from './k3s.js';

/**
 * The helper scripts k3s's own installer always leaves on a node, which
 * users, their runbooks and other tools expect: `k3s-killall.sh` (stop k3s
 * and everything it started, keep the data) and `k3s-uninstall.sh` /
 * `k3s-agent-uninstall.sh` (remove k3s from the host, leave the external
 * datastore alone). k8s-ha installs k3s itself, so it writes its own
 * versions, for the files and units k8s-ha puts there. `k8s-ha reset` runs
 * the same scripts. POSIX sh (dash on Debian); deterministic.
 */

export const KILLALL_PATH = '/usr/local/bin/k3s-killall.sh';
export function uninstallPath(role: 'server' | 'agent'): string {
  return role === 'server' ? '/usr/local/bin/k3s-uninstall.sh' : '/usr/local/bin/k3s-agent-uninstall.sh';
}

const DATA_DIR = '/var/lib/rancher/k3s';
/** Interfaces flannel, the CNI bridge and kube-proxy's IPVS mode create. */
const INTERFACES = ['cni0', 'flannel.1', 'flannel-v6.1', 'kube-ipvs0', 'flannel-wg', 'flannel-wg-v6'];
/** What k8s-ha records about k3s on the host (k3s-install.ts SUMS_DIR, desired.ts PENDING_DIR). */
const K8S_HA_RECORDS = ['/var/lib/k8s-ha/sha256/usr_local_bin_k3s', '/var/lib/k8s-ha/pending/k3s', '/var/lib/k8s-ha/pending/k3s-agent'];

export function renderKillall(): string {
  return `#!/bin/sh
# Stop k3s and everything it started on this node: its units, the container
# shims and their processes, the pods' mounts, network namespaces and
# interfaces, and the iptables rules kube-proxy, flannel and the CNI plugins
# added. The cluster's data (${DATA_DIR}, the datastore) is kept: start k3s
# again with systemctl. Written by k8s-ha, like the script k3s's installer leaves.
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
DATA_DIR=\${K3S_DATA_DIR:-${DATA_DIR}}

for unit in /etc/systemd/system/k3s*.service; do
  [ -s "$unit" ] && systemctl stop "$(basename "$unit")"
done

# Every descendant of a process, depth first (ps -o ppid,pid; no pstree on a minimal host).
descendants() {
  for p in "$@"; do
    echo "$p"
    descendants $(ps -e -o ppid= -o pid= | awk -v p="$p" '$1 == p { print $2 }')
  done
}
# containerd-shims run from the data dir and outlive k3s (KillMode=process).
shims=$(ps -e -o pid= -o args= | awk -v d="$DATA_DIR/data/" 'index($2, d) == 1 && $2 ~ /containerd-shim/ { print $1 }')
[ -n "$shims" ] && kill -9 $(descendants $shims) 2>/dev/null
# Any k3s process not under a unit (started by hand, or a unit not stopping).
left=$(ps -e -o pid= -o comm= | awk '$2 == "k3s" || $2 == "k3s-server" || $2 == "k3s-agent" { print $1 }')
[ -n "$left" ] && kill -9 $(descendants $left) 2>/dev/null

# Unmount (deepest first) and remove what the pods mounted.
unmount_under() {
  awk -v p="$1" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -f "$m" 2>/dev/null && rm -rf "$m"
  done
}
unmount_under /run/k3s
unmount_under /var/lib/kubelet/pods
unmount_under /var/lib/kubelet/plugins
unmount_under /run/netns/cni-

ip netns show 2>/dev/null | awk '/^cni-/ { print $1 }' | while read -r ns; do ip netns delete "$ns"; done
ip link show 2>/dev/null | awk -F': ' '/master cni0/ { sub(/@.*/, "", $2); print $2 }' | while read -r veth; do ip link delete "$veth"; done
for i in ${INTERFACES.join(' ')}; do
  ip link show "$i" >/dev/null 2>&1 && ip link delete "$i"
done
rm -rf /var/lib/cni

# Rules kube-proxy (KUBE-), the CNI plugins (CNI-) and flannel added; every other rule stays.
for t in iptables ip6tables; do
  if command -v "$t-save" >/dev/null 2>&1 && command -v "$t-restore" >/dev/null 2>&1; then
    "$t-save" 2>/dev/null | grep -v -e KUBE- -e CNI- -i -e flannel | "$t-restore" 2>/dev/null
  fi
done
exit 0
`;
}

export function renderUninstall(role: 'server' | 'agent'): string {
  const unit = k3sServiceName(role);
  const other = uninstallPath(role === 'server' ? 'agent' : 'server');
  return `#!/bin/sh
# Remove k3s (${role}) from this node: stop it and all it started
# (${KILLALL_PATH}), its unit, config, data, binary and these scripts.
# The external datastore is not touched (drop its database yourself, or use
# \`k8s-ha reset --datastore\`); /etc/rancher/node/password is kept, as k3s
# keeps it, so the node can join again under the same name. Delete the Node
# object first (kubectl delete node NAME) when the host leaves the cluster.
# Written by k8s-ha, like the script k3s's installer leaves.
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
DATA_DIR=\${K3S_DATA_DIR:-${DATA_DIR}}

[ -x ${KILLALL_PATH} ] && ${KILLALL_PATH}

systemctl disable ${unit} 2>/dev/null
systemctl reset-failed ${unit} 2>/dev/null
rm -f ${k3sUnitPath(role)} ${k3sEnvFilePath(role)}
systemctl daemon-reload

# kubectl, crictl, ctr: only links to k3s, never a tool the host had.
for cmd in kubectl crictl ctr; do
  [ -L /usr/local/bin/$cmd ] && [ "$(readlink /usr/local/bin/$cmd)" = k3s -o "$(readlink /usr/local/bin/$cmd)" = ${K3S_BINARY_PATH} ] && rm -f /usr/local/bin/$cmd
done

# A directory with mounts still in it loses everything but the mount points.
clean_dir() {
  if ! grep -q " $1" /proc/self/mounts; then
    rm -rf "$1"
    return
  fi
  for p in "$1"/* "$1"/.[!.]*; do
    [ -e "$p" ] || continue
    if [ -d "$p" ] && grep -q " $p" /proc/self/mounts; then clean_dir "$p"; else rm -rf "$p"; fi
  done
}

rm -rf ${K3S_CONFIG_PATH.replace(/\/config\.yaml$/, '')} /run/k3s /run/flannel
clean_dir "$DATA_DIR"
rm -rf /var/lib/kubelet
# The kubelet's pod cgroups (empty once every pod was ended above) and its
# volume plugin folder: nothing of the node may stay behind.
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
done
rmdir /usr/libexec/kubernetes/kubelet-plugins/volume/exec /usr/libexec/kubernetes/kubelet-plugins/volume \
  /usr/libexec/kubernetes/kubelet-plugins /usr/libexec/kubernetes 2>/dev/null
rmdir /etc/rancher /var/lib/rancher 2>/dev/null
# kubectl's cache, made by \`k3s kubectl\` run as root (k8s-ha runs it on
# servers): only a cache; the folder goes only when nothing else is in it.
rm -rf /root/.kube/cache /root/.kube/http-cache
rmdir /root/.kube 2>/dev/null
rm -f ${K8S_HA_RECORDS.join(' ')}
rmdir /var/lib/k8s-ha/sha256 /var/lib/k8s-ha/pending /var/lib/k8s-ha 2>/dev/null
rm -f ${K3S_BINARY_PATH} ${KILLALL_PATH} ${other}
rm -f "$0"
exit 0
`;
}
