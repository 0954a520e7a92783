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
  echo "installing Debian packages: ${need[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "prerequisites.sh: run as root, or install: ${need[*]}" >&2; exit 1; fi
  # The project's apt lock (see tests/tools/install-promtool.sh): `make test` runs this beside
  # the image build, which may install packages too.
  flock /tmp/kube-scim-apt.lock sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"' sh "${need[@]}" >&2
fi
