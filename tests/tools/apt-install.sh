#!/usr/bin/env bash
# Installs Debian packages (the arguments) under the project's apt lock: `make test` runs the
# image build and the node's build side by side, and apt's own lock fails at once where this
# one waits (tests/tools/install-promtool.sh takes it too).
set -euo pipefail
[ $# -gt 0 ] || exit 0
echo "installing Debian packages: $*" >&2
flock /tmp/kube-scim-apt.lock sh -c \
  'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"' sh "$@" >&2
