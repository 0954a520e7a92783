#!/usr/bin/env bash
# Builds (or takes from the cache) everything a test node runs besides the control plane and
# prints the directory that holds it:
#   kubelet, kube-proxy, kube-scheduler   from tests/controlplane (the same pinned Kubernetes)
#   containerd, containerd-shim-runc-v2, ctr   containerd 2.x (Kubernetes 1.36 needs 2.x)
#   crictl                                to remove pods through the CRI at teardown
#   runc                                  with seccomp (Debian's 1.1.5 cannot start sandboxes)
#   cni/{bridge,host-local,loopback,portmap}   the CNI reference plugins
#   pause                                 the sandbox image's binary (tests/node/pause)
# Everything comes from Go modules through the module proxy, checksum-verified, pinned below;
# Debian packages (iptables, conntrack, libseccomp) are installed by prerequisites.sh. Cached under
# $KUBE_SCIM_CACHE (default ~/.cache/kube-scim) by these versions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

containerd_version=v2.4.2   # newest 2.4 patch; 1.36's kubelet needs containerd >= 2.0
runc_version=v1.5.2         # newest stable 1.5 (1.6 is a release candidate)
cni_version=v1.10.0         # newest CNI plugins release
crictl_version=v1.37.0      # newest cri-tools; the harness removes pods through the CRI with it

bash "$here/prerequisites.sh" >&2
kube=$(bash "$here/../controlplane/build.sh" node)

sum=$( (echo "$containerd_version $runc_version $cni_version $crictl_version"; cat "$here/pause/main.go" "$here/pause/go.mod" "$0") \
  | sha256sum | cut -c1-12)
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
out="$cache/node-runtime-$sum"

if [ ! -x "$out/pause" ]; then
  echo "building containerd $containerd_version, runc $runc_version, CNI plugins $cni_version into $out" >&2
  start=$(date +%s)
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/cni"
  export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
  GOBIN="$out.tmp" CGO_ENABLED=0 go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version" \
    "github.com/containerd/containerd/v2/cmd/containerd@$containerd_version" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd_version" \
    "github.com/containerd/containerd/v2/cmd/ctr@$containerd_version"
  GOBIN="$out.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
  GOBIN="$out.tmp" CGO_ENABLED=1 go install -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=${runc_version#v}" "github.com/opencontainers/runc@$runc_version"
  GOBIN="$out.tmp/cni" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/containernetworking/plugins/plugins/main/bridge@$cni_version" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$cni_version" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$cni_version" \
    "github.com/containernetworking/plugins/plugins/meta/portmap@$cni_version"
  (cd "$here/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/pause" .)
  echo "built in $(( $(date +%s) - start ))s" >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
fi

# One directory with every node binary, so the harness has a single place to look.
link="$cache/node-$(basename "$kube" | sed 's/^node-//')-$sum"
if [ ! -d "$link" ]; then
  rm -rf "$link.tmp" && mkdir -p "$link.tmp"
  ln -s "$kube"/* "$out"/* "$link.tmp/"
  mv "$link.tmp" "$link"
fi
echo "$link"
