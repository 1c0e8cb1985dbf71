#!/usr/bin/env bash
# make bench: the engine (`sprec bench`) side by side with PyTorch on the same shapes and thread
# count, in one run; prints the JSON lines of both and tables with the ratio.
# DEVICE=cpu (default): SFT steps on four shapes against bench/torch_cpu.py, plus a small DPO step
#   and the log-prob head alone (sprec's fused head vs PyTorch's materialised log_softmax + gather); at dim 576 /
#   vocab 49152 also the forward alone and constrained beam decoding (sprec only), each read against the sgemm
#   rate of the same run (docs/PERFORMANCE.md's goals); one whole SPRec iteration at the small shape, stage by
#   stage (sprec only, --mode iteration).
# DEVICE=cuda: against bench/torch_cuda.py (bf16 autocast, SDPA) on a SmolLM2-135M and a Llama-3.2-1B
#   shape at seq 512: SFT step, DPO step (precomputed reference log-probs on both sides; PyTorch also
#   with a reference forward per step), catalogue-constrained generation (greedy and beam 4), and the
#   log-prob head alone at 8192 tokens, vocab 49152 and 128256; one whole SPRec iteration at the SmolLM2
#   shape, stage by stage (--mode iteration, sprec only); causal GQA attention alone (fwd + bwd)
#   on the SmolLM2-135M (9/3 heads) and Llama-3.2-1B (32/8 heads) head shapes, D 64, at seq 512 (batch 16)
#   and 2048 (batch 4): sprec's own kernel against every PyTorch SDPA backend (cuDNN, flash, efficient),
#   the measurement that decides own kernel vs cuDNN SDPA. Ratio, MFU and memory tables.
#   BENCH_COMPILE=1 adds torch.compile SFT rows.
# BENCH_TIMEOUT (s, default 180) bounds each run; BENCH_OUT the JSONL path; STEPS, THREADS.
# bench/README.md defines every mode and field.
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
    common="--steps $steps --warmup 2"
    gen="--prompts 64 --beams 4 --items 1000 --prompt-len 64"
    for s in "${gpu_shapes[@]}"; do
        read -r name batch args <<< "$s"
        # DPO: batch/2 pairs, the same number of sequences as the SFT step
        sft="$args --batch $batch" dpo="$args --batch $((batch / 2))"
        echo "bench: $name: sprec (cuda) sft, dpo, forward, generate ..." >&2
        run build/sprec bench --device cuda --mode sft --name "$name" $sft $common
        run build/sprec bench --device cuda --mode dpo --name "$name" $dpo $common
        run build/sprec bench --device cuda --mode forward --name "$name" $sft $common   # a reference pass (no PyTorch row)
        run build/sprec bench --device cuda --mode generate --name "$name-gen" $args $gen $common
        if ((have_torch)); then
            echo "bench: $name: pytorch sft, dpo, generate ..." >&2
            run python3 bench/torch_cuda.py --mode sft --name "$name" $sft --tied $common --json-only
            if [[ ${BENCH_COMPILE:-0} == 1 ]]; then
                run python3 bench/torch_cuda.py --mode sft --compile --name "$name" $sft --tied $common --json-only
            fi
            run python3 bench/torch_cuda.py --mode dpo --name "$name" $dpo --tied $common --json-only
            run python3 bench/torch_cuda.py --mode dpo --dpo-ref model --name "$name" $dpo --tied $common --json-only
            run python3 bench/torch_cuda.py --mode generate --name "$name-gen" $args $gen --tied $common --json-only
        fi
    done
    # one whole SPRec iteration at the SmolLM2 shape, stage by stage (sprec only: PyTorch has no such loop)
    echo "bench: smollm2-135m: sprec (cuda) one SPRec iteration, stage by stage ..." >&2
    run build/sprec bench --device cuda --mode iteration --name smollm2-135m-iteration --dim 576 --layers 30 --heads 9 \
        --kv-heads 3 --ffn 1536 --vocab 49152 --batch 8 --prompts 64 --items 1000 --prompt-len 64
    # attention alone: name, batch, seq, heads, kv-heads (head dim 64)
    attn_shapes=(
      "attn-smollm2-135m-t512 16 512 9 3"
      "attn-smollm2-135m-t2048 4 2048 9 3"
      "attn-llama3.2-1b-t512 16 512 32 8"
      "attn-llama3.2-1b-t2048 4 2048 32 8"
    )
    for s in "${attn_shapes[@]}"; do
        read -r name batch seq nh nkv <<< "$s"
        at="--batch $batch --seq $seq --heads $nh --kv-heads $nkv --head-dim 64 $common"
        echo "bench: $name: attention, sprec and pytorch SDPA (cudnn, flash, efficient) ..." >&2
        run build/sprec bench --device cuda --mode attention --name "$name" $at
        if ((have_torch)); then run python3 bench/torch_cuda.py --mode attention --name "$name" $at --json-only; fi
    done
    for vd in "49152 576" "128256 2048"; do
        set -- $vd
        echo "bench: log-prob head, vocab $1 ..." >&2
        lp="--vocab $1 --dim $2 --tokens 8192 $common"
        run build/sprec bench --device cuda --mode logprob --name "logprob-v$1" $lp
        if ((have_torch)); then run python3 bench/torch_cuda.py --mode logprob --name "logprob-v$1" $lp --json-only; fi
    done
    python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
