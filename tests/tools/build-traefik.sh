#!/usr/bin/env bash
# Builds the pinned Traefik (Ingress and Gateway API controller) from its Go module and prints the
# directory that holds the `traefik` binary and the Gateway API CRDs (standard channel) that this
# Traefik implements. Cached under $KUBE_SCIM_CACHE (default ~/.cache/kube-scim).
#
# Why v3.6 and not v3.7: from v3.7 Traefik's module needs a nested module
# (github.com/traefik/traefik/dynamic/ext) through a local-path replace, and the Go module proxy
# does not serve it, so v3.7 cannot be built from modules alone. `go install pkg@version` refuses
# modules with replace directives, hence the small wrapper module that repeats Traefik's own.
set -euo pipefail
version=v3.6.12
gateway_api=v1.4.0   # the Gateway API release Traefik v3.6 is built against (its go.mod)
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
out="$cache/traefik-$version-gateway-api-$gateway_api"
if [ ! -x "$out/traefik" ] || [ ! -f "$out/gateway-api-crds.yaml" ]; then
  echo "building traefik $version into $out (cold: several minutes)" >&2
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/src"
  start=$(date +%s)
  export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" GOTOOLCHAIN=local
  (
    cd "$out.tmp/src"
    go mod init kube-scim.local/traefik-build >/dev/null 2>&1
    go mod edit \
      -require="github.com/traefik/traefik/v3@$version" \
      -require="sigs.k8s.io/gateway-api@$gateway_api" \
      -replace=github.com/abbot/go-http-auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e \
      -replace=github.com/gorilla/mux=github.com/containous/mux@v0.0.0-20250523120546-41b6ec3aed59 \
      -replace=github.com/mailgun/minheap=github.com/containous/minheap@v0.0.0-20190809180810-6e71eb837595 \
      -exclude=github.com/tencentcloud/tencentcloud-sdk-go@v3.0.83+incompatible
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "sigs.k8s.io/gateway-api/apis/v1"
GO
    go get "github.com/traefik/traefik/v3/cmd/traefik@$version" >/dev/null 2>&1 || go get "github.com/traefik/traefik/v3/cmd/traefik@$version"
    go build -trimpath -o "$out.tmp/traefik" \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
      github.com/traefik/traefik/v3/cmd/traefik
    crds="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard"
    for f in "$crds"/*.yaml; do printf -- '---\n'; cat "$f"; done >"$out.tmp/gateway-api-crds.yaml"
  )
  rm -rf "$out.tmp/src"
  echo "built in $(( $(date +%s) - start ))s" >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
