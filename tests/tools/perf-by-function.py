#!/usr/bin/env python3
"""Shares of a `perf record --call-graph dwarf -p <server pid>` profile by function, for a
release server built with symbols (`CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -p
kube-scim-server`). The installed perf prints bare offsets for this binary, so the stacks of
`perf script` are mapped to functions with the binary's `nm` table here.

Usage: perf-by-function.py perf.data path/to/kube-scim-server [substring ...]
Prints the top leaf (self) functions, then the inclusive share of every function whose name
contains one of the substrings (a sample counts once per function on its stack).
"""
import bisect
import collections
import re
import subprocess
import sys


def symbols(binary):
    """(sorted start addresses, names) of the binary's functions, hashes stripped."""
    out = subprocess.run(['nm', '-C', '--defined-only', '-n', binary],
                         capture_output=True, text=True, check=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split(' ', 2)
        if len(parts) == 3 and parts[1] in 'tTwW':
            addrs.append(int(parts[0], 16))
            names.append(re.sub(r'::h[0-9a-f]{16}$', '', parts[2]))
    return addrs, names


def text_shift(binary):
    """Virtual address minus file offset of the executable segment (perf prints offsets)."""
    out = subprocess.run(['readelf', '-lW', binary], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == 'LOAD' and 'E' in f[6:-1]:
            return int(f[2], 16) - int(f[1], 16)
    return 0


def samples(data, binary):
    addrs, names = symbols(binary)
    shift = text_shift(binary)
    out = subprocess.run(['perf', 'script', '-i', data, '-F', 'ip,sym,dso'],
                         capture_output=True, text=True).stdout
    cur = []
    for line in out.splitlines() + ['']:
        line = line.strip()
        if not line:
            if cur:
                yield cur
            cur = []
            continue
        m = re.match(r'([0-9a-f]+) (.*) \((.*)\)$', line)
        if not m:
            continue
        addr, sym, dso = m.groups()
        if dso == binary:
            i = bisect.bisect_right(addrs, int(addr, 16) + shift) - 1
            sym = names[i] if i >= 0 else '?'
        elif dso.startswith('[kernel'):
            sym = '[k] ' + sym
        cur.append(sym)


def main():
    data, binary, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
    all_samples = list(samples(data, binary))
    n = len(all_samples) or 1
    leaf = collections.Counter(s[0] for s in all_samples)
    incl = collections.Counter(f for s in all_samples for f in set(s))
    print(f'samples {len(all_samples)}\n--- self')
    for f, c in leaf.most_common(30):
        print(f'{100 * c / n:5.1f}% {f[:150]}')
    if wanted:
        print('--- inclusive')
        for f, c in incl.most_common():
            if any(w in f for w in wanted):
                print(f'{100 * c / n:5.1f}% {f[:150]}')


if __name__ == '__main__':
    main()
