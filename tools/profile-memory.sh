#!/usr/bin/env bash
# Heap profile of the operator in the benchmark (`make profile-memory PROFILE_N=2000`): heaptrack around `tether run`
# only, the simulators and the control plane as usual. heaptrack sees glibc's malloc alone, so the profiled
# binary is built without the jemalloc feature (its RSS is not the release figure; its heap is the same).
# The benchmark's own "operator peak RSS" line is heaptrack's process then, not the operator's: read
# heaptrack's "peak heap memory consumption" instead.
#
#   tools/profile-memory.sh [N] [benchmark arguments...]     default N = 2000
#
# Prints heaptrack's peak consumers and leaves the whole profile in target/profile-memory/operator.zst
# (open it with heaptrack_gui, or heaptrack_print --print-flamegraph).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command -v heaptrack >/dev/null || { echo "profile-memory: heaptrack is not installed (apt-get install heaptrack)" >&2; exit 1; }
n=${1:-2000}
shift || true
out="$root/target/profile-memory"
mkdir -p "$out"
rm -f "$out"/operator.*

cargo build --release --locked -p tether --bin tether --no-default-features
cp target/release/tether "$out/tether-glibc"
# The benchmark runs target/release/tether: built again with the default allocator for the simulators.
cargo build --release --locked -p tether --bin tether
bench=$(cargo bench --locked -p tether --bench operator --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "operator" and m.get("executable"):
        print(m["executable"])')

cat >"$out/wrapper" <<EOF
#!/bin/sh
[ "\$1" = run ] && exec heaptrack -o "$out/operator" "$out/tether-glibc" "\$@"
exec "$root/target/release/tether" "\$@"
EOF
chmod +x "$out/wrapper"

plane=$(tools/control-plane/build.sh)
(cd crates/tether && TETHER_CONTROL_PLANE="$plane" TETHER_BIN="$out/wrapper" "$bench" --bench "$n" "$@")
# The benchmark stops the process it started, heaptrack's script, which leaves the profiled operator
# running; stop it too, and let heaptrack finish writing the profile.
pkill -f "$out/tether-glibc run" || true
for _ in $(seq 30); do pgrep -f "heaptrack_interpret|$out/tether-glibc run" >/dev/null || break; sleep 1; done
profile=$(ls "$out"/operator.*)
heaptrack_print -f "$profile" --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --peak-limit 25 --sub-peak-limit 4 >"$out/peaks.txt"
# The peaks, each sub-peak named by its first frame in Tether or kube-runtime (the whole stacks are in peaks.txt).
awk '/peak memory consumed/ { print } /consumed over .* calls from:/ { size = $1; want = 1; next }
  want && /(tether_|kube_runtime|kube_client)/ && !/^ +in / { print "    " size "  " substr($1, 1, 160); want = 0 }' \
  "$out/peaks.txt"
heaptrack_print -f "$profile" --print-peaks 0 --print-allocators 0 --print-temporary 0 --print-leaks 0 2>/dev/null |
  grep -E "peak heap|peak RSS|total memory leaked"
echo "profile-memory: $profile (peaks in $out/peaks.txt)"
