#!/usr/bin/env bash
# Downloads the Debian packages sprec builds against (and their runtime
# dependencies beyond the C library and the compiler's own) into
# build-deps/debs, for a machine with neither apt access nor network (a lent
# GPU machine): tests/gpu/run.sh unpacks them there with `dpkg -x` and builds
# with DEPS_ROOT=build-deps/root, without installing anything.
#   scripts/offline_deps.sh            download (skips .debs already there)
#   scripts/offline_deps.sh --list     only print the package list
#   scripts/offline_deps.sh --size     only print their download size in bytes (from apt's
#                                      metadata; nothing is downloaded; tests/gpu/carry_size.sh)
# Needs apt-get (no root: `apt-get download` writes to the current folder).
# The packages are this machine's distribution's (Debian 12 here); the target
# machine needs a glibc at least as new as theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build-deps/debs

# what the build needs: headers and link-time .so symlinks (the -dev packages,
# not their own -dev dependencies: sprec links only -lhdf5 -lopenblas -linih
# -lcjson -lpcre2-8 and, for the tests, -lcmocka) ...
dev=(libhdf5-dev libopenblas-openmp-dev libinih-dev libcjson-dev libpcre2-dev libcmocka-dev pkg-config pkgconf pkgconf-bin libpkgconf3)
# ... and the shared libraries behind them, whose dependencies are resolved below
runtime=(libhdf5-103-1 libopenblas0-openmp libinih1 libcjson1 libpcre2-8-0 libcmocka0)
# never unpacked beside the system: the C library, the compiler's runtime (it
# must match the gcc that links), and what every Debian/Ubuntu base system has
base='^(libc6|libc6-dev|libc-bin|libc-dev-bin|linux-libc-dev|libcrypt1|libcrypt-dev|gcc-[0-9]+-base|libgcc-s1|libstdc\+\+6|libgomp1|zlib1g|libzstd1|debconf|dpkg|tar)$'

deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
           --no-enhances "${runtime[@]}" 2>/dev/null | grep -v '^ ' | grep -v '^<' | sort -u)
pkgs=$( { printf '%s\n' "${dev[@]}"; printf '%s\n' $deps; } | grep -Ev "$base" | sort -u)

if [[ ${1:-} == --list ]]; then printf '%s\n' $pkgs; exit 0; fi
if [[ ${1:-} == --size ]]; then
    apt-cache show --no-all-versions $pkgs | awk '/^Size:/ { s += $2; n++ } END { if (!n) exit 1; print s }'
    exit
fi
[[ -z ${1:-} ]] || { echo "offline_deps.sh: unknown option $1" >&2; exit 2; }

mkdir -p "$dest"
cd "$dest"
need=()
for p in $pkgs; do
    compgen -G "${p}_*.deb" >/dev/null || need+=("$p")
done
if ((${#need[@]})); then
    echo "offline_deps: downloading ${#need[@]} packages into $dest: ${need[*]}"
    apt-get download -q "${need[@]}"
fi
echo "offline_deps: $(ls ./*.deb | wc -l) packages ($(du -sh . | cut -f1)) in $dest; tests/gpu/run.sh unpacks them when the headers are missing"
