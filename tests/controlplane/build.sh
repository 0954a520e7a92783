#!/usr/bin/env bash
# Builds Kubernetes components from the pinned Go modules in this folder and prints the
# directory that holds them:
#   build.sh        the control plane: etcd, kube-apiserver, kube-controller-manager, kubectl
#   build.sh node   the node: kubelet, kube-proxy, kube-scheduler (tests/node/build.sh adds the
#                   container runtime)
# Binaries are cached under $KUBE_SCIM_CACHE (default ~/.cache/kube-scim) keyed by the
# Kubernetes version, go.sum and the group's sources, so a warm run costs nothing; a cold run is a
# plain `go build` (packages shared by both groups are compiled once, by Go's build cache).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
group=${1:-controlplane}
case "$group" in
  controlplane) binaries=(etcd kube-apiserver kube-controller-manager kubectl) ;;
  node) binaries=(kubelet kube-proxy kube-scheduler) ;;
  *) echo "build.sh: unknown group '$group' (controlplane or node)" >&2; exit 2 ;;
esac
k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
[ -n "$k8s_version" ] || { echo "build.sh: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
minor=${k8s_version#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
# The cache key covers everything that changes the binaries: modules, sources and link flags.
mains=(); for b in "${binaries[@]}"; do mains+=("$here/cmd/$b/main.go"); done
sum=$( (cat "$here/go.mod" "$here/go.sum" "${mains[@]}"; echo "$ldflags") | sha256sum | cut -c1-12)
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
out="$cache/$group-$k8s_version-$sum"

complete() { for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done; }

if ! complete; then
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  echo "building Kubernetes $k8s_version $group into $out (cold build: ~10 min on 2 cores)" >&2
  start=$(date +%s)
  packages=(); for b in "${binaries[@]}"; do packages+=("./cmd/$b"); done
  (cd "$here" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" "${packages[@]}")
  echo "built in $(( $(date +%s) - start ))s" >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
