// Ranks (host/base/dist_mpi.c) under a real `mpirun` on the CPU backend, on a
// small synthetic world (configs/demo-sprec.ini, fewer users, steps of 6
// micro-batches so that 2 and 3 ranks each get a share):
//  - SFT, DPO and a one-iteration SPRec run at -np 1, 2, 3 against the plain run
//    (no launcher): -np 1 is bit-identical (logs, metrics, checkpoint); -np 2 and
//    3 sum the gradients in another order, so their losses agree within
//    LOSS_TOL (the largest differences are printed) and the SPRec metrics within
//    METRIC_TOL (one row's top-K changing); rank 0 alone prints and writes: the
//    run folder holds exactly the files of a plain run, the log its lines, and
//    the output one final line;
//  - SFT stopped on 2 ranks and resumed on 3, DPO stopped on 3 and resumed alone: the plain run's losses;
//  - SFT at -np 3 with the gradient sum in ~100 buckets: bit-identical to one bucket;
//  - ZeRO-1 ([train] zero = 1) at -np 1, 2, 3 against plain data parallel at the
//    same -np: losses, weights and moments bit for bit; stopped with zero = 1 and
//    resumed with zero = 0 at another -np, and the other way round;
//  - sprec eval split over 2 ranks gives the plain run's lists;
//  - every rank must run rank 0's config and binary: another override or another
//    binary on one rank ends the job with one line naming the rank; a rank that
//    fails alone (a bad SPREC_FAULT) ends the whole job instead of leaving the
//    others waiting.
// Skipped (with a message) when build/sprec was built without MPI.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "tests.h"

#define TMP "build/test-tmp/mpi"
#define PLAIN "OMP_NUM_THREADS=1 build/sprec "
#define COMMON "configs/demo-sprec.ini --data.dataset=" TMP "/syn.h5 --train.batch_size=4 --train.grad_accum=6 "
#define SFT COMMON "--train.max_steps=4 --train.warmup_steps=1 --train.log_every=1"
#define DPO COMMON "--train.method=dpo --train.init=" TMP "/plain-sft/checkpoint.h5 --train.max_steps=3 " \
            "--train.warmup_steps=0 --train.lr=1e-3 --train.log_every=1"
#define SPREC COMMON "--train.method=sprec --train.init=" TMP "/plain-sft/checkpoint.h5 --sprec.iterations=1 " \
              "--sprec.n=48 --sprec.eval_rows=30"
#define LOSS_TOL 1e-6
#define METRIC_TOL 0.05



// the dataset and the plain (no launcher) SFT run the others start from, once
static void fixture(void) {
    static int done;
    if (done) return;
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > " TMP "/tok.json");
    run_ok(PLAIN "prepare configs/demo-sprec.ini --data.tokenizer=" TMP "/tok.json --data.dataset=" TMP "/syn.h5 "
           "--data.synth_users=400 --data.valid_rows=20 --data.test_rows=60");
    run_ok(PLAIN "train " SFT " --run.out_dir=" TMP "/plain-sft");
    done = 1;
}


// the largest |a - b| of key over the lines of two JSONL files (same line count)
static double max_diff(const char *file_a, const char *file_b, const char *key) {
    static double a[256], b[256];
    const int na = read_jsonl_values(file_a, key, a, 256), nb = read_jsonl_values(file_b, key, b, 256);
    assert_int_equal(na, nb);
    assert_true(na > 0);
    double m = 0;
    for (int i = 0; i < na; i++) if (fabs(a[i] - b[i]) > m) m = fabs(a[i] - b[i]);
    return m;
}

