// SIGUSR1 (what SLURM's --signal=B:USR1@... leads to before a time limit): the run writes the checkpoint of
// the step it is at (SPRec: of the stage it is in), prints one line and exits with TRAIN_EXIT_RESUMABLE (75) on
// every rank; `--resume` then ends with the uninterrupted run's log, metrics and checkpoint, byte for byte.
//  - mpirun -np 2, the signal raised on ONE rank only (SPREC_FAULT=usr1@SITE:STEP, host/base/fault.c), so the
//    ranks must agree on it: SFT, DPO, and a one-iteration SPRec stopped after its SFT stage and after its DPO
//    stage. [train] ckpt_every = 0: only the signal can have written a checkpoint before the end.
//  - one process, no launcher, sent a real `kill -USR1` from outside: while it trains (stopping at the step the
//    signal came in), and held by SPREC_FAULT=hang@sft:1 (SIGSTOP) at the end of step 1, then sent SIGUSR1 and
//    SIGCONT: it stops at exactly step 1.
// Skipped (with a message) when build/sprec was built without MPI; the single-process case runs anyway.
#include <stdio.h>
#include <string.h>
#include "tests.h"

#define TMP "build/test-tmp/mpi-usr1"
// as tests/unit/test_mpi.c: one thread per rank, Open MPI's consent as root, a hang fails instead of blocking
#define PLAIN "OMP_NUM_THREADS=1 timeout 120 build/sprec "
#define COMMON "configs/demo-sprec.ini --data.dataset=" TMP "/syn.h5 --train.batch_size=4 --train.grad_accum=6 " \
               "--train.ckpt_every=0 "
#define SFT COMMON "--train.max_steps=4 --train.warmup_steps=1 --train.log_every=1"
#define DPO COMMON "--train.method=dpo --train.init=" TMP "/plain-sft/checkpoint.h5 --train.max_steps=2 " \
            "--train.warmup_steps=0 --train.lr=1e-3 --train.log_every=1"
#define SPREC COMMON "--train.method=sprec --train.init=" TMP "/plain-sft/checkpoint.h5 --sprec.iterations=1 " \
              "--sprec.n=24 --sprec.eval_rows=10 --sprec.eval_valid=false"
#define RESUMABLE 75   // TRAIN_EXIT_RESUMABLE (host/train/train.h)



// the dataset and the plain SFT run that DPO and SPRec start from (and the single-process case's reference), once
static void fixture(void) {
    static int done;
    if (done) return;
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > " TMP "/tok.json");
    run_ok(PLAIN "prepare configs/demo-sprec.ini --data.tokenizer=" TMP "/tok.json --data.dataset=" TMP "/syn.h5 "
           "--data.synth_users=400 --data.valid_rows=20 --data.test_rows=60 > /dev/null");
    run_ok(PLAIN "train " SFT " --run.out_dir=" TMP "/plain-sft > /dev/null");
    done = 1;
}


// The run in dir was stopped by the signal: exit status RESUMABLE, stop_line printed exactly once, no error and
// no abort; its checkpoint's /state holds `attr` = `value` (the step, or the SPRec stage)
static void expect_stopped(const char *cmd, int rc, const char *out, const char *stop_line, const char *dir,
                           const char *attr, const char *value) {
    if (rc != RESUMABLE || count_of(out, stop_line) != 1 || strstr(out, "sprec: error") || strstr(out, "MPI_ABORT"))
        print_message("command: %s\nexit %d, output:\n%s\n(wanted exit %d and one line '%s')\n", cmd, rc, out,
                      RESUMABLE, stop_line);
    assert_int_equal(rc, RESUMABLE);
    assert_int_equal(count_of(out, stop_line), 1);
    assert_null(strstr(out, "sprec: error"));
    assert_null(strstr(out, "MPI_ABORT"));
    char check[512];
    snprintf(check, sizeof check, "h5dump -a /state/%s %s/checkpoint.h5 | grep -q '(0): %s$'", attr, dir, value);
    run_ok(check);
}

