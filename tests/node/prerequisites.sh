#!/usr/bin/env bash
# Debian packages a test node needs on the host, installed when missing (CI runs as root):
# iptables and conntrack for kube-proxy and the CNI plugins, libseccomp-dev and pkg-config to
# build runc with seccomp, and iproute2 for the harness's bridge.
set -euo pipefail
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ip >/dev/null || need+=(iproute2)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -e /usr/include/seccomp.h ] || need+=(libseccomp-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "prerequisites.sh: run as root, or install: ${need[*]}" >&2; exit 1; fi
  bash "$(dirname "$0")/../tools/apt-install.sh" "${need[@]}"
fi
