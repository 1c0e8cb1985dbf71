# Sourced by the sbatch scripts beside it (run in the batch shell, so that its USR1 trap is the
# batch shell's). Defines sprec_train OUT CONFIG [--section.key=value ...]: one `sprec train` over
# every task of the allocation (`srun --mpi=pmix`, one rank per task, per GPU on a GPU node),
# into the run folder OUT, continuing OUT/checkpoint.h5 when there is one (a requeued job, a
# resubmitted one) and skipping a stage that already finished (OUT/done).
#
# Time limit and preemption: submitted with --signal=B:USR1@SECONDS and --requeue, the batch
# shell gets SIGUSR1 that long before the limit; its trap passes the signal on to the running
# `sprec train` (srun forwards it to every rank), which writes the checkpoint of the step it is at
# (SPRec: of the stage it is in) and exits with status 75 (incomplete, resumable); the job then
# requeues itself (scontrol requeue) and the requeued job resumes there. No further stage starts
# after the signal (experiment.sbatch). SECONDS must cover one step (SPRec: one stage) and the
# checkpoint write: docs/cluster.md "Time limit and preemption".
#
# Environment: SPREC (the binary, default build/sprec under the submit folder), SPREC_SRUN_ARGS
# (extra srun options), OMP_NUM_THREADS (default: the task's CPUs, SLURM_CPUS_PER_TASK).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
SPREC=${SPREC:-build/sprec}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

RESUMABLE=75   # sprec train's exit status after a checkpoint-and-stop on SIGUSR1 (docs/training.md "Signals")
usr1=0 step_pid=
on_usr1() {
    usr1=1
    echo "sprec job ${SLURM_JOB_ID:-?}: SIGUSR1 (time limit or preemption near)${step_pid:+; passed on: the run checkpoints and stops}"
    [ -z "$step_pid" ] || kill -USR1 "$step_pid" 2>/dev/null || true
}
trap on_usr1 USR1

requeue() {   # after SIGUSR1: the rest is the requeued job's
    echo "sprec job ${SLURM_JOB_ID:-?}: $1; requeueing, the next run resumes"
    scontrol requeue "$SLURM_JOB_ID"
    exit $RESUMABLE
}

sprec_train() {   # OUT CONFIG [overrides...]
    [ $# -ge 2 ] || { echo "usage: sbatch scripts/slurm/SCRIPT.sbatch OUT CONFIG [--section.key=value ...]" >&2; exit 2; }
    local out=$1; shift
    [ -f "$out/done" ] && { echo "sprec job: $out finished before, skipped"; return; }
    [ "$usr1" = 0 ] || requeue "$out not started after SIGUSR1"
    local resume=()
    [ -f "$out/checkpoint.h5" ] && resume=(--resume)
    echo "sprec job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}): $SLURM_NTASKS ranks on" \
         "${SLURM_JOB_NUM_NODES:-1} node(s): train $* --run.out_dir=$out ${resume[*]}"
    # in the background, so that the shell runs its USR1 trap at once instead of after srun
    srun --mpi=pmix --kill-on-bad-exit=1 ${SPREC_SRUN_ARGS:-} "$SPREC" train "$@" --run.out_dir="$out" "${resume[@]}" &
    step_pid=$!
    [ "$usr1" = 0 ] || kill -USR1 "$step_pid"   # the signal came while srun was starting
    wait "$step_pid" || true
    while kill -0 "$step_pid" 2>/dev/null; do wait "$step_pid" || true; done   # a trap ended wait early: srun goes on
    local st=0
    wait "$step_pid" || st=$?   # srun's own status (the shell keeps it): the highest of the ranks'
    step_pid=
    [ "$st" -eq $RESUMABLE ] && [ "$usr1" = 1 ] && requeue "train into $out stopped at its checkpoint"
    [ "$st" -eq 0 ] || { echo "sprec job: train into $out failed (exit $st)" >&2; exit "$st"; }
    touch "$out/done"
}
