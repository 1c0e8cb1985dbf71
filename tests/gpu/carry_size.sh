#!/usr/bin/env bash
# What one `run` call on a lent GPU machine carries must stay under that
# tool's 64 MiB limit (kernels/cuda/README.md, "On a lent GPU machine"): the
# working tree (tracked files and the untracked ones git does not ignore) plus
# the one carried path, build-deps/debs (scripts/offline_deps.sh). The debs are
# measured when present, else their size is read from apt's metadata. Run by
# `make test`; exit 1 when the sum is over the limit.
set -uo pipefail
cd "$(dirname "$0")/../.."
limit=$((64 << 20))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
    how="git ls-files"
else   # not a git checkout: everything but the build outputs
    tree=$(du -sb --exclude=./build --exclude=./build-deps --exclude=./.git . | cut -f1)
    how="du, build outputs excluded"
fi
if [[ -d build-deps/debs ]] && compgen -G 'build-deps/debs/*.deb' >/dev/null; then
    debs=$(du -sb build-deps/debs | cut -f1)
    dhow="build-deps/debs"
elif debs=$(scripts/offline_deps.sh --size 2>/dev/null) && [[ $debs =~ ^[0-9]+$ ]]; then
    dhow="apt metadata: scripts/offline_deps.sh --size"
else
    echo "carry size: working tree $(mib "$tree") ($how); build-deps/debs not measured (no debs, no apt metadata)"
    ((tree <= limit)) || { echo "carry size: FAIL: the working tree alone is over $(mib $limit)"; exit 1; }
    exit 0
fi
total=$((tree + debs))
echo "carry size: working tree $(mib "$tree") ($how) + debs $(mib "$debs") ($dhow) = $(mib $total) of $(mib $limit)"
((total <= limit)) || { echo "carry size: FAIL: over the device tool's limit: carry less or shrink the tree"; exit 1; }