// `sprec train ARGS` at -np 1, 2, 3 against the plain run: files, output, logs (and metrics)
static void ranks_vs_plain(const char *name, const char *args, const char *files, const char *done_line,
                           const char *const *metric_files) {
    char cmd[4096], out[65536], plain[256], dir[256], a[320], b[320];
    snprintf(plain, sizeof plain, TMP "/plain-%s", name);
    if (strcmp(name, "sft") != 0) {   // (the SFT fixture is the plain SFT run)
        snprintf(cmd, sizeof cmd, PLAIN "train %s --run.out_dir=%s", args, plain);
        run_ok(cmd);
    }
    for (int np = 1; np <= 3; np++) {
        snprintf(dir, sizeof dir, TMP "/%s-np%d", name, np);
        snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np %d build/sprec train %s --run.out_dir=%s", dir, np, args, dir);
        const int rc = run_capture(cmd, out, sizeof out);
        if (rc != 0) print_message("%s\nexit %d:\n%s\n", cmd, rc, out);
        assert_int_equal(rc, 0);
        assert_int_equal(count_of(out, done_line), 1);   // rank 0 alone prints
        snprintf(cmd, sizeof cmd, "test \"$(ls %s | tr '\\n' ' ')\" = '%s'", dir, files);
        run_ok(cmd);                                  // rank 0's files, nothing else
        snprintf(a, sizeof a, "%s/train_log.jsonl", plain);
        snprintf(b, sizeof b, "%s/train_log.jsonl", dir);
        if (np == 1) {                                // the same summation order: bit-identical
            snprintf(cmd, sizeof cmd, "cmp %s/train_log.jsonl %s/train_log.jsonl && h5diff %s/checkpoint.h5 "
                     "%s/checkpoint.h5", plain, dir, plain, dir);
            run_ok(cmd);
            for (const char *const *m = metric_files; m && *m; m++) {
                snprintf(cmd, sizeof cmd, "cmp %s/%s %s/%s", plain, *m, dir, *m);
                run_ok(cmd);
            }
            continue;
        }
        const double dl = max_diff(a, b, "loss"), dg = max_diff(a, b, "grad_norm");
        double dm = 0;
        for (const char *const *m = metric_files; m && *m; m++) {
            snprintf(a, sizeof a, "%s/%s", plain, *m);
            snprintf(b, sizeof b, "%s/%s", dir, *m);
            const double d = fmax(max_diff(a, b, "NDCG@10"), max_diff(a, b, "HR@10"));
            if (d > dm) dm = d;
        }
        char metrics[64] = "";
        if (metric_files) snprintf(metrics, sizeof metrics, ", NDCG@10 / HR@10 %.3g", dm);
        print_message("test_mpi: %s -np %d vs one process: largest loss difference %.3g, grad norm %.3g%s\n", name,
                      np, dl, dg, metrics);
        assert_true(dl <= LOSS_TOL);
        assert_true(dm <= METRIC_TOL);
    }
}

// stopped at step `stop` on np_a ranks, resumed on np_b (0: no launcher): the plain run's losses (a checkpoint
// holds no per-rank state, so a run resumes at any rank count)
static void resume_across(const char *name, const char *args, int np_a, int stop, int np_b) {
    char cmd[4096], dir[256], a[320], b[320], launch_b[160] = PLAIN;
    snprintf(dir, sizeof dir, TMP "/%s-resume", name);
    if (np_b > 0) snprintf(launch_b, sizeof launch_b, MPIRUN "-np %d build/sprec ", np_b);
    snprintf(cmd, sizeof cmd, "(rm -rf %s && " MPIRUN "-np %d build/sprec train %s --run.out_dir=%s --stop-at %d && "
             "%strain %s --run.out_dir=%s --resume)", dir, np_a, args, dir, stop, launch_b, args, dir);
    run_ok(cmd);
    snprintf(a, sizeof a, TMP "/plain-%s/train_log.jsonl", name);
    snprintf(b, sizeof b, "%s/train_log.jsonl", dir);
    const double dl = max_diff(a, b, "loss");
    print_message("test_mpi: %s stopped at step %d on %d ranks, resumed on %d: largest loss difference %.3g\n", name,
                  stop, np_a, np_b ? np_b : 1, dl);
    assert_true(dl <= LOSS_TOL);
}

static void test_mpi_sft(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    ranks_vs_plain("sft", SFT, "checkpoint.h5 config.ini train_log.jsonl ", "sft: checkpoint", NULL);
    // the gradient sum in ~100 pipelined buckets of 10 KB: the same sums, so the -np 3 run bit for bit
    run_ok("rm -rf " TMP "/sft-buckets && " MPIRUN "-np 3 build/sprec train " SFT " --dist.bucket_mb=0.01 --run.out_dir="
           TMP "/sft-buckets > /dev/null && cmp " TMP "/sft-np3/train_log.jsonl " TMP "/sft-buckets/train_log.jsonl && "
           "h5diff " TMP "/sft-np3/checkpoint.h5 " TMP "/sft-buckets/checkpoint.h5");
    resume_across("sft", SFT, 2, 2, 3);
}

static void test_mpi_dpo(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    ranks_vs_plain("dpo", DPO, "checkpoint.h5 config.ini pairs.h5 train_log.jsonl ", "dpo: checkpoint", NULL);
    resume_across("dpo", DPO, 3, 1, 0);
}

static void test_mpi_sprec(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    static const char *const metrics[] = {"metrics.jsonl", "metrics-valid.jsonl", NULL};
    ranks_vs_plain("sprec", SPREC, "checkpoint.h5 config.ini metrics-valid.jsonl metrics.jsonl stage_times.jsonl "
                   "topk-test-iter1.jsonl topk-valid-iter1.jsonl train_log.jsonl ",
                   "sprec 1/1: done", metrics);
}

