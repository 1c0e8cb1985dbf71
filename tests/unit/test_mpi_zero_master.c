// ZeRO-1 with sharded fp32 master weights (host/model/optimizer.c) under a real
// `mpirun`, on the bf16-emulating CPU backend (--device cpu-bf16: act_bytes 2, so
// the master is separate from the compute copy and zero = 1 shards it), on the
// synthetic world of test_mpi.c:
//  - SFT with zero = 1 at -np 1, 2, 3 (and with LoRA at -np 3: the adapters'
//    master is sharded, the frozen base stays whole) against zero = 0 at the same
//    -np: losses bit for bit, grad norms within 1e-12 (the global norm is a sum of
//    the shards' squares), every tensor of the checkpoints (weights, adapters,
//    moments) bit for bit (h5diff);
//  - a one-iteration SPRec run at -np 2 (each stage's optimizer takes the master
//    and gives it back whole: negatives, reference pass and evaluation read it in
//    between): logs, metrics and checkpoint as with zero = 0;
//  - resume across world sizes and zero settings: stopped at step 2 with zero = 1 on
//    2 ranks and resumed with zero = 1 on 3 (the shards gathered on save, re-sharded
//    on load), and with LoRA stopped with zero = 1 on 3 and resumed with zero = 0
//    alone; each equals the same stop/resume with zero = 0 bit for bit (the step-2
//    checkpoints and the final ones).
// Skipped (with a message) when build/sprec was built without MPI.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"

#define TMP "build/test-tmp/mpi-zero"
#define COMMON "configs/demo-sprec.ini --data.dataset=" TMP "/syn.h5 --run.device=cpu-bf16 --train.batch_size=4 " \
               "--train.grad_accum=6 --train.max_steps=4 --train.warmup_steps=1 --train.log_every=1 "
#define LORA "--lora.enabled=true "
#define SHARDED "fp32 master weights too"


static void fixture(void) {
    static int done;
    if (done) return;
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > " TMP "/tok.json");
    run_ok("OMP_NUM_THREADS=1 build/sprec prepare configs/demo-sprec.ini --data.tokenizer=" TMP "/tok.json "
           "--data.dataset=" TMP "/syn.h5 --data.synth_users=400 --data.valid_rows=20 --data.test_rows=60 > /dev/null");
    done = 1;
}

#define START() do { (void)state; if (!have_mpi()) { print_message("test_mpi_zero_master: skipped: build/sprec was " \
    "built without MPI\n"); skip(); } fixture(); } while (0)

// `sprec train COMMON args` on np ranks into TMP/dir; returns how often the output says the master is sharded
static int train(int np, const char *dir, const char *args) {
    char cmd[4096], out[65536];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/%s && " MPIRUN "-np %d build/sprec train " COMMON "%s --run.out_dir=" TMP
             "/%s", dir, np, args, dir);
    const int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0) print_message("%s\nexit %d:\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
    int n = 0;
    for (const char *p = out; (p = strstr(p, SHARDED)); p++) n++;
    return n;
}

// runs a and b: the same losses, grad norms within 1e-12, the same tensors and state in checkpoint file ckpt
// (the recorded settings differ by train.zero itself)
static void same_run(const char *a, const char *b, const char *ckpt) {
    static double va[64], vb[64];
    char pa[256], pb[256], cmd[1024];
    snprintf(pa, sizeof pa, TMP "/%s/train_log.jsonl", a);
    snprintf(pb, sizeof pb, TMP "/%s/train_log.jsonl", b);
    const int n = read_jsonl_values(pa, "loss", va, 64);
    assert_true(n > 0);
    assert_int_equal(read_jsonl_values(pb, "loss", vb, 64), n);
    for (int i = 0; i < n; i++) assert_true(va[i] == vb[i]);
    assert_int_equal(read_jsonl_values(pa, "grad_norm", va, 64), n);
    assert_int_equal(read_jsonl_values(pb, "grad_norm", vb, 64), n);
    double dg = 0;
    for (int i = 0; i < n; i++) dg = fmax(dg, fabs(va[i] - vb[i]));
    assert_true(dg <= 1e-12);
    snprintf(cmd, sizeof cmd, "h5diff --exclude-path /state/settings " TMP "/%s/%s " TMP "/%s/%s", a, ckpt, b, ckpt);
    run_ok(cmd);
    print_message("test_mpi_zero_master: %s = %s: %d losses and %s bit for bit, grad norms within %.3g\n", b, a, n,
                  ckpt, dg);
}

