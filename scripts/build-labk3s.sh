#!/usr/bin/env bash
# Build "the lab's k3s" (labk3s/bin/k3s, plus a kubectl symlink) from the Go
# module in labk3s/. Skips the build when labk3s/bin/k3s exists and its stamp
# matches a hash of go.mod + go.sum + the Go sources + this script + the Go
# version. Uses the normal Go build cache (GOCACHE / GOMODCACHE), so a rebuild
# after a small source change is fast.
#
# Env: GO (go binary), LABK3S_FORCE=1 (rebuild), LABK3S_GOFLAGS_P (default 2),
# LABK3S_VERSION=vX.Y.Z+k3sN: a second build that reports that version (for
# upgrade tests), written to labk3s/bin/k3s-vX.Y.Z+k3sN with its own stamp;
# the same code, only the version strings differ (a relink from the cache).
set -euo pipefail

start=$(date +%s)
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
root=$(dirname "$(dirname "$self")")
mod="$root/labk3s"
bin="$mod/bin"
GO=${GO:-}
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else echo "build-labk3s: no Go toolchain found (set GO=/path/to/go)" >&2; exit 1; fi
fi

cd "$mod"
k8s_version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' go.mod)
if [ -z "$k8s_version" ]; then echo "build-labk3s: cannot find k8s.io/kubernetes version in go.mod" >&2; exit 1; fi
# k3s-style: the Kubernetes release and "+k3s1", so a cluster file's k3s.version can
# name it; `--version` marks the double in its commit slot ("labk3s").
lab_version="${k8s_version}+k3s1"
out_name=k3s
if [ -n "${LABK3S_VERSION:-}" ]; then
  if ! printf '%s' "$LABK3S_VERSION" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$'; then
    echo "build-labk3s: LABK3S_VERSION=$LABK3S_VERSION is not a k3s version such as v1.37.3+k3s1" >&2; exit 2
  fi
  lab_version=$LABK3S_VERSION
  k8s_version=${LABK3S_VERSION%%+*}
  out_name="k3s-$LABK3S_VERSION"
fi

hash=$( { "$GO" version; [ -z "${LABK3S_VERSION:-}" ] || echo "$LABK3S_VERSION"; cat go.mod go.sum "$self"; find ./cmd ./internal -name '*.go' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)
stamp="$bin/.build-stamp${LABK3S_VERSION:+-$LABK3S_VERSION}"
if [ -z "${LABK3S_FORCE:-}" ] && [ -x "$bin/$out_name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] \
   && "$bin/$out_name" --version >/dev/null 2>&1; then
  echo "build-labk3s: up to date ($bin/$out_name, $("$bin/$out_name" --version | head -1)), skipped in $(( $(date +%s) - start ))s"
  exit 0
fi

mkdir -p "$bin"
major=${k8s_version#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X main.labVersion=$lab_version"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$lab_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.gitCommit=labk3s -X $pkg.buildDate=$build_date"
done

echo "build-labk3s: building the lab's k3s $lab_version with $("$GO" version) (cold builds take many minutes on 2 cores)"
tmp="$bin/.k3s.tmp.$$"
trap 'rm -f "$tmp"' EXIT
CGO_ENABLED=0 GOFLAGS="-p=${LABK3S_GOFLAGS_P:-2} -buildvcs=false" \
  "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp" ./cmd/k3s
"$tmp" --version >/dev/null
mv -f "$tmp" "$bin/$out_name"
[ "$out_name" = k3s ] && ln -sfn k3s "$bin/kubectl"
echo "$hash" > "$stamp"
size=$(du -h "$bin/$out_name" | cut -f1)
echo "build-labk3s: built $bin/$out_name ($size, $("$bin/$out_name" --version | head -1)) in $(( $(date +%s) - start ))s"
