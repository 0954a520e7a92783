# kube-scim developer entry points. `make dev` runs the project locally; `make test` runs every
# test (CI runs exactly `make test` through .ci/run).

CARGO ?= cargo
# Binaries the integration tests start as processes (operator, SCIM server) come from here.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: all dev cluster test lint build images controlplane node tools crds check-crds clean

all: build

## dev: local control plane + CRDs + operator + SCIM server + examples/, until Ctrl-C
dev: controlplane build
	$(CARGO) run -q -p kube-scim-tests --bin kube-scim-dev

## cluster: control plane + a real node + images + `helm install` + examples/, until Ctrl-C (root)
cluster: controlplane node build
	$(CARGO) run -q -p kube-scim-tests --bin kube-scim-cluster

## test: formatting, lints, generated files, unit and integration tests on a real control plane,
## the chart's pods on a real node (root: the node needs a bridge, iptables and containerd)
test: controlplane node tools lint check-crds build images
	$(CARGO) test --workspace --no-fail-fast

## controlplane: build (or reuse the cached) etcd, kube-apiserver, kube-controller-manager, kubectl
controlplane:
	bash tests/controlplane/build.sh >/dev/null

## node: build (or reuse the cached) kubelet, kube-proxy, kube-scheduler, containerd, runc, CNI plugins
node:
	bash tests/node/build.sh >/dev/null

## images: kube-scim-operator and kube-scim-server as OCI archives in target/images, no registry
images:
	bash images/build.sh

## tools: build (or reuse the cached) pinned helm and the external SCIM checkers the tests run
tools:
	bash tests/tools/build-helm.sh >/dev/null
	bash tests/tools/build-actionlint.sh >/dev/null
	bash tests/tools/build-python-tools.sh >/dev/null

## build: every binary of the workspace (the integration tests start them as processes)
build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## crds: regenerate crds/yaml from the Rust types
crds:
	$(CARGO) run -q -p kube-scim-crds --bin crdgen

check-crds:
	$(CARGO) run -q -p kube-scim-crds --bin crdgen -- --check

clean:
	$(CARGO) clean