static void test_zero_master_equals_plain(void **state) {
    START();
    char z0[32], z1[32], args[256];
    for (int lora = 0; lora <= 1; lora++)
        for (int np = lora ? 3 : 1; np <= 3; np++) {
            snprintf(z0, sizeof z0, "z0-np%d%s", np, lora ? "-lora" : "");
            snprintf(z1, sizeof z1, "z1-np%d%s", np, lora ? "-lora" : "");
            assert_int_equal(train(np, z0, lora ? LORA : ""), 0);
            snprintf(args, sizeof args, "%s--train.zero=1", lora ? LORA : "");
            assert_int_equal(train(np, z1, args), np > 1);   // one rank: the shard is everything, nothing to shard
            same_run(z0, z1, "checkpoint.h5");
        }
}

static void test_zero_master_sprec(void **state) {
    START();
    // from test_zero_master_equals_plain's one-rank SFT model
    if (access(TMP "/z0-np1/checkpoint.h5", F_OK) != 0) train(1, "z0-np1", "");
#define SPREC_ARGS "--train.method=sprec --train.init=" TMP "/z0-np1/checkpoint.h5 --sprec.iterations=1 --sprec.n=48 " \
                   "--sprec.eval_rows=30 "
    train(2, "sprec-z0", SPREC_ARGS);
    assert_true(train(2, "sprec-z1", SPREC_ARGS "--train.zero=1") >= 2);   // (a fresh optimizer per stage)
    same_run("sprec-z0", "sprec-z1", "checkpoint.h5");
    run_ok("cmp " TMP "/sprec-z0/metrics.jsonl " TMP "/sprec-z1/metrics.jsonl && cmp " TMP "/sprec-z0/topk-test-iter1.jsonl "
           TMP "/sprec-z1/topk-test-iter1.jsonl");
}

// stopped at step 2 on np_a ranks with zero_a, resumed on np_b with zero_b (--accept-changes: zero is a setting of
// the run), into TMP/dir; the step-2 checkpoint is kept as step2.h5
static void stop_resume(const char *dir, const char *args, int np_a, int zero_a, int np_b, int zero_b) {
    char a[512], b[512], cmd[256];
    snprintf(a, sizeof a, "%s--train.zero=%d --stop-at 2", args, zero_a);
    train(np_a, dir, a);
    snprintf(cmd, sizeof cmd, "cp " TMP "/%s/checkpoint.h5 " TMP "/%s/step2.h5", dir, dir);
    run_ok(cmd);
    char out[65536];
    snprintf(b, sizeof b, MPIRUN "-np %d build/sprec train " COMMON "%s--train.zero=%d --run.out_dir=" TMP "/%s --resume "
             "--accept-changes", np_b, args, zero_b, dir);
    const int rc = run_capture(b, out, sizeof out);
    if (rc != 0) print_message("%s\nexit %d:\n%s\n", b, rc, out);
    assert_int_equal(rc, 0);
}

static void test_zero_master_resume(void **state) {
    START();
    stop_resume("res-z0", "", 2, 0, 3, 0);
    stop_resume("res-z1", "", 2, 1, 3, 1);
    same_run("res-z0", "res-z1", "step2.h5");
    same_run("res-z0", "res-z1", "checkpoint.h5");
    stop_resume("res-lora-z0", LORA, 3, 0, 1, 0);
    stop_resume("res-lora-z1", LORA, 3, 1, 1, 0);
    same_run("res-lora-z0", "res-lora-z1", "step2.h5");
    same_run("res-lora-z0", "res-lora-z1", "checkpoint.h5");
}

DEFINE_TEST_GROUP(test_mpi_zero_master,
    cmocka_unit_test(test_zero_master_equals_plain),
    cmocka_unit_test(test_zero_master_sprec),
    cmocka_unit_test(test_zero_master_resume),
)
