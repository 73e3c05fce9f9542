#!/bin/sh
# Air-gap installer for the lab's k3s, modelled on get.k3s.io with
# INSTALL_K3S_SKIP_DOWNLOAD=true (nothing is ever downloaded).
#
#   K3S_TOKEN=... INSTALL_K3S_EXEC="server" sh install.sh
#   K3S_URL=https://LB:6443 K3S_TOKEN=... sh install.sh          (agent)
#
# Binary: $LABK3S_BINARY, else ./bin/k3s or ./k3s next to this script, else an
# existing $BIN_DIR/k3s. The uninstall/killall scripts are taken from this
# script's directory. Like the real script, the service is (re)started only
# when the binary, unit or env file changed (or INSTALL_K3S_FORCE_RESTART=true);
# a change to /etc/rancher/k3s/config.yaml alone needs an explicit restart.
#
# Supported variables: INSTALL_K3S_EXEC, INSTALL_K3S_SKIP_DOWNLOAD (ignored:
# always skipped), INSTALL_K3S_SKIP_START, INSTALL_K3S_SKIP_ENABLE,
# INSTALL_K3S_FORCE_RESTART, INSTALL_K3S_BIN_DIR, INSTALL_K3S_SYSTEMD_DIR,
# INSTALL_K3S_NAME, K3S_URL, K3S_TOKEN, K3S_TOKEN_FILE, K3S_* (written to the
# env file), INSTALL_K3S_VERSION (checked against the binary if set).
set -e

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fatal "run as root"
here=$(cd "$(dirname "$0")" && pwd)
BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}

# command: server unless K3S_URL is set (like get.k3s.io)
if [ -z "${INSTALL_K3S_EXEC:-}" ] && [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  INSTALL_K3S_EXEC="$*"
elif [ $# -gt 0 ]; then
  INSTALL_K3S_EXEC="${INSTALL_K3S_EXEC:-} $*"
fi
set -- ${INSTALL_K3S_EXEC:-}
case "${1:-}" in
  server|agent) CMD_K3S=$1; shift ;;
  *) if [ -n "${K3S_URL:-}" ]; then CMD_K3S=agent; else CMD_K3S=server; fi ;;
esac
if [ "$CMD_K3S" = agent ] && [ -z "${K3S_URL:-}" ] && ! grep -qs '^server:' /etc/rancher/k3s/config.yaml; then
  : # the URL may also come from --server in INSTALL_K3S_EXEC
fi
if [ -n "${INSTALL_K3S_NAME:-}" ]; then SYSTEM_NAME="k3s-$INSTALL_K3S_NAME"
elif [ "$CMD_K3S" = server ]; then SYSTEM_NAME=k3s
else SYSTEM_NAME=k3s-agent; fi
UNIT="$SYSTEMD_DIR/$SYSTEM_NAME.service"
ENVFILE="$SYSTEMD_DIR/$SYSTEM_NAME.service.env"
if [ "$CMD_K3S" = server ]; then UNINSTALL=k3s-uninstall.sh; else UNINSTALL=k3s-agent-uninstall.sh; fi

sum() { [ -f "$1" ] && sha256sum "$1" | cut -d' ' -f1 || echo none; }
before="$(sum "$BIN_DIR/k3s") $(sum "$UNIT") $(sum "$ENVFILE")"

# binary
src=${LABK3S_BINARY:-}
[ -z "$src" ] && [ -x "$here/bin/k3s" ] && src="$here/bin/k3s"
[ -z "$src" ] && [ -x "$here/k3s" ] && src="$here/k3s"
mkdir -p "$BIN_DIR"
if [ -n "$src" ] && [ "$(readlink -f "$src")" != "$(readlink -f "$BIN_DIR/k3s")" ]; then
  info "Installing $src as $BIN_DIR/k3s"
  cp -f "$src" "$BIN_DIR/.k3s.tmp" && chmod 755 "$BIN_DIR/.k3s.tmp" && mv -f "$BIN_DIR/.k3s.tmp" "$BIN_DIR/k3s"
fi
[ -x "$BIN_DIR/k3s" ] || fatal "no k3s binary: set LABK3S_BINARY or put it in $BIN_DIR/k3s"
version=$("$BIN_DIR/k3s" --version | head -1)
if [ -n "${INSTALL_K3S_VERSION:-}" ] && ! echo "$version" | grep -q -- "${INSTALL_K3S_VERSION%%+*}"; then
  fatal "INSTALL_K3S_VERSION=$INSTALL_K3S_VERSION but $BIN_DIR/k3s is: $version"
fi
info "Using $version"
for l in kubectl; do
  if [ ! -e "$BIN_DIR/$l" ] || [ -L "$BIN_DIR/$l" ]; then ln -sfn k3s "$BIN_DIR/$l"; fi
done
for s in k3s-killall.sh "$UNINSTALL"; do
  [ -f "$here/$s" ] || fatal "$here/$s is missing"
  install -m 755 "$here/$s" "$BIN_DIR/$s"
done

# env file: K3S_* from the environment (0600), like get.k3s.io
umask 077
tmp=$(mktemp)
env | grep -E '^(K3S|CONTAINERD)_' | grep -v '^K3S_NODE_NAME=$' | sed -e 's/=\(.*\)/="\1"/' >"$tmp" || true
mkdir -p "$SYSTEMD_DIR"
mv -f "$tmp" "$ENVFILE"; chmod 600 "$ENVFILE"
umask 022

# unit file
{
  cat <<UNIT
[Unit]
Description=Lightweight Kubernetes (the lab's k3s)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
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
UNIT
  printf 'ExecStart=%s/k3s \\\n    %s' "$BIN_DIR" "$CMD_K3S"
  for a in "$@"; do printf " \\\\\n    '%s'" "$a"; done
  printf '\n'
} >"$UNIT.tmp"
mv -f "$UNIT.tmp" "$UNIT"
after="$(sum "$BIN_DIR/k3s") $(sum "$UNIT") $(sum "$ENVFILE")"

command -v systemctl >/dev/null 2>&1 || { info "No systemctl: unit written to $UNIT, not started"; exit 0; }
systemctl daemon-reload
if [ "${INSTALL_K3S_SKIP_ENABLE:-}" != true ]; then
  info "Enabling $SYSTEM_NAME unit"
  systemctl enable "$SYSTEM_NAME" >/dev/null
fi
if [ "${INSTALL_K3S_SKIP_START:-}" = true ] || [ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ]; then
  exit 0
fi
if [ "$before" != "$after" ] || [ "${INSTALL_K3S_FORCE_RESTART:-}" = true ] || ! systemctl is-active -q "$SYSTEM_NAME"; then
  info "Starting $SYSTEM_NAME"
  systemctl restart "$SYSTEM_NAME"
else
  info "No change detected so skipping service start"
fi
