#!/usr/bin/env bash
# Fetch MetalLB's release manifest (config/manifests/metallb-native.yaml) for
# the lab and the tests, where GitHub (the release URL k8s-ha normally
# downloads from) is not reachable: the Go module proxy serves
# go.universe.tf/metallb's module zip for each release tag, and that zip
# contains the repository's files at the tag, the manifest included, byte for
# byte. The result is checked against the SHA-256 k8s-ha pins for the version
# (src/phases/metallb.ts, METALLB_MANIFEST_SHA256) when it knows the version.
#
# Usage: scripts/fetch-metallb.sh VERSION OUTFILE    e.g. v0.14.9 /tmp/metallb-native.yaml
# Env: GO (go binary). Uses GOPROXY / GOMODCACHE as usual (cached after the first run).
set -euo pipefail

if [ $# -ne 2 ]; then echo "usage: $0 VERSION OUTFILE   (e.g. $0 v0.14.9 metallb-native.yaml)" >&2; exit 2; fi
version=$1 out=$2
case "$version" in v0.*.*) ;; *) echo "fetch-metallb: VERSION must look like v0.14.9, got '$version'" >&2; exit 2 ;; esac
GO=${GO:-}
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else echo "fetch-metallb: no Go toolchain found (set GO=/path/to/go)" >&2; exit 1; fi
fi

# `go mod download -json` outside a module prints {"Dir": ...}; no go.mod needed.
json=$(cd / && GOFLAGS=-mod=mod "$GO" mod download -json "go.universe.tf/metallb@$version") || {
  echo "fetch-metallb: go mod download go.universe.tf/metallb@$version failed (is the Go module proxy reachable? GOPROXY=$("$GO" env GOPROXY))" >&2
  exit 1
}
dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -1)
src="$dir/config/manifests/metallb-native.yaml"
[ -f "$src" ] || { echo "fetch-metallb: $src not found in the module (a release without the native manifest?)" >&2; exit 1; }

want=$(grep -E "^\s+'$version': '[0-9a-f]{64}'," "$(dirname "$0")/../src/phases/metallb.ts" 2>/dev/null | sed -E "s/.*'([0-9a-f]{64})'.*/\1/" | head -1 || true)
got=$(sha256sum "$src" | cut -d' ' -f1)
if [ -n "$want" ] && [ "$want" != "$got" ]; then
  echo "fetch-metallb: $src has sha256 $got, but k8s-ha pins $want for $version: refusing it" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$src" "$out.tmp.$$" && chmod 0644 "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
echo "fetch-metallb: $out ($version, sha256 $got${want:+, matches the pinned digest})"
