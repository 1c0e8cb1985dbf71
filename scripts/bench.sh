#!/usr/bin/env bash
# make bench: the engine's CPU training step side by side with PyTorch CPU
# (bench/torch_cpu.py) on the same shapes and thread count, in one run.
# Prints the JSON lines of both and a table with the ratio.
# make bench DEVICE=cuda: `sprec bench --device cuda` side by side with PyTorch on
# the GPU (bench/torch_cuda.py: bf16 autocast, SDPA) on a SmolLM2-135M and a
# Llama-3.2-1B shape at seq 512, plus PyTorch's DPO step and its materialised
# log-prob head; ratio and MFU tables. BENCH_COMPILE=1 adds torch.compile rows;
# BENCH_TIMEOUT (s, default 180) bounds each run; BENCH_OUT the JSONL path.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
steps=${STEPS:-5}
out=${BENCH_OUT:-build/bench.jsonl}
mkdir -p "$(dirname "$out")"
: > "$out"
if [[ ${DEVICE:-cpu} == cuda ]]; then
    limit=${BENCH_TIMEOUT:-180}
    have_torch=1
    python3 -c "import torch, transformers; assert torch.cuda.is_available()" 2>/dev/null ||
        { have_torch=0; echo "bench: torch with CUDA / transformers missing; engine only" >&2; }
    # name, sequences per SFT step, shape flags shared by both sides (sprec bench ties the head: --tied for PyTorch)
    gpu_shapes=(
      "smollm2-135m 8 --dim 576 --layers 30 --heads 9 --kv-heads 3 --ffn 1536 --vocab 49152 --seq 512"
      "llama3.2-1b 4 --dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256 --seq 512"
    )
    run() { timeout "$limit" "$@" | tee -a "$out" || echo "bench: failed or timed out (${limit}s): $*" >&2; }
    for s in "${gpu_shapes[@]}"; do
        read -r name batch args <<< "$s"
        args="$args --batch $batch"
        echo "bench: $name: sprec (cuda) ..." >&2
        run build/sprec bench --device cuda --name "$name" $args --steps "$steps" --warmup 2
        if ((have_torch)); then
            echo "bench: $name: pytorch sft, dpo ..." >&2
            run python3 bench/torch_cuda.py --mode sft --name "$name" $args --tied --steps "$steps" --warmup 2 --json-only
            [[ ${BENCH_COMPILE:-0} == 1 ]] &&
                run python3 bench/torch_cuda.py --mode sft --compile --name "$name" $args --tied --steps "$steps" --warmup 2 --json-only
            # DPO: batch/2 pairs, the same number of sequences as the SFT step
            run python3 bench/torch_cuda.py --mode dpo --name "$name" ${args% --batch *} --batch $((batch / 2)) --tied \
                --steps "$steps" --warmup 2 --json-only
        fi
    done
    if ((have_torch)); then
        for vd in "49152 576" "128256 2048"; do
            set -- $vd
            echo "bench: materialised log-prob head, vocab $1 ..." >&2
            run python3 bench/torch_cuda.py --mode logprob --name "logprob-v$1" --vocab "$1" --dim "$2" --tokens 8192 \
                --steps "$steps" --warmup 2 --json-only
        done
    fi
    python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
peak = next((r["gflops"] / r["mfu"] for r in rows if r.get("mfu")), None)   # GFLOP/s of the GPU's bf16 peak
gb = lambda b: "-" if b is None else f"{b / 2**30:.2f} GB"
mfu = lambda r: "-" if not r else f'{r["mfu"]:.1%}' if r.get("mfu") is not None else \
    (f'{r["gflops"] / peak:.1%}' if peak and r.get("gflops") is not None else "-")
print()
print("| shape | step | sprec tok/s | PyTorch tok/s | ratio | sprec MFU | PyTorch MFU | sprec peak | PyTorch peak |")
print("|---|---|---|---|---|---|---|---|---|")
for name in dict.fromkeys(r["name"] for r in rows if r.get("device") != "cpu" and not r["name"].startswith("logprob")):
    s = next((r for r in rows if r["name"] == name and r["impl"] == "sprec"), None)
    for t in [r for r in rows if r["name"] == name and r["impl"].startswith("pytorch")] or [None]:
        s_ = None if (t or {}).get("mode") == "dpo" else s     # sprec bench has no DPO step yet
        st, tt = (s_ or {}).get("tokens_per_s"), (t or {}).get("tokens_per_s")
        ratio = f"{st / tt:.2f}x" if st and tt else "-"
        step = (t or {}).get("mode", "sft") + (" (compiled)" if t and t["impl"].endswith("compile") else "")
        print(f'| {name} | {step} | {st or "-"} | {tt or "-"} | {ratio} | {mfu(s_)} | {mfu(t)} | '
              f'{gb((s_ or {}).get("peak_bytes"))} | {gb((t or {}).get("peak_bytes"))} |')
print()
print("| materialised log_softmax + gather (PyTorch, bf16 GEMM, fp32 softmax) | tokens | ms fwd+bwd | peak GPU memory | MFU |")
print("|---|---|---|---|---|")
for r in rows:
    if r["name"].startswith("logprob") and r.get("ms_per_step") is not None:
        print(f'| vocab {r["vocab"]}, dim {r["dim"]} | {r["tokens"]} | {r["ms_per_step"]} | {gb(r["peak_bytes"])} | {mfu(r)} |')
print("\nsprec's MFU is against the same bf16 peak (its GEMMs run in TF32, whose peak is half), its peak is host RSS:")
print("`sprec bench` does not report GPU memory yet.")
PY
    exit 0
fi
[[ ${DEVICE:-cpu} == cpu ]] || { echo "bench: DEVICE must be cpu or cuda, got '$DEVICE'" >&2; exit 2; }
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
