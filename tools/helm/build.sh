#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy (Debian packages none) once per version into a cache and
# prints the binary's path on stdout; later calls only print the path. Used by the chart tests
# (helm lint, helm template | kubectl apply --dry-run=server).
#
#   TETHER_CACHE_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tether)
set -euo pipefail
version=v3.21.4
command -v go >/dev/null || { echo "helm/build.sh: go is not installed (needed to build helm)" >&2; exit 1; }
cache="${TETHER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}/helm/$version"
bin="$cache/helm"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
echo "helm/build.sh: building helm $version into $cache (a few minutes cold)" >&2
start=$(date +%s)
# go install verifies the module against the checksum database; the version pins it.
CGO_ENABLED=0 GOBIN="$cache" GOFLAGS=-trimpath go install -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version" >&2
echo "helm/build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
