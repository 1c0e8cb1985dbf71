#!/usr/bin/env bash
# make bench: the engine's CPU training step side by side with PyTorch CPU
# (bench/torch_cpu.py) on the same shapes and thread count, in one run.
# Prints the JSON lines of both and a table with the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
steps=${STEPS:-5}
out=build/bench.jsonl
: > "$out"
shapes=(
  "small  --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688  --vocab 8192 --seq 256 --batch 8"
  "small-fullloss --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688  --vocab 8192 --seq 256 --batch 8"
  "medium --dim 576 --layers 4 --heads 9 --kv-heads 3 --ffn 1536 --vocab 8192 --seq 512 --batch 8"
)
have_torch=1
python3 -c "import torch, transformers" 2>/dev/null || { have_torch=0; echo "bench: torch/transformers missing (scripts/setup.sh --python installs them); engine only" >&2; }
for s in "${shapes[@]}"; do
    name=${s%% *}; args=${s#* }
    echo "bench: $name: sprec ..." >&2
    # PyTorch computes the head on every position either way; sprec only on the loss positions,
    # so the -fullloss shape (loss on every position) compares the rest of the engine
    extra=""; [[ $name == *fullloss ]] && extra="--loss-frac 1"
    build/sprec bench --name "$name" $args $extra --threads "$threads" --steps "$steps" --warmup 2 | tee -a "$out"
    if ((have_torch)); then
        echo "bench: $name: pytorch ..." >&2
        python3 bench/torch_cpu.py --name "$name" $args --threads "$threads" --steps "$steps" --warmup 2 --tied --json-only | tee -a "$out"
    fi
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sgemm = [r for r in rows if r["name"].startswith("sgemm")]
steps = [r for r in rows if not r["name"].startswith("sgemm")]
print()
print(f"| shape | threads | sprec tok/s | PyTorch tok/s | ratio | sprec GFLOP/s | PyTorch GFLOP/s | OpenBLAS sgemm GFLOP/s |")
print("|---|---|---|---|---|---|---|---|")
for name in dict.fromkeys(r["name"] for r in steps):
    s = next(r for r in steps if r["name"] == name and r["impl"] == "sprec")
    t = next((r for r in steps if r["name"] == name and r["impl"] == "pytorch"), None)
    g = sgemm[0]["gflops"] if sgemm else float("nan")
    shape = f'{name} (dim {s["dim"]}, {s["layers"]} layers, seq {s["seq"]}, batch {s["batch"]})'
    if t:
        print(f'| {shape} | {s["threads"]} | {s["tokens_per_s"]:.0f} | {t["tokens_per_s"]:.0f} | {s["tokens_per_s"]/t["tokens_per_s"]:.2f}x | {s["gflops"]:.1f} | {t["gflops"]:.1f} | {g:.1f} |')
    else:
        print(f'| {shape} | {s["threads"]} | {s["tokens_per_s"]:.0f} | - | - | {s["gflops"]:.1f} | - | {g:.1f} |')
PY
