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
#   httpd.tar   localhost/k8s-ha-lab/httpd:busybox-VERSION, the test web server
#               for `k8s-ha verify`: Debian's busybox-static (`apt-get download`,
#               kept in cache/) running `httpd -f -p 80 -h /www`
#   metallb-controller.tar, metallb-speaker.tar
#               quay.io/metallb/{controller,speaker}:METALLB_VERSION, exactly as
#               the release manifest names them: built from their Go module
#               (go.universe.tf/metallb@METALLB_VERSION, `go install`, static),
#               the binary at / as in MetalLB's own Dockerfiles (the speaker's
#               FRR helpers are left out: the lab uses L2 mode, native manifest)
#   images.txt  the image names, one a line
#
# Skips the work when the stamp (sha256 of the Go version, this script, the
# Go sources, the busybox .deb and METALLB_VERSION) matches.
# Usage: build.sh [METALLB_VERSION] (default v0.14.9). Env: GO, LABK3S_IMAGES_FORCE=1.
set -euo pipefail
start=$(date +%s)
dir=$(cd "$(dirname "$0")" && pwd)
bin="$dir/bin"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
PAUSE_TAG=registry.k8s.io/pause:3.10.2
METALLB_VERSION=${1:-v0.14.9}
case "$METALLB_VERSION" in v0.*.*) ;; *) echo "labk3s images: METALLB_VERSION must look like v0.14.9, got '$METALLB_VERSION'" >&2; exit 2 ;; esac
cache="$dir/cache"
mkdir -p "$cache"
# busybox-static from Debian; the .deb is kept (apt-get download needs the apt lists).
deb=$(ls "$cache"/busybox-static_*.deb 2>/dev/null | LC_ALL=C sort | tail -1 || true)
if [ -z "$deb" ]; then
  (cd "$cache" && apt-get download -qq busybox-static) || {
    echo "labk3s images: apt-get download busybox-static failed (run apt-get update first; scripts/setup.sh does)" >&2; exit 1; }
  deb=$(ls "$cache"/busybox-static_*.deb | LC_ALL=C sort | tail -1)
fi
# Debian's 1:1.35.0-4+deb12u1+b1 -> busybox 1.35.0
BUSYBOX_VERSION=$(dpkg-deb -f "$deb" Version | sed -E 's/^[0-9]+://; s/-[^-]*$//')
HTTPD_TAG=localhost/k8s-ha-lab/httpd:busybox-$BUSYBOX_VERSION

hash=$( { "$GO" version; echo "$METALLB_VERSION"; sha256sum "$deb"; cat "$dir/build.sh"; find "$dir" -name '*.go' -not -path "$bin/*" | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)
if [ -z "${LABK3S_IMAGES_FORCE:-}" ] && [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$hash" ] && [ -f "$bin/pause.tar" ] && [ -f "$bin/metallb-speaker.tar" ]; then
  echo "labk3s images: up to date ($bin), skipped in $(( $(date +%s) - start ))s"
  exit 0
fi
mkdir -p "$bin/.work"
cd "$dir/.."   # the labk3s module
CGO_ENABLED=0 GOFLAGS="-p=2 -buildvcs=false" "$GO" build -trimpath -ldflags '-s -w' -o "$bin/.work/mkimage" ./images/mkimage
CGO_ENABLED=0 GOFLAGS="-p=2 -buildvcs=false" "$GO" build -trimpath -ldflags '-s -w' -o "$bin/.work/pause" ./images/pause
"$bin/.work/mkimage" --tag "$PAUSE_TAG" --out "$bin/pause.tar" --file "$bin/.work/pause=/pause" --entrypoint /pause

# The test web server.
rm -rf "$bin/.work/deb" && dpkg-deb -x "$deb" "$bin/.work/deb"
printf '<!doctype html><title>k8s-ha</title><p>k8s-ha verify: busybox httpd %s in a pod\n' "$BUSYBOX_VERSION" > "$bin/.work/index.html"
"$bin/.work/mkimage" --tag "$HTTPD_TAG" --out "$bin/httpd.tar" \
  --file "$bin/.work/deb/bin/busybox=/bin/busybox" --symlink /bin/sh=busybox --file "$bin/.work/index.html=/www/index.html" \
  --entrypoint /bin/busybox --entrypoint httpd --entrypoint -f --entrypoint -v --entrypoint -p --entrypoint 80 --entrypoint -h --entrypoint /www \
  --expose 80/tcp

# MetalLB: `go install pkg@version` builds in MetalLB's own go.mod (it has no replace directives).
echo "labk3s images: building go.universe.tf/metallb/{controller,speaker}@$METALLB_VERSION (cold: a few minutes)"
rm -rf "$bin/.work/metallb"
(cd / && CGO_ENABLED=0 GOFLAGS="-p=2 -buildvcs=false" GOBIN="$bin/.work/metallb" "$GO" install -trimpath \
  -ldflags "-s -w -X go.universe.tf/metallb/internal/version.gitBranch=$METALLB_VERSION -X go.universe.tf/metallb/internal/version.gitCommit=k8s-ha-lab" \
  "go.universe.tf/metallb/controller@$METALLB_VERSION" "go.universe.tf/metallb/speaker@$METALLB_VERSION")
moddir=$(cd / && "$GO" mod download -json "go.universe.tf/metallb@$METALLB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -1)
for c in controller speaker; do
  "$bin/.work/mkimage" --tag "quay.io/metallb/$c:$METALLB_VERSION" --out "$bin/metallb-$c.tar" \
    --file "$bin/.work/metallb/$c=/$c" --file "$moddir/LICENSE=/LICENSE" --entrypoint "/$c"
done
printf '%s\n' "$PAUSE_TAG" "$HTTPD_TAG" "quay.io/metallb/controller:$METALLB_VERSION" "quay.io/metallb/speaker:$METALLB_VERSION" > "$bin/images.txt"
echo "$hash" > "$bin/.stamp"
echo "labk3s images: built $(cd "$bin" && ls *.tar | tr '\n' ' ')($(du -ch "$bin"/*.tar | tail -1 | cut -f1); $(tr '\n' ' ' < "$bin/images.txt")) in $(( $(date +%s) - start ))s"
