#!/usr/bin/env bash
# The demo (`make demo`): builds what it needs, starts the embedded control plane (etcd + kube-apiserver),
# the platform simulators and the operator, applies examples/ (one resource of every kind) and waits until
# every one is Ready, then shows them with `kubectl get tether -A`.
#
#   DEMO_EXIT=1   tear everything down after printing; exit 0, or 1 if something did not become Ready
#   DEMO_DIR      where state and logs go (default: target/demo)
#
# Without DEMO_EXIT it keeps running until Ctrl-C, so the cluster can be explored with the kubeconfig it
# prints.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
state=${DEMO_DIR:-$root/target/demo}
namespace=tether-demo
started=$(date +%s)
step() { printf '\n==> [%3ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }

for tool in cargo go kubectl; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is not installed (see README: Requirements)" >&2; exit 1; }
done

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$state"
mkdir -p "$state"

# The two builds overlap: their single-threaded phases (downloads, linking) leave cores to the other.
step "building the control plane (Go, cached; cold ~6 minutes) and tether (cargo; cold ~3 minutes) side by side"
tools/control-plane/build.sh >"$state/control-plane.path" 2>"$state/control-plane-build.log" &
build=$!
pids+=("$build")
cargo build -p tether --locked
tether=$root/target/debug/tether
step "waiting for the control plane build (its progress: $state/control-plane-build.log)"
wait "$build" || { cat "$state/control-plane-build.log" >&2; echo "demo: the control plane did not build" >&2; exit 1; }
control_plane=$(cat "$state/control-plane.path")

step "starting etcd + kube-apiserver"
"$control_plane" --data-dir "$state/control-plane" >"$state/control-plane.out" 2>"$state/control-plane.log" &
plane=$!
pids+=("$plane")
for _ in $(seq 1 600); do
  grep -q '^ready ' "$state/control-plane.out" 2>/dev/null && break
  kill -0 "$plane" 2>/dev/null || { cat "$state/control-plane.log" >&2; echo "demo: the control plane stopped" >&2; exit 1; }
  sleep 0.1
done
export KUBECONFIG=$state/control-plane/kubeconfig
[[ -f $KUBECONFIG ]] || { echo "demo: the control plane did not come up; see $state/control-plane.log" >&2; exit 1; }

step "installing the CRDs"
"$tether" crds | kubectl apply --server-side -f - >/dev/null
kubectl wait --for condition=Established crd --all --timeout=60s >/dev/null

step "starting the platform simulators (tether sim)"
"$tether" sim --endpoints-file "$state/endpoints.json" --connections-file "$state/connections.yaml" \
  2>"$state/sim.log" >/dev/null &
pids+=($!)
for _ in $(seq 1 100); do [[ -f $state/connections.yaml ]] && break; sleep 0.1; done
[[ -f $state/connections.yaml ]] || { cat "$state/sim.log" >&2; echo "demo: the simulators did not start" >&2; exit 1; }

step "applying examples/ into namespace $namespace, pointed at the simulators"
kubectl create namespace "$namespace" >/dev/null
# The ClusterConnection example names a Secret in tether-system, which the demo does not make.
for example in examples/*.yaml; do
  [[ $example == */clusterconnection.yaml ]] || kubectl apply -n "$namespace" -f "$example" >/dev/null
done
kubectl apply -n "$namespace" -f "$state/connections.yaml" >/dev/null

step "starting the operator (tether run)"
"$tether" run --namespace "$namespace" --metrics-addr 127.0.0.1:0 --probe-addr 127.0.0.1:0 \
  --poll-interval-seconds 30 2>"$state/operator.log" &
pids+=($!)

step "waiting until every example is Ready"
examples=(appservice/team-notebook civisservice/sales-dashboard apoloapp/feature-store-db
  ubiservice/scoring-api peakwebapp/forecast-explorer)
if ! kubectl wait -n "$namespace" --for=condition=Ready "${examples[@]}" --timeout=180s >/dev/null; then
  kubectl get tether -A >&2 || true
  kubectl describe -n "$namespace" "${examples[@]}" >&2 || true
  echo "demo: not every example became Ready; operator log: $state/operator.log" >&2
  exit 1
fi

step "every example is Ready after $(( $(date +%s) - started ))s"
kubectl get tether -A
metrics=$(sed -n 's/.*serving metrics.*addr=\([0-9.:]*\).*/\1/p; s/.*addr=\([0-9.:]*\).*serving metrics.*/\1/p' "$state/operator.log" | head -1)
cat <<INFO

The cluster:   export KUBECONFIG=$KUBECONFIG
               kubectl get tether -A; kubectl describe -n $namespace ubiservice/scoring-api
Metrics:       http://${metrics:-?}/metrics
Logs:          $state/{operator,sim,control-plane}.log
INFO

if [[ ${DEMO_EXIT:-0} == 1 ]]; then
  step "DEMO_EXIT=1: stopping everything"
  exit 0
fi
echo "Stop with Ctrl-C: the operator, the simulators and the control plane stop with this script." >&2
wait
