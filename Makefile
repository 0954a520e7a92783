# kube-scim developer entry points. `make dev` runs the project locally; `make test` runs every
# test (CI runs exactly `make test` through .ci/run).

CARGO ?= cargo
# Binaries the integration tests start as processes (operator, SCIM server) come from here.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: all dev cluster test test-tools test-builds test-lane-1 test-lane-2 lint build build-tests images controlplane node tools crds check-crds publish-check clean fuzz fuzz-smoke bench soak

all: build

## dev: local control plane + CRDs + operator + SCIM server + examples/, until Ctrl-C
dev: controlplane build
	$(CARGO) run -q -p kube-scim-tests --bin kube-scim-dev

## cluster: control plane + a real node + images + `helm install` + examples/, until Ctrl-C (root)
cluster: controlplane node build
	$(CARGO) run -q -p kube-scim-tests --bin kube-scim-cluster

## test: formatting, lints, generated files, unit and integration tests on a real control plane,
## the chart's pods on a real node (root: the node needs a bridge, iptables and containerd), and
## every fuzz target for 20 s
# Each step alone leaves the two cores idle part of the time (downloads, Debian packages, links,
# the last crates of a build, tests waiting for a rollout), so two chains run side by side, each
# in its own order: the Go tools beside the Rust builds, then two lanes of test binaries.
# -Otarget prints each step's output in one piece when it ends; -k lets both lanes finish.
test:
	+$(MAKE) --no-print-directory -j2 -Otarget test-tools test-builds
	+$(MAKE) --no-print-directory -j2 -Otarget -k test-lane-1 test-lane-2

# A sub-make that runs its goals one after the other, whatever -j its parent has.
SERIAL_MAKE = MAKEFLAGS="$(filter-out -j% --jobserver%,$(MAKEFLAGS))" $(MAKE) --no-print-directory

test-tools:
	+$(SERIAL_MAKE) controlplane node tools

# The CRD drift check and the publish check run as tests (crds/crdgen/tests/drift.rs,
# tests/tests/crds_library.rs), in the build the tests make anyway: `check-crds` and
# `publish-check` would each compile dependencies again with other features.
test-builds:
	+$(SERIAL_MAKE) lint build-tests images fuzz-smoke

