#!/usr/bin/env bash
# Installs the image tools from Debian's packages when one is missing, and does nothing otherwise:
#   buildah  builds the OCI image without a daemon (make image)
#   umoci    unpacks it into a root filesystem (the image test, crates/tether/tests/image.rs)
# Needs root (or sudo) the first time; later calls only check that the commands are there.
set -euo pipefail
missing=()
for tool in buildah umoci; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
(( ${#missing[@]} == 0 )) && exit 0

sudo=()
if (( EUID != 0 )); then
  command -v sudo >/dev/null || { echo "image/install.sh: ${missing[*]} missing and not root (apt-get install -y ${missing[*]})" >&2; exit 1; }
  sudo=(sudo)
fi
command -v apt-get >/dev/null || { echo "image/install.sh: no apt-get; install ${missing[*]} by hand" >&2; exit 1; }
echo "image/install.sh: installing ${missing[*]} from Debian's packages" >&2
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
{ "${sudo[@]}" apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 ||
  { cat "$log" >&2; echo "image/install.sh: apt-get failed" >&2; exit 1; }
echo "image/install.sh: installed in $(( $(date +%s) - start ))s" >&2