// ZeRO-1: the reduce-scatter sums every element in rank order as the plain all-reduce does, and AdamW is
// elementwise, so losses, final weights and moments (the checkpoint) equal plain data parallel at the same -np bit
// for bit; only the gradient norm (a sum of the shards' squared norms) is summed in another order (printed).
static void test_mpi_zero(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    char cmd[4096], out[65536], ref[256], dir[256], a[320], b[320], line[96];
    for (int np = 1; np <= 3; np++) {
        snprintf(ref, sizeof ref, np == 1 ? TMP "/plain-sft" : TMP "/zero-ref-np%d", np);   // (-np 1 = plain)
        snprintf(dir, sizeof dir, TMP "/zero-np%d", np);
        if (np > 1) {
            snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np %d build/sprec train " SFT " --run.out_dir=%s "
                     "> /dev/null", ref, np, ref);
            run_ok(cmd);
        }
        snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np %d build/sprec train " SFT " --train.zero=1 "
                 "--run.out_dir=%s", dir, np, dir);
        const int rc = run_capture(cmd, out, sizeof out);
        if (rc != 0) print_message("%s\nexit %d:\n%s\n", cmd, rc, out);
        assert_int_equal(rc, 0);
        snprintf(line, sizeof line, "zero: AdamW moments sharded over %d ranks", np);
        assert_int_equal(count_of(out, line), 1);
        // every tensor and the state; the recorded settings differ by train.zero itself
        snprintf(cmd, sizeof cmd, "h5diff --exclude-path /state/settings %s/checkpoint.h5 %s/checkpoint.h5", ref, dir);
        run_ok(cmd);
        snprintf(a, sizeof a, "%s/train_log.jsonl", ref);
        snprintf(b, sizeof b, "%s/train_log.jsonl", dir);
        const double dl = max_diff(a, b, "loss"), dg = max_diff(a, b, "grad_norm");
        print_message("test_mpi: zero = 1 vs 0 at -np %d: loss difference %.3g, weights and moments bit-identical, "
                      "grad norm difference %.3g\n", np, dl, dg);
        assert_true(dl == 0);
        assert_true(dg <= 1e-12);
    }
    // the checkpoint holds whole moments: zero = 1 on 2 ranks resumed with zero = 0 alone, zero = 0 on 2 resumed
    // with zero = 1 on 3 (--accept-changes: zero is a setting of the run)
    run_ok("rm -rf " TMP "/zero-resume && " MPIRUN "-np 2 build/sprec train " SFT " --train.zero=1 --run.out_dir="
           TMP "/zero-resume --stop-at 2 > /dev/null && " PLAIN "train " SFT " --run.out_dir=" TMP "/zero-resume "
           "--resume --accept-changes > /dev/null");
    run_ok("rm -rf " TMP "/zero-resume2 && " MPIRUN "-np 2 build/sprec train " SFT " --run.out_dir=" TMP
           "/zero-resume2 --stop-at 2 > /dev/null && " MPIRUN "-np 3 build/sprec train " SFT " --train.zero=1 "
           "--run.out_dir=" TMP "/zero-resume2 --resume --accept-changes > /dev/null");
    const double d1 = max_diff(TMP "/plain-sft/train_log.jsonl", TMP "/zero-resume/train_log.jsonl", "loss");
    const double d2 = max_diff(TMP "/plain-sft/train_log.jsonl", TMP "/zero-resume2/train_log.jsonl", "loss");
    print_message("test_mpi: zero = 1 on 2 ranks resumed with zero = 0 alone, and zero = 0 on 2 resumed with zero = 1 "
                  "on 3: largest loss differences %.3g, %.3g\n", d1, d2);
    assert_true(d1 <= LOSS_TOL && d2 <= LOSS_TOL);
}

static void test_mpi_eval(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    const char *eval = "eval " COMMON "--model " TMP "/plain-sft/checkpoint.h5 --eval.max_rows=30 ";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "(" PLAIN "%s -o " TMP "/eval-plain && " MPIRUN "-np 2 build/sprec %s -o " TMP "/eval-np2 && "
             "cmp " TMP "/eval-plain/topk-test.jsonl " TMP "/eval-np2/topk-test.jsonl && "
             "cmp " TMP "/eval-plain/metrics.jsonl " TMP "/eval-np2/metrics.jsonl)", eval, eval);
    run_ok(cmd);
}

