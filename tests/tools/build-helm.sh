#!/usr/bin/env bash
# Builds the pinned helm from its Go module (checksum-verified through the Go module proxy) and
# prints the directory that holds it. Cached under $KUBE_SCIM_CACHE (default ~/.cache/kube-scim).
set -euo pipefail
version=v3.21.4   # client-go v0.36, the same minor as the test control plane
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
# The Kubernetes version helm assumes without a cluster (`helm template`, `helm lint`): upstream's
# Makefile sets it from its client-go module, and a plain `go install` would leave v1.20, which
# refuses charts with a newer kubeVersion.
k8s_minor=36
out="$cache/helm-$version-k8s1.$k8s_minor"
if [ ! -x "$out/helm" ]; then
  echo "building helm $version into $out (cold: a few minutes)" >&2
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  start=$(date +%s)
  (cd "$out.tmp" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOBIN="$out.tmp" \
    go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
    "helm.sh/helm/v3/cmd/helm@$version")
  echo "built in $(( $(date +%s) - start ))s" >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
