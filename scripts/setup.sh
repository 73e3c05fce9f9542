#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine lacks for k8s-ha's tests, lab
# and demo: Debian packages, npm packages from the lock file, and the lab's
# k3s (built from Go modules, cached). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (the lab boots machines with systemd-nspawn)" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The lab (systemd-nspawn machines on a bridge, NAT to the package registry),
# the real daemons the renderer tests check configs with, sshd/sudo for
# the SSH transport tests, and Chromium for the status page's browser test
# (driven by playwright-core, which never downloads a browser of its own), and
# age, which the scheduled-backup script runs when datastore.backup.recipients is set.
apt-get install -y -qq --no-install-recommends \
  systemd-container debootstrap debian-archive-keyring util-linux iproute2 nftables \
  openssh-server openssh-client sudo curl ca-certificates \
  nginx-light libnginx-mod-stream haproxy keepalived \
  mariadb-server mariadb-client chromium age >/dev/null

npm ci --no-audit --no-fund

# The lab's k3s (a test double of k3s built from upstream Kubernetes modules),
# from the Go module proxy; cached, so a second run takes seconds. Cold:
# several minutes on 2 cores.
bash scripts/build-labk3s.sh
# The lab's container images (pause, the verify web server, MetalLB's
# controller and speaker) as air-gap archives: no registry is reachable here.
bash labk3s/images/build.sh
