#!/usr/bin/env bash
# Builds the pinned cargo-fuzz (from crates.io, with its own Cargo.lock) and prints the directory
# that holds it. Cached under $KUBE_SCIM_CACHE (default ~/.cache/kube-scim). The fuzz crate
# (scim-server/protocol/fuzz) needs nightly flags; on stable run it with RUSTC_BOOTSTRAP=1.
set -euo pipefail
version=0.13.2   # newest on crates.io, 2026-11-25
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
out="$cache/cargo-fuzz-$version"
if [ ! -x "$out/bin/cargo-fuzz" ]; then
  echo "building cargo-fuzz $version into $out (cold: a few minutes)" >&2
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  start=$(date +%s)
  # A target dir of its own, so the workspace's CARGO_TARGET_DIR is neither used nor polluted.
  CARGO_TARGET_DIR="$out.tmp/target" \
    cargo install cargo-fuzz --version "$version" --locked --root "$out.tmp" --quiet
  rm -rf "$out.tmp/target"
  echo "built in $(( $(date +%s) - start ))s" >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out/bin"