# Two lanes of test binaries that take about as long: the node's (one at a time under its lock,
# much of it waiting for pods) with two of the longest control-plane binaries, and every other
# test target of the workspace (cargo names the target of tests/X.rs X).
LANE_1_TESTS = node node_chart node_routes group_binding operator
LANE_2_TESTS = $(filter-out $(LANE_1_TESTS),$(basename $(notdir $(wildcard */tests/*.rs */*/tests/*.rs))))

# KUBE_SCIM_IMAGES_BUILT: the images were built just before, so a test that builds them again
# must find nothing to compile.
test-lane-1:
	KUBE_SCIM_IMAGES_BUILT=1 $(CARGO) test --workspace --no-fail-fast $(addprefix --test ,$(LANE_1_TESTS))

test-lane-2:
	$(CARGO) test --workspace --no-fail-fast --lib --bins $(addprefix --test ,$(LANE_2_TESTS))
	$(CARGO) test --workspace --no-fail-fast --doc

## controlplane: build (or reuse the cached) etcd, kube-apiserver, kube-controller-manager, kubectl
controlplane:
	bash tests/controlplane/build.sh >/dev/null

## node: build (or reuse the cached) kubelet, kube-proxy, kube-scheduler, containerd, runc, CNI plugins
node:
	bash tests/node/build.sh >/dev/null

## images: kube-scim-operator and kube-scim-server as OCI archives in target/images, no registry
images:
	bash images/build.sh

## tools: build (or reuse the cached) pinned helm, actionlint, Debian's promtool (the chart's alert rules),
## Traefik (the route controller of the node tests), the external SCIM checkers the tests run
## and the Go examples of the docs (examples/go-*, pinned modules)
tools:
	bash tests/tools/build-helm.sh >/dev/null
	bash tests/tools/build-actionlint.sh >/dev/null
	bash tests/tools/install-promtool.sh >/dev/null
	bash tests/tools/build-traefik.sh >/dev/null
	bash tests/tools/build-python-tools.sh >/dev/null
	bash tests/tools/build-go-examples.sh >/dev/null

## build: every binary of the workspace (the integration tests start them as processes)
build:
	$(CARGO) build --workspace --bins

## build-tests: every binary and test target of the workspace, with the crate features a test
## build resolves (dev-dependencies included): `build` alone resolves fewer (tokio without
## test-util, say), so `cargo test` would compile ~80 dependencies a second time
build-tests:
	$(CARGO) build --workspace --all-targets

## bench: the SCIM server benchmarks on the release build, one at a time (figures, no timing
## asserts): throughput and CPU per create vs a kube client, bytes per stored user, two-replica
## sequential writes, multi-tenant mixed load, hostile clients. The load generator is a release
## build too: in debug it took three times the CPU and its own lateness was most of a read's tail
bench: controlplane
	$(CARGO) build --release -p kube-scim-server
	KUBE_SCIM_SERVER_BIN=$(CARGO_TARGET_DIR)/release/kube-scim-server \
	  $(CARGO) test --release -p kube-scim-tests --test scim_bench -- --ignored --nocapture --test-threads=1

## soak: the chart's zero-downtime promises on the real node (root), figures and a 0-loss
## assert: SOAK_ROLLOUTS (20) rolling upgrades of the server under SOAK_RATE (50) requests/s,
## keep-alive and new-connection clients, then SOAK_FAILOVERS (5) leader operator deletions and
## SIGKILL crashes while a ScimWebhook delivers every user's events (tests/tests/node_soak.rs;
## ~5 min warm)
soak: controlplane node images
	bash tests/tools/build-helm.sh >/dev/null
	KUBE_SCIM_IMAGES_BUILT=1 $(CARGO) test -p kube-scim-tests --test node_soak -- --ignored --nocapture --test-threads=1

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## crds: regenerate crds/yaml from the Rust types
crds:
	$(CARGO) run -q -p kube-scim-crdgen

check-crds:
	$(CARGO) run -q -p kube-scim-crdgen -- --check

## publish-check: kube-scim-crds packages and builds on its own, as crates.io would build it.
## `cargo package` is `cargo publish --dry-run` without the registry round trip, so it runs
## offline from the local registry cache (publish --dry-run asks crates.io even with --offline).
## A library picks no k8s-openapi version feature; the verification build is given one the way
## k8s-openapi documents.
publish-check:
	K8S_OPENAPI_ENABLED_VERSION=1.36 $(CARGO) package --offline -p kube-scim-crds

clean:
	$(CARGO) clean

FUZZ_SECONDS ?= 180
# Targets fuzzed at once: each libFuzzer run is one process on one core.
FUZZ_JOBS ?= 2
FUZZ_DIR = scim-server/protocol/fuzz
FUZZ_TARGETS = filter_parse patch_path patch_apply resource_parse request_decode

# $(1): seconds per target; $(2): working corpus directory under $(FUZZ_DIR) (new inputs go
# there; the committed fuzz/seeds are only read); $(3): targets at once. Runs the targets niced
# (the machines are shared), prints libFuzzer's exec count per target, and fails with the log of
# each target that crashed.
define fuzz_each
	@set -e; bin=$$(bash tests/tools/build-cargo-fuzz.sh); cd $(FUZZ_DIR); \
	export PATH="$$bin:$$PATH" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CURDIR)/$(FUZZ_DIR)/target; \
	nice -n 19 cargo fuzz build -O; \
	running=0; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(2)/$$t && rm -f $(2)/$$t.status; \
	  ( nice -n 19 cargo fuzz run -O $$t $(2)/$$t seeds/$$t -- \
	      -max_total_time=$(1) -dict=dict/scim.dict >$(2)/$$t.log 2>&1; \
	    echo $$? >$(2)/$$t.status ) & \
	  running=$$((running + 1)); \
	  if [ $$running -ge $(3) ]; then wait; running=0; fi; \
	done; \
	wait; \
	failed=0; \
	for t in $(FUZZ_TARGETS); do \
	  if [ "$$(cat $(2)/$$t.status 2>/dev/null)" != 0 ]; then \
	    tail -n 40 $(2)/$$t.log; \
	    echo "fuzz: $$t FAILED (log $(FUZZ_DIR)/$(2)/$$t.log, input in $(FUZZ_DIR)/artifacts/$$t)"; \
	    failed=1; \
	  else \
	    echo "fuzz: $$t: $$(grep -E '^Done [0-9]+ runs' $(2)/$$t.log)"; \
	  fi; \
	done; \
	exit $$failed
endef

## fuzz: every fuzz target of the protocol crate for FUZZ_SECONDS (default 180) each, on the
## growing corpus fuzz/corpus (gitignored); fails on any crash
fuzz:
	$(call fuzz_each,$(FUZZ_SECONDS),corpus,$(FUZZ_JOBS))

## fuzz-smoke: every fuzz target for 20 s from the committed seeds only (part of `make test`),
## all at once: a smoke run needs each target to start and run, not a core of its own
fuzz-smoke:
	@rm -rf $(FUZZ_DIR)/target/smoke-corpus
	$(call fuzz_each,20,target/smoke-corpus,$(words $(FUZZ_TARGETS)))
