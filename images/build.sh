#!/usr/bin/env bash
# Builds kube-scim's container images on this machine, pulling no image from anywhere.
#
#   images/build.sh                  kube-scim-operator and kube-scim-server: static (musl)
#                                    release binaries on the root filesystem of images/Dockerfile
#   images/build.sh --static BINARY --name REF --out FILE
#                                    any other static binary as /entrypoint (the test node's
#                                    sandbox and kubectl images)
#   images/build.sh --context DIR    only the build context's root filesystem (DIR/rootfs), for
#                                    `docker buildx` with binaries put in DIR/bin/<arch>/ (the
#                                    release workflow)
#
# Output: OCI archives (target/images/<name>.oci.tar by default) whose index names the image
# (io.containerd.image.name) and its platform, so `ctr images import` gives the CRI a usable image.
# When $CONTAINERD_ADDRESS names a running containerd, the archives are imported into its k8s.io
# namespace too. Prints the directory (or file) it wrote.
#
# Environment: IMAGE_TAG (default: the workspace version, the chart's appVersion),
# IMAGE_REPOSITORY (default ghcr.io/kube-scim, the chart's default), CARGO_TARGET_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
work="$target_dir/images"
arch=amd64
triple=x86_64-unknown-linux-musl

static_binary= static_name= static_out= context_only=
while [ $# -gt 0 ]; do
  case "$1" in
    --context) context_only=$2; shift 2 ;;
    --static) static_binary=$2; shift 2 ;;
    --name) static_name=$2; shift 2 ;;
    --out) static_out=$2; shift 2 ;;
    *) echo "images/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# The only files besides the binary: who 65532 is, and the CA bundle for outbound TLS (the
# Kubernetes API uses the ServiceAccount's CA; an OIDC issuer or webhook target needs public CAs).
prepare_rootfs() {
  local ctx=$1
  rm -rf "$ctx/rootfs" && mkdir -p "$ctx/rootfs/etc/ssl/certs"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  chmod -R go-w "$ctx/rootfs"
}

if [ -n "$context_only" ]; then
  mkdir -p "$context_only" && prepare_rootfs "$context_only"
  echo "$context_only"
  exit 0
fi

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v jq >/dev/null || need+=(jq)
[ -n "$static_binary" ] || command -v musl-gcc >/dev/null || need+=(musl-tools)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
  bash "$root/tests/tools/apt-install.sh" "${need[@]}"
fi

buildah_() {
  # A private store (vfs works without kernel overlay support) keeps the host's untouched.
  buildah --storage-driver vfs --root "$work/.buildah/root" --runroot "$work/.buildah/run" "$@"
}

prepare_context() {
  local ctx=$1
  rm -rf "$ctx" && mkdir -p "$ctx/bin/$arch"
  prepare_rootfs "$ctx"
}

# build_image CONTEXT TARGET REF OUT: one image from images/Dockerfile into an OCI archive.
build_image() {
  local ctx=$1 target=$2 ref=$3 out=$4 layout
  buildah_ bud --quiet --format oci --timestamp 0 --platform "linux/$arch" --target "$target" \
    -f "$here/Dockerfile" -t "$ref" "$ctx" >/dev/null
  layout=$(mktemp -d "$work/layout.XXXXXX")
  buildah_ push --quiet "$ref" "oci:$layout/oci:${ref##*:}" >/dev/null
  buildah_ rmi "$ref" >/dev/null
  # The CRI only sees an imported image whose index names it and gives its platform.
  jq --arg ref "$ref" --arg arch "$arch" '.manifests |= map(. + {
      platform: {architecture: $arch, os: "linux"},
      annotations: ((.annotations // {}) + {"io.containerd.image.name": $ref})})' \
    "$layout/oci/index.json" >"$layout/index.json"
  mv "$layout/index.json" "$layout/oci/index.json"
  mkdir -p "$(dirname "$out")"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout/oci" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$layout"
  if [ -n "${CONTAINERD_ADDRESS:-}" ] && [ -S "$CONTAINERD_ADDRESS" ] && command -v ctr >/dev/null; then
    ctr -a "$CONTAINERD_ADDRESS" -n k8s.io images import --platform "linux/$arch" "$out" >&2
  fi
}

mkdir -p "$work"
if [ -n "$static_binary" ]; then
  [ -n "$static_name" ] && [ -n "$static_out" ] || { echo "--static needs --name and --out" >&2; exit 2; }
  ctx=$(mktemp -d "$work/context.XXXXXX")
  prepare_context "$ctx"
  install -m 0555 "$static_binary" "$ctx/bin/$arch/entrypoint"
  build_image "$ctx" static "$static_name" "$static_out"
  rm -rf "$ctx"
  echo "$static_out"
  exit 0
fi

rustup target list --installed 2>/dev/null | grep -qx "$triple" || rustup target add "$triple" >&2
version=$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" \
  | jq -r '.packages[] | select(.name == "kube-scim-server") | .version')
tag=${IMAGE_TAG:-$version}
repository=${IMAGE_REPOSITORY:-ghcr.io/kube-scim}
# Called from a test, this script inherits what `cargo test` sets for the test process
# (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). A build script that declares one of them with
# rerun-if-env-changed (ring's does) would then rerun and every crate above it be rebuilt, and
# again on the next call from make: minutes of a release build on every `make test`.
unset $(compgen -e | grep -E '^CARGO_(PKG_|MANIFEST_|CRATE_|BIN_|PRIMARY_PACKAGE|TARGET_TMPDIR)' || true)
cargo build --release --locked --target "$triple" --manifest-path "$root/Cargo.toml" \
  -p kube-scim-operator -p kube-scim-server >&2

ctx="$work/context"
prepare_context "$ctx"
for name in kube-scim-operator kube-scim-server; do
  install -m 0555 "$target_dir/$triple/release/$name" "$ctx/bin/$arch/$name"
  build_image "$ctx" "$name" "$repository/$name:$tag" "$work/$name.oci.tar"
  echo "$repository/$name:$tag $(du -k "$work/$name.oci.tar" | cut -f1) KiB" >&2
done
echo "$work"
