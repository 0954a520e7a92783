#!/usr/bin/env bash
# Installs the pinned external SCIM checkers (requirements.txt) from PyPI into a virtualenv cached
# under $KUBE_SCIM_CACHE (default ~/.cache/kube-scim), keyed by the requirements, and prints its
# bin directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
key=$( (cat "$here/requirements.txt"; "$python" --version) | sha256sum | cut -c1-12)
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
venv="$cache/python-tools-$key"
if [ ! -x "$venv/bin/scim-sanity" ] || [ ! -x "$venv/bin/scim2" ]; then
  echo "installing SCIM checkers into $venv" >&2
  rm -rf "$venv.tmp"
  "$python" -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  rm -rf "$venv" && mv "$venv.tmp" "$venv"
  # The venv's scripts name their interpreter by absolute path; re-point them after the move.
  sed -i "1s|^#!.*$venv.tmp/bin/python.*|#!$venv/bin/python|" "$venv"/bin/*
fi
echo "$venv/bin"
