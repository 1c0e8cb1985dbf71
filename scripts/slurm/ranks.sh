# Sourced by the sbatch scripts beside it (run in the batch shell, so that its USR1 trap is the
# batch shell's). Defines sprec_train OUT CONFIG [--section.key=value ...]: one `sprec train` over
# every task of the allocation (`srun --mpi=pmix`, one rank per task, per GPU on a GPU node),
# into the run folder OUT, continuing OUT/checkpoint.h5 when there is one (a requeued job, a
# resubmitted one) and skipping a stage that already finished (OUT/done).
#
# Time limit and preemption: submitted with --signal=B:USR1@SECONDS and --requeue, the batch
# shell gets SIGUSR1 that long before the limit; it then requeues the job (scontrol requeue),
# which ends this run, and the requeued job resumes from the last checkpoint that
# [train] ckpt_every wrote (the steps after it are trained again: set ckpt_every so that they
# take less than SECONDS). docs/cluster.md.
#
# Environment: SPREC (the binary, default build/sprec under the submit folder), SPREC_SRUN_ARGS
# (extra srun options), OMP_NUM_THREADS (default: the task's CPUs, SLURM_CPUS_PER_TASK).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
SPREC=${SPREC:-build/sprec}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

requeue_on_usr1() {
    echo "sprec job ${SLURM_JOB_ID:-?}: SIGUSR1 (time limit or preemption near): requeueing; the next run resumes"
    scontrol requeue "$SLURM_JOB_ID"
}
trap requeue_on_usr1 USR1

sprec_train() {   # OUT CONFIG [overrides...]
    [ $# -ge 2 ] || { echo "usage: sbatch scripts/slurm/SCRIPT.sbatch OUT CONFIG [--section.key=value ...]" >&2; exit 2; }
    local out=$1; shift
    [ -f "$out/done" ] && { echo "sprec job: $out finished before, skipped"; return; }
    local resume=()
    [ -f "$out/checkpoint.h5" ] && resume=(--resume)
    echo "sprec job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}): $SLURM_NTASKS ranks on" \
         "${SLURM_JOB_NUM_NODES:-1} node(s): train $* --run.out_dir=$out ${resume[*]}"
    # in the background, so that the shell runs its USR1 trap at once instead of after srun
    srun --mpi=pmix --kill-on-bad-exit=1 ${SPREC_SRUN_ARGS:-} "$SPREC" train "$@" --run.out_dir="$out" "${resume[@]}" &
    local pid=$! st=0
    wait "$pid" || st=$?
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" || st=$?; done   # a trap interrupted wait: srun goes on
    [ "$st" -eq 0 ] || { echo "sprec job: train into $out failed (exit $st)" >&2; exit "$st"; }
    touch "$out/done"
}
