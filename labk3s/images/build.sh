#!/usr/bin/env bash
# Builds the lab's container images as archives in labk3s/images/bin/, for
# k8s-ha's air-gap images path (k3s imports every archive in
# /var/lib/rancher/k3s/agent/images/ into containerd at start). No registry
# is reachable here, so each image is made from local files by mkimage/
# (one layer, OCI layout + docker manifest.json).
#
#   pause.tar   registry.k8s.io/pause:3.10.2 (the sandbox image the lab's k3s
#               configures in containerd; 3.10.2 is kubeadm's PauseVersion for
#               Kubernetes v1.37.2): a static Go pause (pause/main.go)
#
# Skips the work when the stamp (sha256 of the Go version, this script and
# the Go sources) matches. Env: GO, LABK3S_IMAGES_FORCE=1.
set -euo pipefail
start=$(date +%s)
dir=$(cd "$(dirname "$0")" && pwd)
bin="$dir/bin"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
PAUSE_TAG=registry.k8s.io/pause:3.10.2

hash=$( { "$GO" version; cat "$dir/build.sh"; find "$dir" -name '*.go' -not -path "$bin/*" | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)
if [ -z "${LABK3S_IMAGES_FORCE:-}" ] && [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$hash" ] && [ -f "$bin/pause.tar" ]; then
  echo "labk3s images: up to date ($bin), skipped in $(( $(date +%s) - start ))s"
  exit 0
fi
mkdir -p "$bin/.work"
cd "$dir/.."   # the labk3s module
CGO_ENABLED=0 GOFLAGS="-p=2 -buildvcs=false" "$GO" build -trimpath -ldflags '-s -w' -o "$bin/.work/mkimage" ./images/mkimage
CGO_ENABLED=0 GOFLAGS="-p=2 -buildvcs=false" "$GO" build -trimpath -ldflags '-s -w' -o "$bin/.work/pause" ./images/pause
"$bin/.work/mkimage" --tag "$PAUSE_TAG" --out "$bin/pause.tar" --file "$bin/.work/pause=/pause" --entrypoint /pause
echo "$hash" > "$bin/.stamp"
echo "labk3s images: built $bin/pause.tar ($PAUSE_TAG) in $(( $(date +%s) - start ))s"
