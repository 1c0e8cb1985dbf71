#!/usr/bin/env bash
# make demo-toy: a short SFT run on the built-in sequence-reversal task, from scratch, CPU only.
# (The SPRec recommender pipeline replaces this once it lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/demo
out="runs/demo-$(date +%Y%m%d-%H%M%S)"
build/sprec toydata -o build/demo/toy.h5 --rows 2048 --seq 24 --vocab 32 --seed 1
build/sprec toydata -o build/demo/toy-heldout.h5 --rows 256 --seq 24 --vocab 32 --seed 2
build/sprec train configs/demo.ini --run.out_dir="$out"
echo
echo "held-out rows (never trained on): loss of the trained model vs the untrained one"
build/sprec init configs/demo.ini -o build/demo/untrained.h5 > /dev/null
build/sprec dump --model build/demo/untrained.h5 --batch build/demo/toy-heldout.h5 -o build/demo/dump0.h5 | sed 's/^/  untrained: /'
build/sprec dump --model "$out/checkpoint.h5" --batch build/demo/toy-heldout.h5 -o build/demo/dump1.h5 | sed 's/^/  trained:   /'
echo
echo "run folder: $out (config.ini, train_log.jsonl, checkpoint.h5); inspect with: build/sprec info $out/checkpoint.h5"
