#!/bin/sh
# Uninstall the lab's k3s agent, like k3s's k3s-agent-uninstall.sh: stop and
# remove the unit, kill remaining processes, remove /etc/rancher/k3s,
# /var/lib/rancher/k3s, the binary and its symlinks. The external
# datastore is NOT touched (agents never use it).
set -x
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"

BIN_DIR=${BIN_DIR:-/usr/local/bin}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
SERVICE=${K3S_SERVICE_NAME:-k3s-agent}

if command -v systemctl >/dev/null 2>&1; then
  systemctl stop "$SERVICE" 2>/dev/null
  systemctl disable "$SERVICE" 2>/dev/null
  systemctl reset-failed "$SERVICE" 2>/dev/null
fi
rm -f "$SYSTEMD_DIR/$SERVICE.service" "$SYSTEMD_DIR/$SERVICE.service.env"
command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload 2>/dev/null

if [ -x "$BIN_DIR/k3s-killall.sh" ]; then
  "$BIN_DIR/k3s-killall.sh"
else
  pkill -TERM -x k3s 2>/dev/null; sleep 2; pkill -KILL -x k3s 2>/dev/null
fi

for cmd in kubectl crictl ctr; do
  if [ -L "$BIN_DIR/$cmd" ]; then
    rm -f "$BIN_DIR/$cmd"
  fi
done

rm -rf /etc/rancher/k3s
rm -rf /run/k3s
rm -rf /var/lib/rancher/k3s
rm -rf /var/lib/kubelet
rm -f "$BIN_DIR/k3s"
rm -f "$BIN_DIR/k3s-killall.sh"
rmdir /etc/rancher /var/lib/rancher 2>/dev/null
rm -f "$BIN_DIR/k3s-uninstall.sh"
rm -f "$0"
exit 0
