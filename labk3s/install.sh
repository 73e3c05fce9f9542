#!/bin/sh
# Installer for the lab's k3s (a test double of k3s), standing in for k3s's
# own install script (get.k3s.io) on its offline path, so that another tool's
# installs work against the lab: it takes the same environment variables and
# arguments, writes the same files (unit, 0600 env file, the kubectl
# link, k3s-killall.sh, k3s-uninstall.sh or k3s-agent-uninstall.sh, all
# written by this script itself) and restarts the service only when the
# binary, unit or env file changed. It never downloads anything: without
# INSTALL_K3S_SKIP_DOWNLOAD it installs the lab's binary from beside this
# script (or $LABK3S_BINARY), or fails saying so.
#
#   INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC="server --disable=traefik" sh install.sh
#   INSTALL_K3S_SKIP_DOWNLOAD=true K3S_URL=https://LB:6443 K3S_TOKEN=... sh install.sh   (agent)
#   sh install.sh server --disable=traefik        (arguments are appended to INSTALL_K3S_EXEC)
#
# Variables, as k3s's script reads them: INSTALL_K3S_EXEC (or arguments),
# K3S_URL (https:// only; sets the default command to agent and then needs
# K3S_TOKEN or K3S_TOKEN_FILE), K3S_TOKEN, K3S_TOKEN_FILE, K3S_* and
# CONTAINERD_* and *_PROXY (into the env file), INSTALL_K3S_SKIP_DOWNLOAD
# (true|binary: use the binary already in BIN_DIR), INSTALL_K3S_VERSION
# (checked against the binary's --version), INSTALL_K3S_BIN_DIR,
# INSTALL_K3S_BIN_DIR_READ_ONLY, INSTALL_K3S_SYSTEMD_DIR, INSTALL_K3S_NAME,
# INSTALL_K3S_TYPE, INSTALL_K3S_SYMLINK (skip|force), INSTALL_K3S_SKIP_ENABLE,
# INSTALL_K3S_SKIP_START, INSTALL_K3S_FORCE_RESTART. Accepted and without
# effect here (no SELinux, no channel server in the lab):
# INSTALL_K3S_SELINUX_WARN, INSTALL_K3S_SKIP_SELINUX_RPM, INSTALL_K3S_CHANNEL,
# INSTALL_K3S_CHANNEL_URL. INSTALL_K3S_COMMIT / INSTALL_K3S_PR need a
# download: refused.
set -e
set -o noglob

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fatal "run as root (the lab's k3s installs a systemd unit)"
here=$(cd "$(dirname "$0")" && pwd)

# --- the command: INSTALL_K3S_EXEC then the arguments, one command line
if [ -n "${INSTALL_K3S_EXEC:-}" ]; then
  # shellcheck disable=SC2086 # word splitting is how k3s's script reads INSTALL_K3S_EXEC
  set -- ${INSTALL_K3S_EXEC} "$@"
fi
case "${1:-}" in
  -*|"")
    if [ -z "${K3S_URL:-}" ]; then CMD_K3S=server
    else
      [ -n "${K3S_TOKEN:-}" ] || [ -n "${K3S_TOKEN_FILE:-}" ] ||
        fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
      CMD_K3S=agent
    fi ;;
  *) CMD_K3S=$1; shift ;;
esac
case "${K3S_URL:-}" in ""|https://*) ;; *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;; esac
[ -z "${INSTALL_K3S_COMMIT:-}${INSTALL_K3S_PR:-}" ] || fatal "INSTALL_K3S_COMMIT / INSTALL_K3S_PR need a download; the lab's k3s installs offline only"

if [ -n "${INSTALL_K3S_NAME:-}" ]; then SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
elif [ "$CMD_K3S" = server ]; then SYSTEM_NAME=k3s
else SYSTEM_NAME=k3s-${CMD_K3S}; fi
case "$SYSTEM_NAME" in *[!A-Za-z0-9.@:_-]*) fatal "Invalid characters for system name: ${SYSTEM_NAME}" ;; esac

BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
SYSTEMD_TYPE=${INSTALL_K3S_TYPE:-notify}
[ "${INSTALL_K3S_BIN_DIR_READ_ONLY:-}" = true ] && INSTALL_K3S_SKIP_DOWNLOAD=true
UNIT="$SYSTEMD_DIR/$SYSTEM_NAME.service"
ENVFILE="$SYSTEMD_DIR/$SYSTEM_NAME.service.env"
UNINSTALL=${UNINSTALL_K3S_SH:-$BIN_DIR/$SYSTEM_NAME-uninstall.sh}
KILLALL=${KILLALL_K3S_SH:-$BIN_DIR/k3s-killall.sh}
command -v systemctl >/dev/null 2>&1 || fatal "Can not find systemd to use as a process supervisor for k3s"

