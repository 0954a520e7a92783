#!/usr/bin/env bash
# Takes promtool (Prometheus's rule checker and rule unit-test runner) out of Debian's package
# `prometheus` and prints the directory that holds it. `make test` runs `promtool check rules`
# and `promtool test rules` on the chart's PrometheusRule (tests/tests/alerts.rs).
#
# Debian's bookworm package (Prometheus 2.42) is adequate: the chart's rules use nothing newer,
# and rules that 2.42 accepts also load in Prometheus 3. Taking it from the package instead of
# building Prometheus's Go module saves about 75 s of a cold run. Only promtool is extracted:
# the package is downloaded, not installed, so no Prometheus server lands on the machine.
# Cached under $KUBE_SCIM_CACHE (default ~/.cache/kube-scim) by the package's version.
set -euo pipefail
cache=${KUBE_SCIM_CACHE:-$HOME/.cache/kube-scim}
minimum=2.42

candidate() { apt-cache policy prometheus 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }
# Every script of the project that calls apt takes this lock, so steps that run side by side in
# `make test` never meet apt's own lock (which fails at once instead of waiting).
apt_locked() { flock /tmp/kube-scim-apt.lock "$@"; }

version=$(candidate)
if [ -z "$version" ]; then
  apt_locked apt-get update -qq >&2
  version=$(candidate)
fi
[ -n "$version" ] || { echo "install-promtool.sh: Debian has no package prometheus" >&2; exit 1; }
out="$cache/promtool-debian-$version"
if [ ! -x "$out/promtool" ]; then
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  download() { (cd "$out.tmp" && apt-get download -qq -o APT::Sandbox::User=root "prometheus=$version" >&2); }
  # A stale package list can name a version the archive no longer has.
  download || { apt_locked apt-get update -qq >&2 && version=$(candidate) && download; }
  dpkg-deb --fsys-tarfile "$out.tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$out.tmp/promtool"
  chmod 0755 "$out.tmp/promtool"
  rm -f "$out.tmp"/prometheus_*.deb
  got=$("$out.tmp/promtool" --version | awk 'NR == 1 {print $3}')
  if [ "$(printf '%s\n%s\n' "$minimum" "${got%%+*}" | sort -V | head -1)" != "$minimum" ]; then
    echo "install-promtool.sh: Debian's promtool $got is older than $minimum" >&2; exit 1
  fi
  out="$cache/promtool-debian-$version"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
