#!/usr/bin/env bash
# Creates (once per requirements.txt hash) a virtualenv with the pinned vendor SDKs and pytest, and prints
# the path of its python. Called by `make conformance`; needs python3 with venv and PyPI.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
key=$(sha256sum "$here/requirements.txt" | cut -c1-16)
venv="${TETHER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}/conformance-venv/$key"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup.sh: installing the vendor SDKs into $venv" >&2
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  mv "$venv.tmp" "$venv"
fi
echo "$venv/bin/python"
