#!/usr/bin/env bash
# The 1-rank NCCL check (issue 11), called by tests/gpu/run.sh, or alone: tests/gpu/nccl.sh [DIR]
# `mpirun -np 1 build/sprec train ... --device cuda` sums its gradients through NCCL (a communicator from an
# ncclUniqueId broadcast over MPI, the all-reduce on a stream of its own: host/base/dist/dist_mpi.c); its
# train_log.jsonl must be the plain --device cuda run's, byte for byte (an all-reduce over one rank is a copy,
# so any difference is the NCCL path's: a missed synchronisation, a wrong buffer or count). Then the same with
# [train] zero = 1: ZeRO-1's gradient reduce-scatter (grouped ncclReduce) and all-gather of the updated weights
# (grouped ncclBroadcast) over one rank, whose shard is everything: the same log again. Two NCCL ranks cannot
# share one GPU, so multi-GPU sums are not checked here. Exit 0: pass; 1: fail; 77: skipped (no mpirun, no GPU,
# or build/sprec built without NCCL).
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build/gpu-nccl}
command -v mpirun >/dev/null || { echo "nccl: skipped: no mpirun (Open MPI) on this machine"; exit 77; }
ldd build/sprec 2>/dev/null | grep libnccl >/dev/null || { echo "nccl: skipped: build/sprec was built without NCCL"; exit 77; }
nvidia-smi -L >/dev/null 2>&1 || { echo "nccl: skipped: no GPU"; exit 77; }
mkdir -p "$dir" && rm -rf "$dir/plain" "$dir/np1" "$dir/zero" || exit 1
fail() { echo "nccl: FAILED: $1"; tail -5 "$2"; exit 1; }
build/sprec toydata -o "$dir/toy.h5" --rows 256 --seq 24 --vocab 32 --seed 1 > "$dir/toydata.log" 2>&1 \
    || fail "sprec toydata" "$dir/toydata.log"
args=(configs/demo.ini --run.device=cuda --train.max_steps=20 --train.log_every=1 --train.ckpt_every=0
      --data.train="$dir/toy.h5")
build/sprec train "${args[@]}" --run.out_dir="$dir/plain" > "$dir/plain.log" 2>&1 || fail "the plain cuda run" "$dir/plain.log"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun -np 1 build/sprec train "${args[@]}" \
    --run.out_dir="$dir/np1" > "$dir/np1.log" 2>&1 || fail "mpirun -np 1 ... --device cuda" "$dir/np1.log"
grep -q "^dist: 1 ranks | 20 gradient sums" "$dir/np1.log" || fail "no NCCL gradient sums in its summary line" "$dir/np1.log"
cmp "$dir/plain/train_log.jsonl" "$dir/np1/train_log.jsonl" || fail "train_log.jsonl differs from the plain run's" "$dir/np1.log"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun -np 1 build/sprec train "${args[@]}" \
    --train.zero=1 --run.out_dir="$dir/zero" > "$dir/zero.log" 2>&1 || fail "mpirun -np 1 ... --train.zero=1" "$dir/zero.log"
grep -q "^zero: AdamW moments sharded over 1 ranks" "$dir/zero.log" || fail "no ZeRO-1 line" "$dir/zero.log"
grep -q "^dist: 1 ranks | 20 gradient sums" "$dir/zero.log" || fail "no NCCL reduce-scatters in its summary line" "$dir/zero.log"
cmp "$dir/plain/train_log.jsonl" "$dir/zero/train_log.jsonl" || fail "zero = 1: train_log.jsonl differs from the plain run's" "$dir/zero.log"
echo "nccl: mpirun -np 1 --device cuda (20 NCCL all-reduces; with zero = 1, 20 reduce-scatters and all-gathers) = the plain cuda run, byte for byte"
