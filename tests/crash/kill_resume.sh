#!/usr/bin/env bash
# Crash consistency (issue 12): runs SFT (full and LoRA), DPO (LoRA with self negatives, full with random ones)
# and a two-iteration SPRec loop on a small synthetic world, kills each with SIGKILL at seeded points, resumes
# (--resume when a checkpoint exists, else a fresh start in the same folder, as a user would) and requires the
# run folder to end byte-identical to the uninterrupted run's: checkpoint.h5, train_log.jsonl, metrics,
# pairs.h5, no temporary left.
#   tests/crash/kill_resume.sh [KILLS] [SEED]     KILLS kill points (default 24), SEED the choice (default 1)
# Kill points: a fault site (SPREC_FAULT, docs/testing.md) at a step drawn from its range: the end of a training
# step, inside a checkpoint write (ckpt.write), inside the pairs write (pairs.write); one in four instead kills
# after a random delay (timing: anywhere, e.g. mid-tensor or mid-log-line), which the seed does not make
# repeatable; CRASH_TIMING=0 leaves those out, so that a seed gives the same kills every time. `make test` runs
# `CRASH_TIMING=0 kill_resume.sh 20 1` (tests/unit/test_crash.c); docs/testing.md.
set -u
KILLS=${1:-24}
SEED=${2:-1}
SPREC=${SPREC:-build/sprec}
W=${CRASH_DIR:-build/test-tmp/crash}
RANDOM=$SEED
mkdir -p "$W"

# the world: 60 synthetic users (40 train rows), GPT-2's tokenizer, a 1-layer model of dim 16
if [[ ! -e $W/world.h5 || ! -e $W/init.h5 ]]; then
    gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > "$W/gpt2.json" &&
    $SPREC prepare configs/synthetic-prepare.ini -o "$W/world.h5" --data.synth_users=60 --data.valid_rows=10 \
        --data.test_rows=10 --data.history=3 --data.tokenizer="$W/gpt2.json" >/dev/null &&
    printf '[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\nmax_seq_len = 128\nseed = 7\n[data]\ndataset = %s\n[train]\ninit = %s\nbatch_size = 4\ngrad_accum = 2\nlr = 1e-2\nwarmup_steps = 2\n' \
        "$W/world.h5" "$W/init.h5" > "$W/crash.ini" &&
    $SPREC init "$W/crash.ini" -o "$W/init.h5" >/dev/null || { echo "crash: cannot build the world"; exit 1; }
fi

LORA="--lora.enabled=true --lora.rank=4 --lora.alpha=8 --lora.dropout=0.1"
# name | arguments | fault sites with their step ranges (SITE:LO-HI)
ALL=(
  "sft|--train.method=sft --train.max_steps=8 --train.ckpt_every=2|sft:1-8 ckpt.write:1-4"
  "sft-lora|--train.method=sft --train.max_steps=8 --train.ckpt_every=3 $LORA|sft:1-8 ckpt.write:1-3"
  "dpo-lora|--train.method=dpo --dpo.negatives=self --train.max_steps=6 --train.ckpt_every=2 $LORA|dpo:1-6 ckpt.write:1-3 pairs.write:1-1"
  "dpo-full|--train.method=dpo --dpo.negatives=random --train.max_steps=6 --train.ckpt_every=2|dpo:1-6 ckpt.write:1-3 pairs.write:1-1"
  "sprec|--train.method=sprec --sprec.iterations=2 --sprec.n=16 --sprec.sft_lr=1e-2 --sprec.dpo_lr=1e-2 --eval.ks=1,5 --eval.beams=5 --sprec.eval_rows=10 $LORA|sprec.sft:1-6 sprec.dpo:3-8 ckpt.write:1-4 pairs.write:1-2"
)

# CRASH_ONLY=REGEX: only the scenarios whose name matches (make test: a subset)
SCEN=()
for s in "${ALL[@]}"; do [[ ${s%%|*} =~ ^(${CRASH_ONLY:-.*})$ ]] && SCEN+=("$s"); done

