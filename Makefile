# Tether's developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help demo test lint unit conformance fuzz fuzz-ci chaos storms bench profile-memory control-plane helm gitops-judge crds install

FUZZ_SECONDS ?= 60

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## Control plane + simulators + operator, every example Ready, shown with kubectl (DEMO_EXIT=1 to stop after)
	@tools/demo.sh

test: lint unit conformance fuzz-ci ## The whole suite: lints, Rust tests (real kube-apiserver), SDK conformance, a short fuzz run
	@tools/test-summary target/test-unit.log target/test-conformance.log target/test-fuzz.log

lint: ## cargo fmt --check, clippy with warnings as errors, gofmt and go vet on the control plane
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@test -z "$$(gofmt -l tools/control-plane)" || { echo "gofmt: run gofmt -w tools/control-plane"; exit 1; }
	cd tools/control-plane && go vet -mod=readonly ./...
	@test -z "$$(gofmt -l tools/gitops-judge)" || { echo "gofmt: run gofmt -w tools/gitops-judge"; exit 1; }
	cd tools/gitops-judge && go vet -mod=readonly ./...

unit: test-image ## Rust unit and integration tests (builds the control plane, helm and the tests' image first if needed)
	@mkdir -p target
	TETHER_CONTROL_PLANE="$$(tools/control-plane/build.sh)" TETHER_HELM="$$(tools/helm/build.sh)" \
	  TETHER_GITOPS_JUDGE="$$(tools/gitops-judge/build.sh)" TETHER_IMAGE_ARCHIVE="$(IMAGE_ARCHIVE)" \
	  $(CARGO) test --workspace --all-targets --locked 2>&1 | tee target/test-unit.log

# How `make conformance` gets target/debug/tether. Inside `make test` the Rust tests' build (`unit`) has made
# it already, and `cargo build -p tether` would compile it again: without the workspace's dev-dependencies
# tokio lacks test-util, so tokio, hyper, kube, reqwest, axum and the tether crates are built a second time
# (about 30 crates, minutes on a cold 2-core CI). There the tests' own build is checked instead (a no-op).
CONFORMANCE_BUILD ?= $(CARGO) build -p tether --locked
test: CONFORMANCE_BUILD = $(CARGO) test --workspace --all-targets --locked --no-run

conformance: ## The vendors' Python SDKs against `tether sim` (installs them into a cached virtualenv)
	@mkdir -p target
	$(CONFORMANCE_BUILD)
	for req in tests/conformance/requirements/*.txt; do \
	  platform=$$(basename "$$req" .txt); \
	  "$$(tests/conformance/setup.sh "$$platform")" -m pytest -p no:cacheprovider "tests/conformance/test_$$platform.py" || exit 1; \
	done 2>&1 | tee target/test-conformance.log

fuzz: ## Every cargo-fuzz target (platform answers, spec diffs, HTTP helpers) for FUZZ_SECONDS each (default 60)
	@tools/fuzz.sh $(FUZZ_SECONDS)

CHAOS_SIZE ?= full
chaos: ## Chaos: resources of every kind created, edited, deleted while operators are SIGKILLed (CHAOS_SIZE=full|ci, CHAOS_SEED replays)
	TETHER_CONTROL_PLANE="$$(tools/control-plane/build.sh)" CHAOS_SIZE=$(CHAOS_SIZE) \
	  $(CARGO) test -p tether --test chaos --locked -- --nocapture

N ?= 1000
bench: ## The operator benchmark (release): N resources of all five kinds against the floor; table and JSON (N=10000 for the large run)
	TETHER_CONTROL_PLANE="$$(tools/control-plane/build.sh)" $(CARGO) bench --locked -p tether --bench operator -- $(N)

PROFILE_N ?= 2000
profile-memory: ## heaptrack of the operator in the benchmark (a glibc build), its peak heap consumers printed (PROFILE_N=2000)
	tools/profile-memory.sh $(PROFILE_N)

STORM_SIZE ?= full
storms: ## Fault storms (5xx, 429, latency, resets, malformed, outage) with rate, Retry-After and convergence figures (STORM_SIZE=full|ci)
	TETHER_CONTROL_PLANE="$$(tools/control-plane/build.sh)" STORM_SIZE=$(STORM_SIZE) \
	  $(CARGO) test -p tether --test storms --locked -- --nocapture

fuzz-ci: ## The short fuzz run of the test command: 10 s per target
	@mkdir -p target
	tools/fuzz.sh 10 2>&1 | tee target/test-fuzz.log

control-plane: ## Build (once, cached by source hash) the etcd + kube-apiserver binary and print its path
	@tools/control-plane/build.sh

gitops-judge: ## Build (once, cached) the kstatus + Argo CD Lua judge the GitOps test uses and print its path
	@tools/gitops-judge/build.sh

helm: ## Build (once, cached) the helm CLI the chart tests use and print its path
	@tools/helm/build.sh

PREFIX ?= $(HOME)/.cargo/bin
PROFILE ?= release
install: ## Build tether and the kubectl plugin kubectl-tether and install both into PREFIX (default ~/.cargo/bin)
	$(CARGO) build --locked -p tether --bins --profile $(PROFILE)
	install -d "$(PREFIX)"
	install -m 0755 target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/tether target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/kubectl-tether "$(PREFIX)/"
	@echo "installed tether and kubectl-tether in $(PREFIX); with it on PATH, kubectl tether --help lists the commands"

crds: ## Regenerate crds/ and the Helm chart's crds/ from the types
	$(CARGO) run -q -p tether -- crds --out-dir crds
	$(CARGO) run -q -p tether -- crds --out-dir deploy/helm/tether/crds

.PHONY: image
IMAGE_ARCHIVE := $(CURDIR)/target/image/tether.oci.tar
image: ## The release binary in an OCI image built by buildah (no daemon) into target/image/; prints its size and packages
	$(CARGO) build --release --locked -p tether --bin tether
	tools/image/build.sh $(or $(CARGO_TARGET_DIR),target)/release/tether $(IMAGE_ARCHIVE)

# The image the Rust tests run (crates/tether/tests/image.rs): `make image`'s recipe around the tests' own
# build of tether (debug). A release build for this test alone was the slowest step of a cold `make test`
# (6.5 min on 2 cores); what the test proves (user, read-only root, a self-contained filesystem, a pod's
# environment) is the recipe's, the same for either build.
.PHONY: test-image
test-image:
	$(CARGO) test --workspace --all-targets --locked --no-run
	tools/image/build.sh $(or $(CARGO_TARGET_DIR),target)/debug/tether $(IMAGE_ARCHIVE)