// dir resumed with `launch` to the end: the same files as ref, byte for byte (the checkpoint by h5diff)
static void resume_equals(const char *launch, const char *args, const char *dir, const char *ref,
                          const char *const *files) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "(%s train %s --run.out_dir=%s --resume > /dev/null && h5diff %s/checkpoint.h5 "
             "%s/checkpoint.h5)", launch, args, dir, ref, dir);
    run_ok(cmd);
    for (const char *const *f = files; *f; f++) {
        snprintf(cmd, sizeof cmd, "cmp %s/%s %s/%s", ref, *f, dir, *f);
        run_ok(cmd);
    }
}

// -np 2 with SPREC_FAULT=fault on rank `rank` only: stopped as expect_stopped says, then resumed at -np 2 to the
// uninterrupted -np 2 run (ref, made once per method by the caller)
static void signalled_job(const char *name, const char *args, int rank, const char *fault, const char *stop_line,
                          const char *attr, const char *value, const char *ref, const char *const *files) {
    char cmd[4096], dir[256], fault_env[96], out[65536];
    snprintf(dir, sizeof dir, TMP "/%s-%s", name, fault);
    snprintf(fault_env, sizeof fault_env, "env SPREC_FAULT=%s ", fault);
    snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np 1 %sbuild/sprec train %s --run.out_dir=%s : -np 1 %sbuild/sprec "
             "train %s --run.out_dir=%s", dir, rank == 0 ? fault_env : "", args, dir, rank == 1 ? fault_env : "", args, dir);
    const int rc = run_capture(cmd, out, sizeof out);
    expect_stopped(cmd, rc, out, stop_line, dir, attr, value);
    resume_equals(MPIRUN "-np 2 build/sprec", args, dir, ref, files);
    print_message("test_mpi_usr1: %s, SPREC_FAULT=%s on rank %d of 2: exit %d at %s %s, resumed = the uninterrupted "
                  "run\n", name, fault, rank, rc, attr, value);
}

static void reference(const char *name, const char *args, char *ref, size_t cap) {
    char cmd[4096];
    snprintf(ref, cap, TMP "/%s-ref", name);
    snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np 2 build/sprec train %s --run.out_dir=%s > /dev/null", ref, args, ref);
    run_ok(cmd);
}

static void test_mpi_usr1_sft_dpo(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi_usr1");
    fixture();
    char ref[256];
    static const char *const sft_files[] = {"train_log.jsonl", NULL};
    static const char *const dpo_files[] = {"train_log.jsonl", "pairs.h5", NULL};
    reference("sft", SFT, ref, sizeof ref);
    signalled_job("sft", SFT, 1, "usr1@sft:2", "sft: SIGUSR1 at step 2: checkpoint written, stopping; --resume continues",
                  "step", "2", ref, sft_files);
    reference("dpo", DPO, ref, sizeof ref);
    signalled_job("dpo", DPO, 0, "usr1@dpo:1", "dpo: SIGUSR1 at step 1: checkpoint written, stopping; --resume continues",
                  "step", "1", ref, dpo_files);
}

// SPRec checkpoints per stage: a signal in a stage stops the run at that stage's checkpoint
static void test_mpi_usr1_sprec(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi_usr1");
    fixture();
    char ref[256];
    static const char *const files[] = {"train_log.jsonl", "metrics.jsonl", "topk-test-iter1.jsonl", NULL};
    reference("sprec", SPREC, ref, sizeof ref);
    // (one SFT step, then one DPO step: global steps 1 and 2)
    signalled_job("sprec", SPREC, 1, "usr1@sprec.sft:1",
                  "sprec: SIGUSR1 in iteration 1/1: checkpoint written after its SFT stage, stopping; --resume continues",
                  "stage", "\"sprec:sft\"", ref, files);
    signalled_job("sprec", SPREC, 0, "usr1@sprec.dpo:2",
                  "sprec: SIGUSR1 in iteration 1/1: checkpoint written after its DPO stage, stopping; --resume continues",
                  "stage", "\"sprec:dpo\"", ref, files);
}