# every file of a run folder but its lock, sorted, with its checksum (config.ini without its out_dir line;
# stage_times.jsonl by its iterations only: it times what each process ran, so a resumed iteration lacks the
# stages done before the kill)
summary() {
    (cd "$1" && find . -type f ! -name .lock ! -name config.ini ! -name stage_times.jsonl | sort | xargs -r md5sum)
    grep -v '^out_dir' "$1/config.ini" | md5sum
    [[ ! -e $1/stage_times.jsonl ]] || grep -o '"iteration": [0-9]*' "$1/stage_times.jsonl" | md5sum
}

# the run killed by its fault site ($what); waited for in the background so that bash reports no "Killed"
fault_run() {
    SPREC_FAULT=$what $SPREC train "$W/crash.ini" --run.out_dir="$out" $args >/dev/null 2>&1 &
    wait $! 2>/dev/null
}

fails=0; kills=0; same=0
declare -A REF_SECONDS
for s in "${SCEN[@]}"; do   # the uninterrupted runs
    IFS='|' read -r name args sites <<< "$s"
    rm -rf "$W/ref-$name"
    t0=$(date +%s%N)
    $SPREC train "$W/crash.ini" --run.out_dir="$W/ref-$name" $args >/dev/null 2>&1 || { echo "crash: $name: the uninterrupted run failed"; exit 1; }
    REF_SECONDS[$name]=$(( ($(date +%s%N) - t0) / 1000000 ))
done

# CRASH_POINTS="NAME:kill@SITE:STEP ...": these kill points instead of drawn ones (make test)
read -ra POINTS <<< "${CRASH_POINTS:-}"
(( ${#POINTS[@]} )) && KILLS=${#POINTS[@]}
for ((k = 0; k < KILLS; k++)); do
    if (( ${#POINTS[@]} )); then
        want=${POINTS[$k]%%:*}
        for s in "${SCEN[@]}"; do [[ ${s%%|*} == "$want" ]] && IFS='|' read -r name args sites <<< "$s"; done
    else
        IFS='|' read -r name args sites <<< "${SCEN[$((k % ${#SCEN[@]}))]}"
    fi
    out="$W/run-$name"
    rm -rf "$out"
    read -ra list <<< "$sites"
    if (( ${#POINTS[@]} )); then
        what=${POINTS[$k]#*:}
        fault_run
    elif (( RANDOM % 4 == 3 && ${CRASH_TIMING:-1} )); then   # a random moment of the run
        ms=$(( 100 + RANDOM * REF_SECONDS[$name] / 32768 ))
        what="after $ms ms"
        $SPREC train "$W/crash.ini" --run.out_dir="$out" $args >/dev/null 2>&1 &
        pid=$!
        sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null || true
    else
        pick=${list[$((RANDOM % ${#list[@]}))]}
        site=${pick%%:*}; range=${pick#*:}; lo=${range%-*}; hi=${range#*-}
        step=$(( lo + RANDOM % (hi - lo + 1) ))
        what="kill@$site:$step"
        fault_run
    fi
    kills=$((kills + 1))
    resume=""
    [[ -e $out/checkpoint.h5 ]] && resume="--resume"
    if ! $SPREC train "$W/crash.ini" --run.out_dir="$out" $args $resume > "$W/resume.log" 2>&1; then
        echo "crash: $name $what: the resume ($resume) failed:"; tail -3 "$W/resume.log"; fails=$((fails + 1)); continue
    fi
    if [[ "$(summary "$W/ref-$name")" == "$(summary "$out")" ]]; then
        same=$((same + 1))
        echo "crash: $name $what${resume:+ + --resume}: identical"
    else
        echo "crash: $name $what${resume:+ + --resume}: DIFFERS from the uninterrupted run:"
        diff <(summary "$W/ref-$name") <(summary "$out") | head -10
        fails=$((fails + 1))
    fi
done
echo "crash: $kills kills, $same resumed runs identical to the uninterrupted ones, $fails failed"
exit $((fails > 0))
