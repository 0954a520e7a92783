#!/usr/bin/env bash
# Builds the pinned promtool (Prometheus's rule checker and rule unit-test runner) from its Go
# module (checksum-verified through the Go module proxy; Prometheus v3.16.0 is Go module version
# v0.316.0) and prints the directory that holds it. Cached under $KUBE_SCIM_CACHE (default
# ~/.cache/kube-scim). `make test` runs `promtool check rules` and `promtool test rules` on the
# chart's PrometheusRule (tests/tests/alerts.rs).
set -euo pipefail
version=v0.316.0
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
# promtool checks and unit-tests rules; it needs none of Prometheus's service-discovery plugins,
# whose cloud SDKs are most of its module graph, so they are left out of the build.
tags=remove_all_sd
out="$cache/promtool-$version-$tags"
if [ ! -x "$out/promtool" ]; then
  echo "building promtool $version into $out (cold: several minutes, a large module graph)" >&2
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  start=$(date +%s)
  (cd "$out.tmp" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOBIN="$out.tmp" \
    go install -trimpath -tags "$tags" -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$version")
  echo "built in $(( $(date +%s) - start ))s" >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