rows = [r for r in rows if r.get("device") != "cpu" and r.get("impl") != "openblas"]
gb = lambda b: "-" if b is None else f"{b / 2**30:.2f} GB"
pct = lambda x: "-" if x is None else f"{x:.1%}"
key = lambda r: (r["name"], r.get("mode", "sft") + (f': {r["stage"]}' if r.get("stage") else ""))   # iteration: a row a stage
sprec = {key(r): r for r in rows if r["impl"] == "sprec"}
print()
print("| shape | mode | sprec tok/s | PyTorch tok/s | ratio | sprec ms/step | PyTorch ms/step | sprec MFU "
      "| PyTorch MFU | sprec peak | PyTorch peak | sprec extra | PyTorch extra |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in dict.fromkeys(key(r) for r in rows):
    s = sprec.get(k) or {}
    for t in [r for r in rows if key(r) == k and r["impl"].startswith("pytorch")] or [{}]:
        same = t.get("ref", "precomputed") == "precomputed"      # the PyTorch DPO row with a reference forward is extra work
        mode = k[1] + ("" if same else " (+ref fwd)") + (" (compiled)" if t.get("impl", "").endswith("compile") else "")
        if t.get("sdpa_backend"):   # attention: one PyTorch row per SDPA backend
            mode += f' ({t["sdpa_backend"]}' + (", kv repeated" if t.get("gqa") == "repeat_interleave" else "") + \
                    (", refused" if t.get("error") else "") + ")"
        st, tt = s.get("tokens_per_s"), t.get("tokens_per_s")
        ratio = f"{st / tt:.2f}x" if st and tt and same else "-"
        print(f'| {k[0]} | {mode} | {st or "-"} | {tt or "-"} | {ratio} | {s.get("ms_per_step") or "-"} | '
              f'{t.get("ms_per_step") or "-"} | {pct(s.get("mfu"))} | {pct(t.get("mfu"))} | '
              f'{gb(s.get("peak_bytes"))} | {gb(t.get("peak_bytes"))} | {gb(s.get("extra_bytes"))} | '
              f'{gb(t.get("extra_bytes"))} |')
print("\nsprec: bf16 activations and compute weights, fp32 masters/gradients/moments, bf16 GEMMs; PyTorch: bf16")
print("autocast. MFU: model FLOP/s over the GPU's dense bf16 peak. peak = device memory at its peak (sprec: its allocator's")
print("counters; PyTorch: max_memory_allocated); extra = the peak minus what was held before the step.")
print("generate: tokens = output tokens of the returned titles; ms/step = all prompts decoded once.")
attn = [r for r in rows if r.get("mode") == "attention"]
if attn:   # the own-kernel vs cuDNN SDPA decision: ms per fwd+bwd step, sprec / each backend = speed ratio
    backends = list(dict.fromkeys(r["sdpa_backend"] for r in attn if r.get("sdpa_backend")))
    print("\nAttention alone (causal GQA fwd + bwd, D 64): ms/step, and sprec speed / backend speed (>1: sprec faster)")
    print("| shape | B x T | heads/kv | sprec ms | sprec TFLOP/s | " +
          " | ".join(f"{b} ms | {b} TFLOP/s | sprec/{b}" for b in backends) + " |")
    print("|---|---|---|---|---|" + "---|---|---|" * len(backends))
    for name in dict.fromkeys(r["name"] for r in attn):
        s = sprec.get((name, "attention")) or {}
        any_r = s or next(r for r in attn if r["name"] == name)
        tf = lambda r: "-" if r.get("gflops") is None else f'{r["gflops"] / 1e3:.1f}'
        cells = []
        for b in backends:
            t = next((r for r in attn if r["name"] == name and r.get("sdpa_backend") == b), {})
            sm, tm = s.get("ms_per_step"), t.get("ms_per_step")
            cells += [("refused" if t.get("error") else "-") if tm is None else str(tm), tf(t),
                      f"{tm / sm:.2f}x" if sm and tm else "-"]
        print(f'| {name} | {any_r["batch"]} x {any_r["seq"]} | {any_r["heads"]}/{any_r["kv_heads"]} | '
              f'{s.get("ms_per_step", "-")} | {tf(s)} | ' + " | ".join(cells) + " |")
    print("FLOPs: fwd = 2*2*B*NH*T^2*D/2 (causal), bwd = 2.5 x fwd. sprec: bf16 q/k/v/out, fp32 dout and gradients;")
    print("PyTorch: bf16 throughout. Results go to docs/PERFORMANCE.md (bench/README.md, mode attention).")
PY
    exit 0
fi
[[ ${DEVICE:-cpu} == cpu ]] || { echo "bench: DEVICE must be cpu or cuda, got '$DEVICE'" >&2; exit 2; }
# name, mode, flags; the dpo shape's --batch is pairs (8 sequences, as the SFT shapes)
shapes=(
  "small  sft --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688  --vocab 8192 --seq 256 --batch 8"
  "small-fullloss sft --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688  --vocab 8192 --seq 256 --batch 8"
  "medium sft --dim 576 --layers 4 --heads 9 --kv-heads 3 --ffn 1536 --vocab 8192 --seq 512 --batch 8"
  "small-dpo dpo --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688  --vocab 8192 --seq 256 --batch 4"
  "logprob-v8192 logprob --dim 256 --vocab 8192 --tokens 2048"
  "small-iteration iteration --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688  --vocab 8192 --batch 8 --prompts 32 --items 200 --prompt-len 64"
  "v49152-fullloss sft --dim 576 --layers 4 --heads 9 --kv-heads 3 --ffn 1536 --vocab 49152 --seq 512 --batch 4"
  "v49152-forward forward --dim 576 --layers 4 --heads 9 --kv-heads 3 --ffn 1536 --vocab 49152 --seq 512 --batch 4"
  "v49152-gen generate --dim 576 --layers 4 --heads 9 --kv-heads 3 --ffn 1536 --vocab 49152 --prompts 16 --beams 4 --items 200 --prompt-len 64"
  "logprob-v49152 logprob --dim 576 --vocab 49152 --tokens 2048"
)
have_torch=1
python3 -c "import torch, transformers" 2>/dev/null || { have_torch=0; echo "bench: torch/transformers missing (scripts/setup.sh --python installs them); engine only" >&2; }
for s in "${shapes[@]}"; do
    read -r name mode args <<< "$s"
    echo "bench: $name: sprec ..." >&2
    # PyTorch computes the head on every position either way; sprec only on the loss positions,
    # so the -fullloss shape (loss on every position) compares the rest of the engine
    extra=""; [[ $name == *fullloss ]] && extra="--loss-frac 1"
    build/sprec bench --mode "$mode" --name "$name" $args $extra --threads "$threads" --steps "$steps" --warmup 2 | tee -a "$out"
    if ((have_torch)) && [[ $mode != forward && $mode != generate && $mode != iteration ]]; then   # torch_cpu.py has no such mode
        echo "bench: $name: pytorch ..." >&2
        python3 bench/torch_cpu.py --mode "$mode" --name "$name" $args --threads "$threads" --steps "$steps" --warmup 2 \
            --tied --json-only | tee -a "$out"
    fi
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# each sft/forward run prints the sgemm rate of its own process right after its step: its yardstick;
# the other modes are read against the latest sgemm line before them
def sgemm_for(i, mode):
    cand = rows[i + 1:] if mode in ("sft", "forward") else rows[i::-1]
    cand = [r for r in cand if r["name"].startswith("sgemm")]
    return cand[0]["gflops"] if cand else float("nan")
print()
print(f"| shape | mode | threads | sprec tok/s | PyTorch tok/s | ratio | sprec GFLOP/s | PyTorch GFLOP/s | sgemm GFLOP/s (same run) | sprec / sgemm |")
print("|---|---|---|---|---|---|---|---|---|---|")
for i, s in enumerate(rows):
    if s["impl"] != "sprec":
        continue
    name = s["name"]
    t = next((r for r in rows if r["name"] == name and r["impl"] == "pytorch"), None)
    mode = s.get("mode", "sft")
    if mode == "logprob":
        shape = f'{name} ({s["tokens"]} tokens, dim {s["dim"]}, vocab {s["vocab"]})'
    elif mode == "iteration":   # one line per stage, then the whole iteration
        mode = f'iteration: {s["stage"]}'
        shape = f'{name} ({s["prompts"]} prompts of {s["prompt_len"]}, dim {s["dim"]}, {s["layers"]} layers, vocab {s["vocab"]})'
    elif mode == "generate":
        shape = f'{name} ({s["prompts"]} prompts of {s["prompt_len"]}, dim {s["dim"]}, {s["layers"]} layers, vocab {s["vocab"]})'
    else:
        shape = f'{name} (dim {s["dim"]}, {s["layers"]} layers, vocab {s["vocab"]}, seq {s["seq"]}, batch {s["batch"]})'
    g = sgemm_for(i, mode)
    tt = f'{t["tokens_per_s"]:.0f} | {s["tokens_per_s"]/t["tokens_per_s"]:.2f}x | ' if t else "- | - | "
    tg = f'{t["gflops"]:.1f}' if t else "-"
    print(f'| {shape} | {mode} | {s["threads"]} | {s["tokens_per_s"]:.0f} | {tt}{s["gflops"]:.1f} | {tg} | {g:.1f} | {s["gflops"] / g:.0%} |')
PY