// one process, no launcher, a real signal from outside: held at the end of step 1 (hang@sft:1 stops it), sent
// SIGUSR1 (pending while it is stopped) and SIGCONT; it must stop at step 1 as above, and resume to the plain run
static void test_mpi_usr1_single_process(void **state) {
    (void)state;
    fixture();
    const char *dir = TMP "/single";
    char cmd[4096], out[65536];
    snprintf(cmd, sizeof cmd, "rm -rf %s; SPREC_FAULT=hang@sft:1 OMP_NUM_THREADS=1 build/sprec train " SFT " --run.out_dir=%s & pid=$!; "
             "for i in $(seq 1000); do [ \"$(awk '{ print $3 }' /proc/$pid/stat 2>/dev/null)\" = T ] && break; sleep 0.02; done; "
             "kill -USR1 $pid; kill -CONT $pid; wait $pid", dir, dir);
    const int rc = run_capture(cmd, out, sizeof out);
    expect_stopped(cmd, rc, out, "sft: SIGUSR1 at step 1: checkpoint written, stopping; --resume continues", dir,
                   "step", "1");
    static const char *const files[] = {"train_log.jsonl", NULL};
    resume_equals(PLAIN, SFT, dir, TMP "/plain-sft", files);
    print_message("test_mpi_usr1: one process sent kill -USR1 at step 1: exit %d, resumed = the plain run\n", rc);
}

// one process sent SIGUSR1 while it trains (as soon as its first log line is there): it stops at the end of the
// step the signal came in, K; the run is 100 steps long so that the signal comes well before its end. Resumed with
// --stop-at K+1, it equals a fresh run with --stop-at K+1 (the same 100-step schedule) byte for byte.
static void test_mpi_usr1_single_process_live(void **state) {
    (void)state;
    fixture();
    const char *dir = TMP "/live", *ref = TMP "/live-ref", *args = COMMON "--train.max_steps=100 --train.warmup_steps=1";
    char cmd[4096], out[65536], line[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s; OMP_NUM_THREADS=1 build/sprec train %s --run.out_dir=%s & pid=$!; "
             "for i in $(seq 1000); do [ -s %s/train_log.jsonl ] && break; sleep 0.02; done; kill -USR1 $pid; wait $pid",
             dir, args, dir, dir);
    const int rc = run_capture(cmd, out, sizeof out);
    char log[320];
    snprintf(log, sizeof log, "%s/train_log.jsonl", dir);
    double steps[128];
    const int k = read_jsonl_values(log, "step", steps, 128);
    assert_true(k >= 1 && k < 100);
    snprintf(line, sizeof line, "sft: SIGUSR1 at step %d: checkpoint written, stopping; --resume continues", k);
    char step[16];
    snprintf(step, sizeof step, "%d", k);
    expect_stopped(cmd, rc, out, line, dir, "step", step);
    snprintf(cmd, sizeof cmd, "(rm -rf %s && " PLAIN "train %s --run.out_dir=%s --stop-at %d > /dev/null && " PLAIN
             "train %s --run.out_dir=%s --resume --stop-at %d > /dev/null && cmp %s/train_log.jsonl %s && h5diff "
             "%s/checkpoint.h5 %s/checkpoint.h5)", ref, args, ref, k + 1, args, dir, k + 1, ref, log, ref, dir);
    run_ok(cmd);
    print_message("test_mpi_usr1: one process sent kill -USR1 while training: stopped at step %d, exit %d, resumed "
                  "= the uninterrupted run\n", k, rc);
}

DEFINE_TEST_GROUP(test_mpi_usr1,
    cmocka_unit_test(test_mpi_usr1_single_process_live),
    cmocka_unit_test(test_mpi_usr1_single_process),
    cmocka_unit_test(test_mpi_usr1_sft_dpo),
    cmocka_unit_test(test_mpi_usr1_sprec),
)
