#!/usr/bin/env bash
# Build MetalLB's real controller (go.universe.tf/metallb/controller) for the
# lab, from the Go module proxy (there is no container registry in the lab:
# kwok simulates pods, so the controller runs as a plain process on a server
# machine instead, with the admin kubeconfig and the webhook disabled).
#
# Usage: labk3s/metallb/build.sh [VERSION]   (default v0.14.9)
# Output: labk3s/metallb/bin/controller-VERSION (gitignored). Skipped when it
# already exists and runs; the Go build cache makes a forced rebuild cheap.
# Env: GO (go binary), METALLB_FORCE=1 (rebuild).
set -euo pipefail

version=${1:-v0.14.9}
case "$version" in v0.*) ;; *) echo "build-metallb: VERSION must look like v0.14.9, got '$version'" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/bin"
out="$bin/controller-$version"
GO=${GO:-}
if [ -z "$GO" ]; then
  if command -v go >/dev/null 2>&1; then GO=$(command -v go)
  elif [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go
  else echo "build-metallb: no Go toolchain found (set GO=/path/to/go)" >&2; exit 1; fi
fi

if [ -z "${METALLB_FORCE:-}" ] && [ -x "$out" ] && "$out" --help >/dev/null 2>&1; then
  echo "build-metallb: up to date ($out)"
  exit 0
fi
mkdir -p "$bin"
start=$(date +%s)
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# `go install pkg@version` builds in the module's own go.mod (MetalLB's has no
# replace directives), so no wrapper module is needed. Static: the lab's
# machines are Debian, but a static binary does not care.
echo "build-metallb: building go.universe.tf/metallb/controller@$version with $("$GO" version)"
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-buildvcs=false -p=${METALLB_GOFLAGS_P:-2}" "$GO" install -trimpath -ldflags "-s -w" "go.universe.tf/metallb/controller@$version"
mv "$tmp/controller" "$out"
echo "build-metallb: built $out in $(( $(date +%s) - start ))s"
