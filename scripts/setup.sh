#!/usr/bin/env bash
# Installs the Debian packages sprec builds and tests with, when missing.
# Idempotent: with everything present it only says so. Needs root (or sudo)
# only when something has to be installed.
#   scripts/setup.sh            install what is missing
#   scripts/setup.sh --quiet    same, silent when nothing is missing
#   scripts/setup.sh --python   also the PyPI packages for fixtures/benchmarks
set -euo pipefail

quiet=0; python=0
for a in "$@"; do
    case "$a" in
        --quiet) quiet=1 ;;
        --python) python=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

# package : a file it provides (checked instead of asking dpkg, which is slow)
deps=(
    "gcc:/usr/bin/gcc"
    "make:/usr/bin/make"
    "pkg-config:/usr/bin/pkg-config"
    "libhdf5-dev:/usr/include/hdf5/serial/hdf5.h"
    "hdf5-tools:/usr/bin/h5dump"
    "libopenblas-openmp-dev:/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so"
    "libinih-dev:/usr/include/ini.h"
    "libcjson-dev:/usr/include/cjson/cJSON.h"
    "libpcre2-dev:/usr/include/pcre2.h"
    "libcmocka-dev:/usr/include/cmocka.h"
    "openmpi-bin:/usr/bin/mpirun"
    "libopenmpi-dev:/usr/bin/mpicc"
    "zlib1g-dev:/usr/include/zlib.h"
    "python3-matplotlib:/usr/lib/python3/dist-packages/matplotlib/__init__.py"
    "clang-14:/usr/bin/clang-14"
    "libclang-rt-14-dev:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a"
    "libomp-14-dev:/usr/lib/llvm-14/lib/libomp.so"
    "slurmctld:/usr/sbin/slurmctld"
    "slurmd:/usr/sbin/slurmd"
    "slurm-client:/usr/bin/sbatch"
    "munge:/usr/sbin/munged"
)

missing=()
for d in "${deps[@]}"; do
    pkg=${d%%:*}; file=${d#*:}
    [[ -e "$file" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    echo "setup: installing missing Debian packages: ${missing[*]}"
    sudo=""
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    echo "setup: done"
elif ((!quiet)); then
    echo "setup: all Debian build dependencies present"
fi

if ((python)); then
    need=()
    for m in torch transformers h5py numpy safetensors tokenizers gguf accelerate sentencepiece; do
        python3 -c "import $m" 2>/dev/null || need+=("$m")
    done
    if ((${#need[@]})); then
        echo "setup: pip installing ${need[*]}"
        python3 -m pip install -q "${need[@]}"
    elif ((!quiet)); then
        echo "setup: Python packages present (torch, transformers, h5py, numpy, safetensors, tokenizers, gguf, accelerate, sentencepiece)"
    fi
fi
