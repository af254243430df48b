#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer, the nightly toolchain) and runs each for
# SECONDS_PER_TARGET seconds (default 60), as many at once as there are cores (FUZZ_JOBS). Exits non-zero
# when any target crashes (a panic, a broken invariant, a timeout or running out of memory), printing the
# target, the artifact path and how to replay it. `make fuzz` runs it; `tools/fuzz.sh 10` is the CI size.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment (all optional):
#   FUZZ_TARGETS       space-separated subset of fuzz/fuzz_targets/*.rs names (default: all)
#   FUZZ_JOBS          targets run at once (default: the number of cores)
#   FUZZ_TOOLCHAIN     rustup toolchain to build with (default: nightly)
#   FUZZ_SANITIZER     cargo-fuzz sanitizer (default: none; the crates forbid unsafe code, so AddressSanitizer
#                      mostly slows the build and the runs; `address` works too)
#   FUZZ_TARGET_DIR    cargo target dir of the fuzz build (default: $CARGO_TARGET_DIR, else the cache below,
#                      so a machine's CI runs from fresh clones share one warm build)
#   FUZZ_CORPUS_DIR    where libFuzzer keeps what it finds, per target (default: the cache below); the seeds
#                      in fuzz/corpus/<target>/ are read, never written
#   FUZZ_CORPUS_MAX    inputs per cached corpus past which it is merged down to the same coverage (3000)
#   FUZZ_OUT_DIR       logs and crash artifacts (default: target/fuzz)
#   FUZZ_INSTRUMENT_ALL=1  keep cargo-fuzz's coverage instrumentation of every crate (by default only the
#                      code under test and serde/serde_json are instrumented; see wrapper mode below)
#   TETHER_CACHE_DIR   cache root (default: ~/.cache/tether): cargo-fuzz is installed under
#                      cargo-fuzz/<version>/ there from crates.io when missing
set -euo pipefail

# Wrapper mode: the build below runs this script as RUSTC_WRAPPER. cargo-fuzz instruments every crate for
# coverage; only the code under test and the JSON decoder it runs through need it (the rest is kube,
# k8s-openapi, tokio, rustls, aws-lc, ... linked in but not run). Dropping it elsewhere makes the cold build
# faster and every input faster (libFuzzer scans all counters after each one).
if [[ -n "${TETHER_FUZZ_WRAPPER:-}" ]]; then
  rustc=$1
  shift
  args=("$@")
  if [[ " $TETHER_FUZZ_INSTRUMENT " != *" ${CARGO_PKG_NAME:-} "* ]]; then
    args=()
    for arg in "$@"; do
      case "$arg" in
        -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
        *) args+=("$arg") ;;
      esac
    done
  fi
  exec ${TETHER_FUZZ_INNER_WRAPPER:-} "$rustc" "${args[@]}"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

