#!/usr/bin/env bash
# CPU scaling of sprec bench under mpirun (docs/SCALING.md, "Measured here"):
#   1. an SFT step and negative generation at 1 rank x 1 thread, 1 rank x 2 threads and
#      2 ranks x 1 thread, the three run one after the other, REPEATS times (alternating,
#      so a change in the machine's load hits all three alike); and at 1 x 1 and 2 x 1 an
#      SFT step of 32 tokens (sum_bound: the gradient sum's own cost);
#   2. the peak memory per rank of an SFT step with ZeRO-1 off and on at N = 1, 2, 4 ranks
#      on a model whose AdamW moments matter (configs/demo-sprec.ini's 768-wide shape).
# Every result line (sprec bench's JSON) gets "run" (what was launched) and "load" (the
# 1-minute load average before it) and goes to OUT (default build/scaling_cpu.jsonl);
# a summary table follows on stdout. Usage: bench/scaling_cpu.sh [REPEATS] [OUT]
#   SKIP_ZERO=1 skips part 2; SKIP_SPEED=1 skips part 1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
OUT=${2:-build/scaling_cpu.jsonl}
SPREC=${SPREC:-build/sprec}   # (another copy: rebuild while it runs)
ldd "$SPREC" | grep libmpi >/dev/null || { echo "scaling_cpu.sh: $SPREC was built without MPI (scripts/setup.sh installs Open MPI)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # (root in containers)
MPIRUN="mpirun --oversubscribe --bind-to none"
# SFT: the bench's default model (7.4M parameters), 8 rows of 128 tokens in micro-batches of 2
SFT="--mode sft --seq 128 --batch 8 --micro-batch 2 --steps 5 --warmup 2"
# the gradient sum alone, nearly: the same model, 2 rows of 16 tokens in micro-batches of 1 (the
# CPU seconds the sum costs per step = this run's at 2 ranks minus at 1)
SUM="--mode sft --seq 16 --batch 2 --micro-batch 1 --steps 10 --warmup 2"
# negative generation: 64 prompts of 64 tokens, constrained greedy and width-4 beams over 1,000 titles
GEN="--mode generate --prompts 64 --beams 4 --items 1000 --prompt-len 64 --steps 3 --warmup 1"
# ZeRO-1 memory: configs/demo-sprec.ini's model at dim 768 (vocab 49,152 = its tokenizer's), one step
BIG="--mode sft --dim 768 --layers 8 --heads 12 --kv-heads 4 --ffn 2048 --vocab 49152 --seq 64 --batch 4 --micro-batch 1 --steps 1 --warmup 1"
: > "$OUT"

# run LABEL RANKS THREADS ARGS...: one bench run, its JSON lines tagged and appended to OUT
run() {
    local label=$1 ranks=$2 threads=$3
    shift 3
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    local cmd=(env OMP_NUM_THREADS="$threads" "$SPREC" bench --threads "$threads" "$@")
    [ "$ranks" -gt 1 ] && cmd=($MPIRUN -np "$ranks" -x OMP_NUM_THREADS="$threads" "$SPREC" bench --threads "$threads" "$@")
    "${cmd[@]}" 2>/dev/null | grep '^{' | grep -v '"sgemm_1024"' |
        sed "s/^{/{\"run\": \"$label\", \"load\": $load, /" >> "$OUT"
}

if [ "${SKIP_SPEED:-0}" != 1 ]; then
    for r in $(seq "$REPEATS"); do
        for cfg in "1x1 1 1" "1x2 1 2" "2x1 2 1"; do
            set -- $cfg
            echo "repeat $r/$REPEATS: $1 sft, generate (load $(cut -d' ' -f1 /proc/loadavg))" >&2
            run "$1" "$2" "$3" $SFT
            run "$1" "$2" "$3" $GEN
            [ "$1" != 1x2 ] && run "$1" "$2" "$3" $SUM --name sum_bound
        done
    done
fi
if [ "${SKIP_ZERO:-0}" != 1 ]; then
    for n in 1 2 4; do
        for z in 0 1; do
            echo "zero $z at $n ranks (load $(cut -d' ' -f1 /proc/loadavg))" >&2
            run "zero$z-np$n" "$n" 1 $BIG --zero "$z"
        done
    done
fi

# the summary: ranges over the repeats
python3 - "$OUT" <<'EOF'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
speed = collections.defaultdict(list)
for r in rows:
    if not r["run"].startswith("zero"):
        speed[(r["name"], r["run"])].append(r)
def rng(v, f):
    return (f % min(v)) if min(v) == max(v) else (f % min(v)) + "-" + (f % max(v))
print("%-16s %-4s %-12s %-14s %-12s %-12s %-12s %s" % ("name", "run", "tokens/s", "ms/step", "comm share",
      "CPU s/step", "cores used", "load"))
for (name, run), rs in sorted(speed.items()):
    print("%-16s %-4s %-12s %-14s %-12s %-12s %-12s %s" % (name, run, rng([r["tokens_per_s"] for r in rs], "%.0f"),
          rng([r["ms_per_step"] for r in rs], "%.0f"), rng([100 * r["comm_share"] for r in rs], "%.1f%%"),
          rng([r["cpu_s_per_step"] for r in rs], "%.3f"), rng([r["cores_used"] for r in rs], "%.2f"),
          rng([r["load"] for r in rs], "%.1f")))
zero = [r for r in rows if r["run"].startswith("zero")]
if zero:
    print("\n%-10s %-6s %-44s %s" % ("run", "ranks", "peak MiB per rank (rss)", "all-reduced MiB/step"))
    for r in zero:
        print("%-10s %-6d %-44s %.1f" % (r["run"], r["ranks"], ", ".join("%.0f" % (p / 2**20) for p in r["peak_bytes_per_rank"]),
              r["allreduce_bytes_per_step"] / 2**20))
EOF
