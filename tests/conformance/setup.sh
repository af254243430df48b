#!/usr/bin/env bash
# setup.sh PLATFORM: creates (once per requirements hash) a virtualenv with that platform's pinned vendor SDK
# and pytest from requirements/PLATFORM.txt, and prints the path of its python. One virtualenv per platform:
# the SDKs pin conflicting dependencies. Needs python3 with venv, and PyPI.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
platform=${1:?usage: setup.sh PLATFORM}
req="$here/requirements/$platform.txt"
[[ -f "$req" ]] || { echo "setup.sh: no $req" >&2; exit 1; }
key=$(sha256sum "$req" | cut -c1-16)
venv="${TETHER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}/conformance-venv/$platform-$key"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup.sh: installing the $platform SDK into $venv" >&2
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  mv "$venv.tmp" "$venv"
fi
echo "$venv/bin/python"
