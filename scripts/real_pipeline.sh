#!/usr/bin/env bash
# The SPRec comparison on a real dataset and model, the same stages as `make demo`:
#   prepare -> SFT from train.init (LoRA) -> eval -> DPO-RN from the SFT checkpoint -> eval
#   -> SPRec (self-play iterations, each evaluated) from the SFT checkpoint -> table.
# Each stage runs at the config's own settings for it ([train]: SFT; [dpo] lr, batch_size, ...: DPO-RN;
# [sprec] sft_* / dpo_*: SPRec's stages); the script adds only paths, the method and, for DPO-RN, random
# negatives. $OUT/plan.jsonl records every stage's effective settings (sprec train --dry-run).
# Usage: scripts/real_pipeline.sh CONFIG [--section.key=value ...]   (overrides for every stage)
# Stage-only overrides come from the environment, word-split:
#   SFT_ARGS, DPO_ARGS, SPREC_ARGS, EVAL_ARGS (EVAL_ARGS also reaches the SPRec stage, which evaluates
#   after each iteration). OUT = run folder (default runs/CONFIGNAME-YYYYMMDD-HHMMSS). SPREC_BIN = binary.
#   RESUME=1 with OUT = an interrupted run's folder: finished stages are skipped, an interrupted training stage
#   continues from its last checkpoint (sprec train --resume), an interrupted eval starts again.
# Example (docs/RESULTS.md "Real runs"):
#   SFT_ARGS="--train.max_steps=48" EVAL_ARGS="--eval.max_rows=100" \
#   DPO_ARGS="--dpo.n_pairs=64" SPREC_ARGS="--sprec.n=64 --sprec.iterations=3" \
#   scripts/real_pipeline.sh configs/goodreads-smollm2.ini
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
cfg=$1; shift
[ -f "$cfg" ] || { echo "real_pipeline: no config file '$cfg'" >&2; exit 2; }
bin=${SPREC_BIN:-build/sprec}
[ -x "$bin" ] || { echo "real_pipeline: '$bin' is missing: run make first" >&2; exit 2; }
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
name=$(basename "$cfg" .ini)
out=${OUT:-runs/$name-$(date +%Y%m%d-%H%M%S)}
[ "${RESUME:-0}" = 1 ] || [ ! -e "$out/sft" ] ||
    { echo "real_pipeline: '$out' already holds a run; pick another OUT, or RESUME=1 to continue it" >&2; exit 2; }
mkdir -p "$out"
pipeline=real_pipeline
source scripts/stage.sh
read -r -a sft_args <<< "${SFT_ARGS:-}"
read -r -a dpo_args <<< "${DPO_ARGS:-}"
read -r -a sprec_args <<< "${SPREC_ARGS:-}"
read -r -a eval_args <<< "${EVAL_ARGS:-}"
common=(--data.dataset="$out/data.h5" "$@")
{ echo "config: $cfg"; echo "overrides: $*"; echo "SFT_ARGS: ${SFT_ARGS:-}"; echo "DPO_ARGS: ${DPO_ARGS:-}"
  echo "SPREC_ARGS: ${SPREC_ARGS:-}"; echo "EVAL_ARGS: ${EVAL_ARGS:-}"; echo "threads: $OMP_NUM_THREADS"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; echo "started: $(date -u)"; echo; } >> "$out/command.txt"
resume_of() {   # --resume when a training stage's folder has a checkpoint from an interrupted attempt
    [ "${RESUME:-0}" = 1 ] && [ -f "$out/$1/checkpoint.h5" ] && echo --resume || true
}

stage prepare   "$bin" prepare "$cfg" "${common[@]}"
{ "$bin" train "$cfg" --train.method=sft --dry-run "${common[@]}" "${sft_args[@]}"
  "$bin" train "$cfg" --train.method=dpo --dpo.negatives=random --dry-run "${common[@]}" "${dpo_args[@]}"
  "$bin" train "$cfg" --train.method=sprec --dry-run "${common[@]}" "${eval_args[@]}" "${sprec_args[@]}"; } > "$out/plan.jsonl"
echo "== stage settings ($out/plan.jsonl):"; cat "$out/plan.jsonl"
stage sft       "$bin" train "$cfg" --train.method=sft --run.out_dir="$out/sft" $(resume_of sft) "${common[@]}" "${sft_args[@]}"
stage eval-sft  "$bin" eval "$cfg" --model "$out/sft/checkpoint.h5" -o "$out/sft" --eval.label=sft "${common[@]}" "${eval_args[@]}"
stage dpo       "$bin" train "$cfg" --train.method=dpo --dpo.negatives=random --train.init="$out/sft/checkpoint.h5" \
                  --run.out_dir="$out/dpo" $(resume_of dpo) "${common[@]}" "${dpo_args[@]}"
stage eval-dpo  "$bin" eval "$cfg" --model "$out/dpo/checkpoint.h5" -o "$out/dpo" --eval.label=dpo "${common[@]}" "${eval_args[@]}"
stage sprec     "$bin" train "$cfg" --train.method=sprec --train.init="$out/sft/checkpoint.h5" \
                  --run.out_dir="$out/sprec" $(resume_of sprec) "${common[@]}" "${eval_args[@]}" "${sprec_args[@]}"

metrics=("$out/sft/metrics.jsonl" "$out/dpo/metrics.jsonl" "$out/sprec/metrics.jsonl")
echo "== comparison (SPRec = its last iteration; every iteration: $out/sprec/metrics.jsonl)"
python3 scripts/compare_metrics.py "${metrics[@]}" -k 5,10 | tee "$out/table.txt"
python3 scripts/compare_metrics.py "${metrics[@]}" -k 5,10 --markdown > "$out/table.md"
echo "== stage times (s, OMP_NUM_THREADS=$OMP_NUM_THREADS)"
print_times
if python3 -c "import matplotlib" 2>/dev/null; then
    python3 scripts/plot_metrics.py "${metrics[@]}" -k 10 -o "$out/metrics.png" --title "$name: SFT vs DPO-RN vs SPRec, K = 10"
fi
echo "run folder: $out"
