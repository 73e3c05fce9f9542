#!/bin/sh
# Stop the lab's k3s units and kill remaining k3s processes (like k3s-killall.sh).
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
if command -v systemctl >/dev/null 2>&1; then
  for s in k3s k3s-agent; do systemctl stop "$s" 2>/dev/null; done
fi
pids=$(pgrep -x k3s 2>/dev/null)
[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do
  pids=$(pgrep -x k3s 2>/dev/null)
  [ -z "$pids" ] && break
  sleep 1
done
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
rm -f /var/lib/rancher/k3s/server/kine.sock
exit 0
