#!/usr/bin/env bash
# Builds tether-gitops-judge (kstatus from sigs.k8s.io/cli-utils + Argo CD's Lua health checks, from the Go
# module proxy) once per source hash into a cache, and prints the binary's path on stdout. Later calls only
# print the path. Used by the Rust tests (tests/e2e/src/judge.rs) to check what Flux/kstatus and Argo CD
# would say about Tether's objects.
#
#   TETHER_CACHE_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tether)
#
# A cold build takes well under a minute on 2 cores (it shares k8s.io/apimachinery v0.36.4 with the control
# plane, so after the control plane most packages come from the Go build cache); progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
command -v go >/dev/null || { echo "gitops-judge/build.sh: go is not installed (needed to build the GitOps judge)" >&2; exit 1; }

key=$(cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
cache="${TETHER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}/gitops-judge/$key"
bin="$cache/tether-gitops-judge"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
echo "gitops-judge/build.sh: building tether-gitops-judge into $cache" >&2
start=$(date +%s)
# -mod=readonly: go.sum is the lock; a build never rewrites it.
CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$bin.$$.tmp" . >&2
mv "$bin.$$.tmp" "$bin"  # $$: builds by concurrent test processes do not clobber each other
echo "gitops-judge/build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
