#!/usr/bin/env bash
# `make test-slurm`: the SLURM batch scripts (scripts/slurm/) on a real one-node SLURM cluster that this
# script starts from Debian's packages (slurmctld, slurmd, slurm-client, munge; scripts/setup.sh installs
# them): munged, slurmctld and slurmd run as root in the foreground of background jobs, with their keys,
# configs, state and logs in build/test-tmp/slurm, and are stopped by their pids at the end, however the
# script ends. The node offers Gres=gpu:2 backed by two empty files, so the GPU scripts run their launch
# logic (--gpus-per-node=2) on the CPU backend. Checks:
#   0. without the cluster: experiment.sbatch with stand-ins for srun and scontrol, sent SIGUSR1 during its SFT
#      stage or as it ends: it requeues (on srun's 75, or on 0 before the next stage) and starts no next stage;
#   1. sbatch --wait scripts/slurm/train-node.sbatch with 2 tasks (srun --mpi=pmix): the run's log and
#      checkpoint are byte-identical to `mpirun -np 2` of the same SFT run;
#   2. the same job sent SIGUSR1 on its batch shell (as --signal=B:USR1@... does before the time limit)
#      while its ranks are at the end of step 2 (SPREC_FAULT=hang@sft:2 holds them there, so the signal's
#      way takes no race): the trap passes it on to srun and the ranks, which write the checkpoint of step 2
#      (ckpt_every = 0: nothing else writes one before the end) and exit 75; the job requeues itself, the
#      requeued run resumes at step 2 and ends with the same log and checkpoint.
# Exit 0: passed; 1: failed; 77: skipped (no SLURM/munge installed, or build/sprec without MPI).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
for t in munged slurmctld slurmd sbatch srun scontrol mpirun; do
    command -v "$t" >/dev/null || { echo "test-slurm: skipped: $t not found (scripts/setup.sh installs SLURM and munge)"; exit 77; }
done
ldd build/sprec 2>/dev/null | grep libmpi >/dev/null || { echo "test-slurm: skipped: build/sprec has no MPI"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "test-slurm: skipped: starts slurmd, which needs root"; exit 77; }

T=$root/build/test-tmp/slurm
pids=()
stop() {   # this cluster's jobs (a failed check may leave one running), then the daemons this script started, by pid
    local p
    [ -f "${SLURM_CONF:-}" ] && scancel --quiet --user="$(id -un)" 2>/dev/null && sleep 1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}