sum() { if [ -f "$1" ]; then sha256sum "$1" | cut -d' ' -f1; else echo none; fi; }
before="$(sum "$BIN_DIR/k3s") $(sum "$UNIT") $(sum "$ENVFILE")"

# --- the binary
case "${INSTALL_K3S_SKIP_DOWNLOAD:-}" in
  true|binary)
    info "Skipping k3s download and verify"
    [ -x "$BIN_DIR/k3s" ] || fatal "Executable k3s binary not found at $BIN_DIR/k3s" ;;
  *)
    src=${LABK3S_BINARY:-}
    [ -n "$src" ] || { [ -x "$here/bin/k3s" ] && src="$here/bin/k3s"; } || true
    [ -n "$src" ] || { [ -x "$here/k3s" ] && src="$here/k3s"; } || true
    [ -n "$src" ] || fatal "the lab's k3s downloads nothing: put the binary at $BIN_DIR/k3s and set INSTALL_K3S_SKIP_DOWNLOAD=true, or set LABK3S_BINARY"
    if [ "$(sum "$src")" = "$(sum "$BIN_DIR/k3s")" ]; then
      info "Skipping binary copy, installed k3s matches hash"
    else
      info "Installing k3s to $BIN_DIR/k3s (from $src)"
      mkdir -p "$BIN_DIR"
      cp -f "$src" "$BIN_DIR/.k3s.tmp.$$" && chmod 755 "$BIN_DIR/.k3s.tmp.$$" && mv -f "$BIN_DIR/.k3s.tmp.$$" "$BIN_DIR/k3s"
    fi ;;
esac
version=$("$BIN_DIR/k3s" --version | head -1)
if [ -n "${INSTALL_K3S_VERSION:-}" ] && [ "$(echo "$version" | cut -d' ' -f3)" != "$INSTALL_K3S_VERSION" ]; then
  fatal "INSTALL_K3S_VERSION=$INSTALL_K3S_VERSION, but $BIN_DIR/k3s is: $version"
fi
info "Using $version"

