#!/usr/bin/env bash
# make demo: the SPRec pipeline end to end on the built-in synthetic world, CPU only, no download.
#   prepare (synthetic) -> tiny model from scratch (SFT) -> eval -> DPO-RN (random negatives) from the SFT
#   checkpoint -> eval -> SPRec (self-play iterations) from the SFT checkpoint -> comparison table + PNG.
# Keys: configs/demo-sprec.ini (every key: docs/config.md). Results: docs/RESULTS.md "Demo (synthetic)".
# Extra arguments are passed to every `sprec` stage as overrides (e.g. --data.synth_zipf=1.2).
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=configs/demo-sprec.ini
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
out="runs/demo-sprec-$(date +%Y%m%d-%H%M%S)"
while [ -e "$out" ]; do sleep 1; out="runs/demo-sprec-$(date +%Y%m%d-%H%M%S)"; done
mkdir -p "$out"
tok="$out/smollm2-standin.tokenizer.json"
gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > "$tok"
data="$out/synthetic.h5"
common=(--data.dataset="$data" "$@")
pipeline=demo-sprec
source scripts/stage.sh
stage prepare  build/sprec prepare "$cfg" --data.tokenizer="$tok" "${common[@]}"
stage sft      build/sprec train "$cfg" --train.method=sft --run.out_dir="$out/sft" "${common[@]}"
stage eval-sft build/sprec eval "$cfg" --model "$out/sft/checkpoint.h5" -o "$out/sft" --eval.label=sft "${common[@]}"
# DPO-RN: one epoch over every train row, random negatives, constant lr (the [train] keys of the SFT stage
# are overridden here; the ini holds one [train] section)
dpo_keys=(--train.lr=1e-3 --train.min_lr=1e-3 --train.warmup_steps=0 --train.schedule=constant --train.epochs=1 --train.log_every=10)
stage dpo       build/sprec train "$cfg" --train.method=dpo --dpo.negatives=random --train.init="$out/sft/checkpoint.h5" \
                  --run.out_dir="$out/dpo" "${dpo_keys[@]}" "${common[@]}"
stage eval-dpo  build/sprec eval "$cfg" --model "$out/dpo/checkpoint.h5" -o "$out/dpo" --eval.label=dpo "${common[@]}"
# SPRec: [sprec] iterations of (self-generated negatives, SFT epoch, DPO epoch, eval); appends label sprec lines
stage sprec     build/sprec train "$cfg" --train.method=sprec --train.init="$out/sft/checkpoint.h5" \
                  --run.out_dir="$out/sprec" "${common[@]}"
rm -f "$tok"

metrics=("$out/sft/metrics.jsonl" "$out/dpo/metrics.jsonl" "$out/sprec/metrics.jsonl")
echo "== comparison on the test split (SPRec = its last iteration; every iteration: $out/sprec/metrics.jsonl)"
python3 scripts/compare_metrics.py "${metrics[@]}" -k 5,10 | tee "$out/table.txt"
python3 scripts/compare_metrics.py "${metrics[@]}" -k 5,10 --markdown > "$out/table.md"
echo "higher is better: NDCG, HR, DivRatio; lower is better: ORRatio (popularity bias), MGU, DGU (method.md section 4)"
echo
echo "== stage times (s, OMP_NUM_THREADS=$OMP_NUM_THREADS)"
print_times
echo
if python3 -c "import matplotlib" 2>/dev/null; then
    python3 scripts/plot_metrics.py "${metrics[@]}" -k 10 -o "$out/metrics.png" --title "demo-sprec (synthetic): SFT vs DPO-RN vs SPRec, K = 10"
else
    echo "demo-sprec: matplotlib is not installed, so no PNG (scripts/setup.sh installs python3-matplotlib; or pip install matplotlib;"
    echo "            then: python3 scripts/plot_metrics.py ${metrics[*]} -k 10 -o $out/metrics.png)"
fi
echo "run folder: $out (sft/ dpo/ sprec/: config.ini, train_log.jsonl, checkpoint.h5, metrics.jsonl, and topk-test.jsonl"
echo "            in sft/ dpo/, topk-test-iterT.jsonl per iteration T in sprec/; *.log)"