trap stop EXIT
[ "${SLURM_TEST_HOLD:-0}" = 1 ] && trap "" EXIT   # (debugging: keep the cluster up)
die() { echo "test-slurm: FAILED: $*" >&2; for f in "$T"/log/*.log; do echo "--- $f"; tail -5 "$f"; done >&2; exit 1; }
t_start=$(date +%s.%N)

rm -rf "$T" && mkdir -p "$T"/{munge,state,spool,log,dev,runs} || exit 1

# 0. the USR1 logic of the batch scripts (scripts/slurm/ranks.sh), no cluster needed: experiment.sbatch run by bash
#    with stand-ins for srun (records its arguments, runs until it gets SIGUSR1, then exits with FAKE_ON_USR1: 75
#    as sprec after its checkpoint, 0 as a stage that ended just then) and scontrol (records them)
fake=$T/fake
mkdir -p "$fake/bin" "$fake/x/sft" "$fake/x/sprec"
cat > "$fake/bin/srun" <<'SH'
#!/usr/bin/env bash
echo "srun $*" >> "$FAKE/calls"
trap 'exit $FAKE_ON_USR1' USR1
touch "$FAKE/running"
for i in $(seq "$FAKE_TICKS"); do sleep 0.05; done
SH
printf '#!/usr/bin/env bash\necho "scontrol $*" >> "$FAKE/calls"\n' > "$fake/bin/scontrol"
chmod +x "$fake/bin/srun" "$fake/bin/scontrol"
experiment() {   # ON_USR1 TICKS SIGNAL: experiment.sbatch into $fake/x; SIGNAL = 1: SIGUSR1 to it once srun runs
    rm -f "$fake/calls" "$fake/running"
    FAKE=$fake FAKE_ON_USR1=$1 FAKE_TICKS=$2 PATH=$fake/bin:$PATH SLURM_JOB_ID=7 SLURM_NTASKS=2 SLURM_SUBMIT_DIR=$root \
        bash scripts/slurm/experiment.sbatch "$fake/x" cfg.ini > "$fake/out" 2>&1 &
    local pid=$! i
    if [ "$3" = 1 ]; then
        for i in $(seq 400); do [ -f "$fake/running" ] && break; sleep 0.05; done
        kill -USR1 "$pid"
    fi
    wait "$pid"
}
calls() { grep -c "$1" "$fake/calls" 2>/dev/null; }
fake_fail() { die "experiment.sbatch's USR1 logic: $1: $(cat "$fake/calls" "$fake/out" 2>&1)"; }
experiment 75 400 1; st=$?   # signalled in the SFT stage, which stops with 75: requeue, SPRec not started
[ "$st" = 75 ] && [ "$(calls '^srun ')" = 1 ] && [ "$(calls 'out_dir=.*/x/sft')" = 1 ] && [ "$(calls '^scontrol requeue 7$')" = 1 ] \
    && [ ! -e "$fake/x/sft/done" ] || fake_fail "SIGUSR1 during SFT (exit $st)"
experiment 0 400 1; st=$?    # signalled as the SFT stage ends (exit 0): it is done, SPRec is the requeued job's
[ "$st" = 75 ] && [ "$(calls '^srun ')" = 1 ] && [ "$(calls '^scontrol requeue 7$')" = 1 ] && [ -e "$fake/x/sft/done" ] \
    || fake_fail "SIGUSR1 as SFT ends (exit $st)"
experiment 0 1 0; st=$?      # the requeued job: SFT skipped, SPRec runs from SFT's checkpoint, no requeue
[ "$st" = 0 ] && [ "$(calls '^srun ')" = 1 ] && [ "$(calls "train.init=$fake/x/sft/checkpoint.h5")" = 1 ] \
    && [ "$(calls '^scontrol')" = 0 ] && [ -e "$fake/x/sprec/done" ] || fake_fail "the requeued job (exit $st)"
echo "test-slurm: experiment.sbatch on SIGUSR1 (stand-in srun): exit 75 -> requeue, no next stage; 0 -> requeue" \
     "before the next stage; the requeued job goes on with it"
chmod 700 "$T/munge"
touch "$T/dev/gpu0" "$T/dev/gpu1"
head -c 1024 /dev/urandom > "$T/munge/munge.key" && chmod 400 "$T/munge/munge.key"
munged -F --force --key-file="$T/munge/munge.key" -S "$T/munge/socket" --pid-file="$T/munge/pid" \
    --seed-file="$T/munge/seed" --log-file="$T/log/munged.log" 2>>"$T/log/munged.log" &
pids+=($!)

# two free TCP ports for slurmctld and slurmd
port_free() { ! grep -qi ":$(printf '%04X' "$1") " /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
port=$((20000 + $$ % 20000))
while ! port_free $port || ! port_free $((port + 1)); do port=$((port + 2)); done
host=$(hostname -s)
cpus=$(nproc)
export SLURM_CONF=$T/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=sprectest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge/socket
CredType=cred/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
NodeName=$host CPUs=$cpus Gres=gpu:2 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
echo "NodeName=$host Name=gpu File=$T/dev/gpu[0-1]" > "$T/gres.conf"
for i in $(seq 50); do [ -S "$T/munge/socket" ] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" 2>>"$T/log/slurmctld.log" &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" 2>>"$T/log/slurmd.log" &
pids+=($!)
for i in $(seq 100); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %t 2>/dev/null | grep -q idle || die "the SLURM node did not come up within 20 s"
echo "test-slurm: one-node cluster up ($host, $cpus CPUs, gpu:2) in $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# the synthetic world of tests/unit/test_mpi.c and an 8-step SFT run, checkpoint at the end only
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > "$T/tok.json"
build/sprec prepare configs/demo-sprec.ini --data.tokenizer="$T/tok.json" --data.dataset="$T/syn.h5" \
    --data.synth_users=400 --data.valid_rows=20 --data.test_rows=60 > "$T/log/prepare.log" 2>&1 || die "sprec prepare"
sft=(configs/demo-sprec.ini --data.dataset="$T/syn.h5" --train.batch_size=4 --train.grad_accum=6
     --train.max_steps=8 --train.warmup_steps=1 --train.log_every=1 --train.ckpt_every=0)
timeout 300 mpirun --oversubscribe -np 2 build/sprec train "${sft[@]}" --run.out_dir="$T/runs/mpirun" \
    > "$T/log/mpirun.log" 2>&1 || die "mpirun -np 2 sprec train (log: $T/log/mpirun.log)"
same_run() {   # DIR: the mpirun run's log and checkpoint, byte for byte
    cmp "$T/runs/mpirun/train_log.jsonl" "$1/train_log.jsonl" && h5diff "$T/runs/mpirun/checkpoint.h5" "$1/checkpoint.h5" \
        || die "$1 differs from the mpirun -np 2 run"
}
job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
submit=(sbatch --parsable --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 --time=10 --chdir="$root")

# 1. the batch script for one node, two ranks
t0=$(date +%s.%N)
job=$(timeout 300 "${submit[@]}" --wait --output="$T/log/job-plain.out" scripts/slurm/train-node.sbatch "$T/runs/sbatch" "${sft[@]}") \
    || { cat "$T/log/job-plain.out"; die "sbatch --wait scripts/slurm/train-node.sbatch (job $job)"; }
grep -q "2 ranks on 1 node" "$T/log/job-plain.out" || die "job $job did not run 2 ranks: $(cat "$T/log/job-plain.out")"
same_run "$T/runs/sbatch"
echo "test-slurm: sbatch train-node.sbatch (2 ranks, srun --mpi=pmix) = mpirun -np 2, byte for byte ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"

# 2. SIGUSR1 on the batch shell while the ranks wait at the end of step 2: checkpoint there, exit 75, requeued,
#    resumed, the same run
job=$(SPREC_FAULT=hang@sft:2 "${submit[@]}" --output="$T/log/job-requeue.out" scripts/slurm/train-node.sbatch \
      "$T/runs/requeue" "${sft[@]}") || die "sbatch (requeue)"
job_ranks() {   # the pids of the job's sprec processes
    local p
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = sprec ] && tr '\0' '\n' 2>/dev/null < "$p/environ" | grep -qx "SLURM_JOB_ID=$job" \
            && echo "${p#/proc/}"
    done
}
all_ranks() {   # TEST: true when the job has 2 ranks and TEST holds for each pid
    local p n=0
    for p in $(job_ranks); do "$1" "$p" && n=$((n + 1)); done
    [ "$n" = 2 ]
}
stopped() { [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = T ]; }
usr1_pending() { local m; m=$(awk '/^ShdPnd:/ { print $2 }' "/proc/$1/status" 2>/dev/null); [ -n "$m" ] && (( 0x$m & 0x200 )); }
for i in $(seq 600); do all_ranks stopped && break; sleep 0.1; done
all_ranks stopped || die "job $job: its 2 ranks did not reach the end of step 2 within 60 s"
scancel --batch --signal=USR1 "$job" || die "scancel --signal=USR1 $job"
# its way: the batch shell's trap, srun, slurmstepd, every rank (pending while they are stopped)
for i in $(seq 300); do all_ranks usr1_pending && break; sleep 0.1; done
all_ranks usr1_pending || die "job $job: SIGUSR1 did not reach both ranks within 30 s: $(cat "$T/log/job-requeue.out")"
scancel --signal=CONT "$job" || die "scancel --signal=CONT $job"
for i in $(seq 1200); do
    st=$(job_state "$job")
    # a requeued job waits ~2 minutes before it may start again (slurmctld's own delay): start it now, once the
    # first run's step is gone from the node (its slurmstepd holds the step's PMIx socket a few seconds more)
    [ "$st" = PENDING ] && scontrol show job "$job" | grep -q "Restarts=1" && ! ls "$T"/spool/stepd.slurm.pmix."$job".* \
        >/dev/null 2>&1 && scontrol update JobId="$job" StartTime=now
    case "$st" in COMPLETED) break ;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) die "job $job ended $st" ;; esac
    sleep 0.1
done
[ "$st" = COMPLETED ] || die "job $job not done within 120 s (state $st)"
out=$T/log/job-requeue.out
[ "$(grep -c "sft: SIGUSR1 at step 2: checkpoint written, stopping; --resume continues" "$out")" = 1 ] \
    && grep -q "train into $T/runs/requeue stopped at its checkpoint; requeueing" "$out" && grep -q "restart 1" "$out" \
    && grep -q "sft: resuming $T/runs/requeue/checkpoint.h5 at step 2 " "$out" \
    || die "job $job did not checkpoint at step 2, requeue and resume there: $(cat "$out")"
same_run "$T/runs/requeue"
echo "test-slurm: SIGUSR1 at step 2 -> checkpoint of step 2, exit 75 -> requeued -> resumed at step 2 = the" \
     "uninterrupted run, byte for byte"
echo "test-slurm: passed in $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