// a job that must fail: non-zero exit, exactly one "sprec: error:" line holding the needles
static void expect_job_error(const char *cmd, const char *needle1, const char *needle2) {
    char out[16384];
    const int rc = run_capture(cmd, out, sizeof out);
    const char *err = strstr(out, "sprec: error: ");
    if (rc == 0 || rc == 124 || !err || count_of(out, "sprec: error: ") != 1 || !strstr(err, needle1) ||
        (needle2 && !strstr(err, needle2)))
        print_message("command: %s\nexit %d, output:\n%s\n(wanted one error line with '%s' and '%s')\n", cmd, rc, out,
                      needle1, needle2 ? needle2 : "");
    assert_true(rc != 0 && rc != 124);   // 124: timeout, a rank was left hanging
    assert_int_equal(count_of(out, "sprec: error: "), 1);
    assert_non_null(strstr(err, needle1));
    if (needle2) assert_non_null(strstr(err, needle2));
}

static void test_mpi_refuses(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    const char *run = "build/sprec train " SFT " --run.out_dir=" TMP "/refused";
    char cmd[4096];
    // another override on rank 1 (an mpirun app context: one rank per program line)
    snprintf(cmd, sizeof cmd, MPIRUN "-np 1 %s : -np 1 %s --train.lr=1e-3", run, run);
    expect_job_error(cmd, "rank 1 runs another config than rank 0", "[train] lr = 0.001");
    run_ok("test ! -e " TMP "/refused");
    // another binary on rank 2
    run_ok("cp build/sprec " TMP "/sprec-other && printf x >> " TMP "/sprec-other");
    snprintf(cmd, sizeof cmd, MPIRUN "-np 2 %s : -np 1 " TMP "/sprec-other %s", run, run + strlen("build/sprec "));
    expect_job_error(cmd, "rank 2 runs another sprec binary", NULL);
    // one rank fails alone: the whole job ends (rank 0 would otherwise wait for it in the first step)
    snprintf(cmd, sizeof cmd, MPIRUN "-np 1 %s : -np 1 env SPREC_FAULT=bogus %s", run, run);
    expect_job_error(cmd, "SPREC_FAULT", NULL);
}

// A rank that hangs (SIGSTOP at the end of SFT step 2, SPREC_FAULT=hang@sft:2) or dies (SIGKILL there): the job
// ends within FAULT_BOUND_S with a non-zero exit (the hang: the watchdog's one line naming rank 1 and the
// collective, after [dist] timeout_s = 2 s), and the checkpoint of step 2 resumes to the plain run's losses.
#define FAULT_BOUND_S 30.0
static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fault_job(const char *fault, const char *needle1, const char *needle2) {
    char cmd[4096], dir[256], a[320], b[320];
    snprintf(dir, sizeof dir, TMP "/fault-%.4s", fault);
    const char *args = SFT " --train.ckpt_every=1 --dist.timeout_s=2";
    snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np 1 build/sprec train %s --run.out_dir=%s : -np 1 env "
             "SPREC_FAULT=%s build/sprec train %s --run.out_dir=%s", dir, args, dir, fault, args, dir);
    const double t0 = now_seconds();
    char out[16384];
    const int rc = run_capture(cmd, out, sizeof out);
    const double took = now_seconds() - t0;
    print_message("test_mpi: SPREC_FAULT=%s on rank 1 of 2: the job ended in %.1f s, exit %d\n", fault, took, rc);
    if (rc == 0 || rc == 124 || !strstr(out, needle1) || (needle2 && !strstr(out, needle2)))
        print_message("command: %s\noutput:\n%s\n(wanted '%s' and '%s')\n", cmd, out, needle1, needle2 ? needle2 : "");
    assert_true(rc != 0 && rc != 124);
    assert_true(took < FAULT_BOUND_S);
    assert_non_null(strstr(out, needle1));
    if (needle2) assert_non_null(strstr(out, needle2));
    snprintf(cmd, sizeof cmd, PLAIN "train %s --run.out_dir=%s --resume", args, dir);
    run_ok(cmd);
    snprintf(a, sizeof a, TMP "/plain-sft/train_log.jsonl");
    snprintf(b, sizeof b, "%s/train_log.jsonl", dir);
    const double dl = max_diff(a, b, "loss");
    print_message("test_mpi: resumed from the checkpoint of step 2 as one process: largest loss difference %.3g\n", dl);
    assert_true(dl <= LOSS_TOL);
}

static void test_mpi_faults(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi");
    fixture();
    fault_job("hang@sft:2", "sprec: error: rank 1 did not reach collective #", "within [dist] timeout_s = 2 s");
    fault_job("kill@sft:2", "exited on signal 9", NULL);
}

DEFINE_TEST_GROUP(test_mpi,
    cmocka_unit_test(test_mpi_sft),
    cmocka_unit_test(test_mpi_dpo),
    cmocka_unit_test(test_mpi_sprec),
    cmocka_unit_test(test_mpi_zero),
    cmocka_unit_test(test_mpi_eval),
    cmocka_unit_test(test_mpi_refuses),
    cmocka_unit_test(test_mpi_faults),
)