if [ "${INSTALL_K3S_BIN_DIR_READ_ONLY:-}" != true ]; then
  # --- kubectl: linked unless the command exists (or INSTALL_K3S_SYMLINK says). k3s also
  # links crictl and ctr; the lab's k3s has no such commands (Debian's ctr serves), so it does not.
  if [ "${INSTALL_K3S_SYMLINK:-}" != skip ]; then
    for cmd in kubectl; do
      if [ -e "$BIN_DIR/$cmd" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
        info "Skipping $BIN_DIR/$cmd symlink to k3s, already exists"
      elif [ -n "$(command -v "$cmd" 2>/dev/null || true)" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
        info "Skipping $BIN_DIR/$cmd symlink to k3s, command exists in PATH at $(command -v "$cmd")"
      else
        info "Creating $BIN_DIR/$cmd symlink to k3s"
        ln -sf k3s "$BIN_DIR/$cmd"
      fi
    done
  fi

  # --- k3s-killall.sh: stop every k3s unit, then what they leave running or mounted
  info "Creating killall script $KILLALL"
  cat >"$KILLALL" <<'KILLALL'
#!/bin/sh
# Written by the lab's k3s install.sh (a test double of k3s): stops every
# k3s unit, kills the containers' shims and leftover k3s processes, and
# removes the mounts, network namespaces, interfaces and iptables rules the
# node parts made. Data (the datastore, /var/lib/rancher/k3s) stays.
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR "$0" "$@"
K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}
set -x
for unit in /etc/systemd/system/k3s*.service; do
  [ -s "$unit" ] && systemctl stop "$(basename "$unit")"
done

# Processes below a pid, deepest last (the pid itself first).
descendants() {
  for p in "$@"; do
    echo "$p"
    descendants $(ps -e -o ppid= -o pid= | awk -v p="$p" '$1 == p { print $2 }')
  done
}
{ set +x; } 2>/dev/null
shims=$(ps -e -o pid= -o args= | awk '$2 ~ /containerd-shim/ && /-namespace k8s.io/ { print $1 }')
# A containerd the lab's k3s started (on k3s's socket path) goes with it.
ctrd=$(ps -e -o pid= -o args= | awk '$2 ~ /containerd$/ && /\/run\/k3s\/containerd/ { print $1 }')
left=$(ps -e -o pid= -o comm= | awk '$2 == "k3s" { print $1 }')
victims=$(descendants $shims $ctrd $left)
set -x
[ -z "$victims" ] || kill -9 $victims 2>/dev/null

# Mounts under a path, deepest first, unmounted and removed.
unmount_below() {
  { set +x; } 2>/dev/null
  awk -v p="$1" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -f "$m" && rm -rf "$m"
  done
  set -x
}
unmount_below /run/k3s
unmount_below /var/lib/kubelet/pods
unmount_below /var/lib/kubelet/plugins
unmount_below /run/netns/cni-
ip netns show 2>/dev/null | awk '/^cni-/ { print $1 }' | while read -r ns; do ip netns delete "$ns"; done

{ set +x; } 2>/dev/null
for link in $(ip -o link show 2>/dev/null | awk -F': ' '/master cni0/ { sub(/@.*/, "", $2); print $2 }'); do ip link delete "$link"; done
set -x
for link in cni0 flannel.1 flannel-v6.1 kube-ipvs0 flannel-wg flannel-wg-v6; do
  ip link show "$link" >/dev/null 2>&1 && ip link delete "$link"
done
rm -rf /var/lib/cni/
if command -v iptables-save >/dev/null 2>&1; then
  iptables-save | grep -v -e KUBE- -e CNI- -i -e flannel | iptables-restore
fi
if command -v ip6tables-save >/dev/null 2>&1; then
  ip6tables-save | grep -v -e KUBE- -e CNI- -i -e flannel | ip6tables-restore
fi
exit 0
KILLALL
  chmod 755 "$KILLALL"

  # --- the uninstall script for this unit
  info "Creating uninstall script $UNINSTALL"
  cat >"$UNINSTALL" <<UNINSTALL
#!/bin/sh
# Written by the lab's k3s install.sh (a test double of k3s): removes the
# $SYSTEM_NAME unit and, when no other k3s unit is left, the lab's k3s
# with its files. An external datastore is not touched.
set -x
[ "\$(id -u)" -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR "\$0" "\$@"
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}
$KILLALL
systemctl disable $SYSTEM_NAME
systemctl reset-failed $SYSTEM_NAME
rm -f $UNIT $ENVFILE
systemctl daemon-reload
trap 'rm -f $UNINSTALL' EXIT
if ls $SYSTEMD_DIR/k3s*.service >/dev/null 2>&1; then
  { set +x; } 2>/dev/null; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
  exit 0
fi
for cmd in kubectl crictl ctr; do
  [ -L $BIN_DIR/\$cmd ] && rm -f $BIN_DIR/\$cmd
done
# Mounted folders below the data folder stay (killall unmounted what it could).
remove_unmounted() {
  if ! grep -q " \$1" /proc/mounts; then rm -rf "\$1"; return; fi
  for p in "\$1"/*; do
    if [ -d "\$p" ] && grep -q " \$p" /proc/mounts; then remove_unmounted "\$p"; else rm -rf "\$p"; fi
  done
}
rm -rf /etc/rancher/k3s /run/k3s /run/flannel
remove_unmounted "\$K3S_DATA_DIR"
rm -rf /var/lib/kubelet
rm -f $BIN_DIR/k3s $KILLALL
exit 0
UNINSTALL
  chmod 755 "$UNINSTALL"
fi

# --- the env file: K3S_*, CONTAINERD_* and proxy variables, 0600
info "env: Creating environment file $ENVFILE"
mkdir -p "$SYSTEMD_DIR"
( umask 077
  { env | grep -E '^(K3S|CONTAINERD)_' || true; env | grep -Ei '^(NO|HTTP|HTTPS)_PROXY=' || true; } |
    LC_ALL=C sort | sed -e 's/=\(.*\)/="\1"/' >"$ENVFILE.tmp" )
chmod 600 "$ENVFILE.tmp"
mv -f "$ENVFILE.tmp" "$ENVFILE"

# --- the unit; every argument quoted on its own line
info "systemd: Creating service file $UNIT"
{
  cat <<UNIT
[Unit]
Description=Lightweight Kubernetes (the lab's k3s, a test double of k3s)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=$SYSTEMD_TYPE
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$ENVFILE
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
UNIT
  printf 'ExecStart=%s/k3s \\\n    %s' "$BIN_DIR" "$CMD_K3S"
  for a in "$@"; do printf " \\\\\n\t'%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")"; done
  printf '\n'
} >"$UNIT.tmp"
mv -f "$UNIT.tmp" "$UNIT"
after="$(sum "$BIN_DIR/k3s") $(sum "$UNIT") $(sum "$ENVFILE")"

systemctl daemon-reload
[ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ] && exit 0
info "systemd: Enabling $SYSTEM_NAME unit"
systemctl enable "$SYSTEM_NAME" >/dev/null 2>&1
[ "${INSTALL_K3S_SKIP_START:-}" = true ] && exit 0
if [ "$before" = "$after" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ] && systemctl is-active -q "$SYSTEM_NAME"; then
  info "No change detected so skipping service start"
  exit 0
fi
info "systemd: Starting $SYSTEM_NAME"
systemctl restart "$SYSTEM_NAME"