seconds="${1:-60}"
if [[ ! "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET]  (a positive integer)" >&2
  exit 2
fi

cargo_fuzz_version=0.13.2
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-none}"
cache="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$cache/fuzz/target}}"
corpus_dir="${FUZZ_CORPUS_DIR:-$cache/fuzz/corpus}"
out="${FUZZ_OUT_DIR:-$root/target/fuzz}"
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"
corpus_max="${FUZZ_CORPUS_MAX:-3000}"
# libFuzzer's limits: inputs up to 64 KiB (a platform answer of that size already covers every shape), 2 GiB
# of memory, and 10 s for one input (anything slower is a hang worth a look).
limits=(-max_len=65536 -rss_limit_mb=2048 -timeout=10)
started=$(date +%s)

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi
for t in "${targets[@]}"; do
  [[ -f "fuzz/fuzz_targets/$t.rs" ]] || { echo "fuzz: no target $t in fuzz/fuzz_targets" >&2; exit 2; }
done

# The toolchain: rustup's nightly, as on every machine of ours (installed with the minimal profile if absent).
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the $toolchain toolchain with rustup"
  rustup toolchain install "$toolchain" --profile minimal
fi
triple=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')

# cargo-fuzz, pinned, built once per machine into the cache (with the default toolchain).
cargo_fuzz_root="$cache/cargo-fuzz/$cargo_fuzz_version"
cargo_fuzz="$cargo_fuzz_root/bin/cargo-fuzz"
if [[ ! -x "$cargo_fuzz" ]]; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version into $cargo_fuzz_root"
  mkdir -p "$cache/cargo-fuzz"
  staging=$(mktemp -d "$cache/cargo-fuzz/.install.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  CARGO_TARGET_DIR="$staging/target" cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked \
    --root "$staging/root" --quiet
  rm -rf "$cargo_fuzz_root"
  mv "$staging/root" "$cargo_fuzz_root"
  rm -rf "$staging"
  trap - EXIT
fi

# The fuzz crate is its own workspace: its lock file starts from the root one, so the targets run the very
# dependency versions the operator ships; cargo adds only libFuzzer's own crates to it. Started again
# whenever the root lock file changes.
mkdir -p "$out/logs" "$target_dir"
if [[ ! -f fuzz/Cargo.lock ]] || ! cmp -s Cargo.lock "$out/root-Cargo.lock"; then
  cp Cargo.lock fuzz/Cargo.lock
  cp Cargo.lock "$out/root-Cargo.lock"
fi

echo "fuzz: building ${#targets[@]} targets with $toolchain (sanitizer: $sanitizer; log: $out/logs/build.log)"
build=("$cargo_fuzz" fuzz build --dev --sanitizer "$sanitizer" --target-dir "$target_dir")
if [[ ${#targets[@]} -eq 1 ]]; then build+=("${targets[0]}"); fi
# The crates whose coverage guides libFuzzer (see wrapper mode at the top); FUZZ_INSTRUMENT_ALL=1 keeps
# cargo-fuzz's instrumentation of every crate.
instrument="tether-fuzz tether-platforms tether-api tether-controller serde serde_json percent-encoding base64"
wrapper=()
if [[ -z "${FUZZ_INSTRUMENT_ALL:-}" ]]; then
  # The cfg changes with the list, so cargo rebuilds what it built under another one.
  cov=$(cksum <<<"$instrument" | cut -d' ' -f1)
  wrapper=(TETHER_FUZZ_WRAPPER=1 TETHER_FUZZ_INSTRUMENT="$instrument" TETHER_FUZZ_INNER_WRAPPER="${RUSTC_WRAPPER:-}"
    RUSTC_WRAPPER="$root/tools/fuzz.sh" RUSTFLAGS="${RUSTFLAGS:-} --cfg tether_fuzz_coverage_$cov")
fi
if ! env "${wrapper[@]}" RUSTUP_TOOLCHAIN="$toolchain" "${build[@]}" >"$out/logs/build.log" 2>&1; then
  tail -n 60 "$out/logs/build.log"
  echo "fuzz: the build failed (full log: $out/logs/build.log)"
  echo "0 passed, ${#targets[@]} failed"
  exit 1
fi
built=$(date +%s)
echo "fuzz: built in $((built - started))s; running each target for ${seconds}s, $jobs at a time"

bin_dir="$target_dir/$triple/debug"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

# One target: its seeds are read from fuzz/corpus/<t> (never written), what it finds goes to the corpus
# cache; a crash leaves its input in $out/artifacts/<t>/. Writes the exit code to $out/logs/<t>.rc.
run_target() {
  local t=$1 rc=0
  rm -rf "${out:?}/artifacts/$t"
  mkdir -p "$corpus_dir/$t" "$out/artifacts/$t" "fuzz/corpus/$t"
  "$bin_dir/$t" "${limits[@]}" -max_total_time="$seconds" -dict=fuzz/json.dict -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t/" "$corpus_dir/$t" "fuzz/corpus/$t" >"$out/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$out/logs/$t.rc"
  # Keep the cached corpus small: past corpus_max inputs, merge it down to a set with the same coverage.
  if [[ "$rc" == 0 ]] && (($(find "$corpus_dir/$t" -type f | wc -l) > corpus_max)); then
    local merged="$corpus_dir/.$t.merge"
    rm -rf "$merged" && mkdir -p "$merged"
    if "$bin_dir/$t" -merge=1 "${limits[@]}" "$merged" "$corpus_dir/$t" >"$out/logs/$t.merge.log" 2>&1; then
      rm -rf "${corpus_dir:?}/$t" && mv "$merged" "$corpus_dir/$t"
    else
      rm -rf "$merged"
    fi
  fi
}

running=0
for t in "${targets[@]}"; do
  rm -f "$out/logs/$t.rc"
  run_target "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

passed=0
failed=0
for t in "${targets[@]}"; do
  rc=$(cat "$out/logs/$t.rc" 2>/dev/null || echo "lost")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/logs/$t.log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$out/logs/$t.log" | tail -n 1 | cut -d' ' -f2)
  if [[ "$rc" == 0 ]]; then
    passed=$((passed + 1))
    echo "fuzz: $t ok (${runs:-?} inputs, coverage ${cov:-?})"
    continue
  fi
  failed=$((failed + 1))
  echo "fuzz: $t FAILED (exit $rc)"
  grep -v '^#[0-9]' "$out/logs/$t.log" | grep -v '^INFO:' | tail -n 40 | sed 's/^/    /'
  for artifact in "$out/artifacts/$t"/*; do
    [[ -f "$artifact" ]] || continue
    echo "fuzz: $t artifact: $artifact ($(wc -c <"$artifact") bytes); its start:"
    head -c 512 "$artifact" | od -A d -c | head -n 16 | sed 's/^/    /'
    echo "fuzz: replay: $bin_dir/$t $artifact"
  done
done
echo "fuzz: done in $(($(date +%s) - started))s (logs: $out/logs)"
echo "$passed passed, $failed failed"
((failed == 0))
