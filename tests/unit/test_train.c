// End-to-end training through the CLI: SFT drives the loss down on a
// memorisable dataset; an interrupted-and-resumed run (--stop-at, or killed by
// SPREC_FAULT) is bit-identical to an uninterrupted one; checkpoints round-trip bit-exactly.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests.h"
#include "io/checkpoint.h"
#include "base/h5io.h"

#define TMP "build/test-tmp"

static const char *TINY_MODEL =
    "[model]\nvocab_size = 16\ndim = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nffn_dim = 60\n"
    "max_seq_len = 16\nseed = 7\n";

static void test_sft_memorises(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/mem && build/sprec toydata -o " TMP "/mem.h5 --rows 16 --seq 16 --vocab 16 --seed 3");
    char ini[2048];
    snprintf(ini, sizeof ini, "%s[train]\nlr = 1e-2\nwarmup_steps = 10\nschedule = cosine\nmax_steps = 150\n"
             "batch_size = 16\nlog_every = 50\n[data]\ntrain = " TMP "/mem.h5\n[run]\nout_dir = " TMP "/mem\n", TINY_MODEL);
    write_file(TMP "/mem.ini", ini);
    run_ok("build/sprec train " TMP "/mem.ini");
    double loss[200];
    int n = read_jsonl_values(TMP "/mem/train_log.jsonl", "loss", loss, 200);
    assert_int_equal(n, 150);
    print_message("  SFT on 16 rows: loss %.4f -> %.4f\n", loss[0], loss[n - 1]);
    assert_true(loss[0] > 2.0);          // about log(16) at random init
    assert_true(loss[n - 1] < 0.05);     // memorised
}

// the parameters and both AdamW moments of two checkpoints are bit-identical
static void assert_same_checkpoint(const char *a, const char *b) {
    ModelConfig mc;
    checkpoint_read_config(a, &mc);
    int count; size_t total;
    ParamInfo *table = model_param_table(&mc, &count, &total);
    hid_t fa = h5_open_read(a), fb = h5_open_read(b);
    const char *groups[] = {"params", "optim/m", "optim/v"};
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < count; i++) {
            char name[160];
            snprintf(name, sizeof name, "%s/%s", groups[g], table[i].name);
            long da[2] = {-1, -1}, db[2] = {-1, -1};
            float *x = h5_read_f32(fa, "a", name, table[i].rank, da), *y = h5_read_f32(fb, "b", name, table[i].rank, db);
            assert_memory_equal(x, y, table[i].numel * sizeof(float));
            free(x); free(y);
        }
    h5_close(fa); h5_close(fb);
    free(table);
}

static void test_resume_is_bit_identical(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/res-a " TMP "/res-b " TMP "/res-c && build/sprec toydata -o " TMP "/res.h5 --rows 40 --seq 16 --vocab 16 --seed 4");
    char ini[2048];
    // 40 rows / (4 x 2) = 5 steps an epoch: the split at step 7 falls mid-epoch
    snprintf(ini, sizeof ini, "%s[train]\nlr = 3e-3\nwarmup_steps = 3\nmax_steps = 14\nbatch_size = 4\ngrad_accum = 2\n"
             "weight_decay = 0.1\n[data]\ntrain = " TMP "/res.h5\n", TINY_MODEL);
    write_file(TMP "/res.ini", ini);
    run_ok("build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-a");
    run_ok("build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-b --stop-at 7");
    char out[4096];
    assert_int_equal(run_capture("build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-b --resume --train.seed=99",
                                 out, sizeof out), 1);
    assert_non_null(strstr(out, "train.seed"));
    run_ok("build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-b --resume");
    double a[32], b[32];
    int na = read_jsonl_values(TMP "/res-a/train_log.jsonl", "loss", a, 32), nb = read_jsonl_values(TMP "/res-b/train_log.jsonl", "loss", b, 32);
    assert_int_equal(na, 14);
    assert_int_equal(nb, 14);
    for (int i = 0; i < 14; i++) assert_memory_equal(&a[i], &b[i], sizeof(double));
    // and the final weights and moments are bit-identical
    assert_same_checkpoint(TMP "/res-a/checkpoint.h5", TMP "/res-b/checkpoint.h5");
    // killed (SIGKILL, SPREC_FAULT) right after the checkpoint of step 6, then resumed: the same log and weights
    assert_int_not_equal(run_capture("SPREC_FAULT=kill@sft:6 build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-c "
                                     "--train.ckpt_every=3", out, sizeof out), 0);
    assert_int_equal(read_jsonl_values(TMP "/res-c/train_log.jsonl", "loss", b, 32), 6);
    run_ok("build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-c --resume --train.ckpt_every=3");
    char *la = read_text_file(TMP "/res-a/train_log.jsonl", NULL), *lc = read_text_file(TMP "/res-c/train_log.jsonl", NULL);
    assert_string_equal(la, lc);
    free(lc);
    assert_same_checkpoint(TMP "/res-a/checkpoint.h5", TMP "/res-c/checkpoint.h5");
    // killed after step 7, which no checkpoint holds: the resume drops its log line and redoes it, so the log
    // is byte-identical, with no step twice (issue 12)
    assert_int_not_equal(run_capture("rm -rf " TMP "/res-d && SPREC_FAULT=kill@sft:7 build/sprec train " TMP "/res.ini "
                                     "--run.out_dir=" TMP "/res-d --train.ckpt_every=3", out, sizeof out), 0);
    assert_int_equal(read_jsonl_values(TMP "/res-d/train_log.jsonl", "loss", b, 32), 7);
    run_ok("build/sprec train " TMP "/res.ini --run.out_dir=" TMP "/res-d --resume --train.ckpt_every=3");
    char *ld = read_text_file(TMP "/res-d/train_log.jsonl", NULL);
    assert_string_equal(la, ld);
    free(la); free(ld);
    assert_same_checkpoint(TMP "/res-a/checkpoint.h5", TMP "/res-d/checkpoint.h5");
}

static void test_checkpoint_round_trip(void **state) {
    (void)state;
    ModelConfig mc = {.vocab_size = 50, .dim = 24, .n_layers = 2, .n_heads = 6, .n_kv_heads = 3, .head_dim = 4,
                      .ffn_dim = 40, .max_seq_len = 16, .rope_theta = 1e4f, .rms_eps = 1e-6f, .tie_embeddings = 0,
                      .qkv_bias = 1, .rope_scaling = 1, .rope_factor = 8, .rope_low_freq_factor = 1,
                      .rope_high_freq_factor = 4, .rope_original_max_pos = 64};
    const Backend *be = backend_cpu();
    Model a, b;
    model_create(&a, &mc, be);
    model_init_random(&a, 11, 0.3f);
    AdamW oa, ob;
    adamw_create(&oa, &a, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0);
    for (size_t i = 0; i < a.numel; i++) { a.grads[i] = a.params[i] * 0.5f + 0.01f; }
    adamw_step(&oa, &a, 1e-3f);
    TrainState sa = {.step = 1, .rng = {1, 2, 3, UINT64_MAX}, .epoch = 2, .epoch_pos = 5, .last_loss = 1.25};
    snprintf(sa.stage, sizeof sa.stage, "sft");
    run_ok("mkdir -p " TMP);
    checkpoint_save(TMP "/rt.h5", &a, &oa, &sa);
    ModelConfig mc2;
    checkpoint_read_config(TMP "/rt.h5", &mc2);
    assert_memory_equal(&mc, &mc2, sizeof mc);
    model_create(&b, &mc2, be);
    adamw_create(&ob, &b, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0);
    TrainState sb;
    assert_int_equal(checkpoint_load(TMP "/rt.h5", &b, &ob, &sb), 1);
    assert_memory_equal(a.params, b.params, a.numel * sizeof(float));
    assert_memory_equal(oa.m, ob.m, a.numel * sizeof(float));
    assert_memory_equal(oa.v, ob.v, a.numel * sizeof(float));
    assert_int_equal(ob.step, 1);
    assert_int_equal(sb.step, 1);
    assert_int_equal(sb.epoch, 2);
    assert_int_equal(sb.epoch_pos, 5);
    assert_memory_equal(sa.rng, sb.rng, sizeof sa.rng);
    assert_true(sb.last_loss == 1.25);
    assert_string_equal(sb.stage, "sft");
    adamw_free(&oa, &a); adamw_free(&ob, &b);
    model_free(&a); model_free(&b);
}

// A run folder another process has locked (OUT/.lock, flock, as a running
// `sprec train` holds it) is refused at once, naming the folder and the
// holder's pid, and its files stay as they were; once the holder is gone, the
// stale lock file (a dead pid) stops nothing (issue 12)
static void test_run_dir_lock(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/lock && build/sprec toydata -o " TMP "/lock.h5 --rows 16 --seq 16 --vocab 16 --seed 3");
    char ini[1024];
    snprintf(ini, sizeof ini, "%s[train]\nmax_steps = 6\nbatch_size = 4\n[data]\ntrain = " TMP "/lock.h5\n[run]\nout_dir = "
             TMP "/lock\n", TINY_MODEL);
    write_file(TMP "/lock.ini", ini);
    run_ok("build/sprec train " TMP "/lock.ini --stop-at 3");
    const char *names[] = {"checkpoint.h5", "train_log.jsonl", "config.ini"};
    char *before[3];
    size_t len[3];
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, TMP "/lock/%s", names[i]);
        before[i] = read_text_file(path, &len[i]);
    }
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    fflush(stdout);
    fflush(stderr);
    const pid_t holder = fork();
    assert_true(holder >= 0);
    if (holder == 0) {   // holds the lock as a run would, until killed (or 60 s, should the test fail first)
        close(ready[0]);
        alarm(60);
        const int fd = open(TMP "/lock/.lock", O_RDWR | O_CREAT, 0644);
        char pid[32];
        const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n) _exit(1);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        for (;;) pause();
    }
    close(ready[1]);
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);
    close(ready[0]);
    char pid[32], out[2][4096];
    snprintf(pid, sizeof pid, "pid %ld", (long)holder);
    const int rc0 = run_capture("build/sprec train " TMP "/lock.ini --resume", out[0], sizeof out[0]);
    const int rc1 = run_capture("build/sprec train " TMP "/lock.ini", out[1], sizeof out[1]);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    for (int i = 0; i < 2; i++) {   // one line
        if (!strstr(out[i], "is in use")) print_message("%s\n", out[i]);
        assert_int_equal(i ? rc1 : rc0, 1);
        const char *err = strstr(out[i], "sprec: error: " TMP "/lock is in use by another run (");
        assert_non_null(err);
        assert_non_null(strstr(err, pid));
        assert_true(strchr(err, '\n') == NULL || strchr(err, '\n')[1] == 0);
    }
    for (int i = 0; i < 3; i++) {   // untouched
        char path[256];
        snprintf(path, sizeof path, TMP "/lock/%s", names[i]);
        size_t n;
        char *after = read_text_file(path, &n);
        assert_int_equal(n, len[i]);
        assert_memory_equal(after, before[i], n);
        free(after);
        free(before[i]);
    }
    run_ok("build/sprec train " TMP "/lock.ini --resume");
    double loss[8];
    assert_int_equal(read_jsonl_values(TMP "/lock/train_log.jsonl", "loss", loss, 8), 6);
}

// [sft] and [lora] values are checked before anything runs
static void test_sft_lora_config_errors(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP " && build/sprec toydata -o " TMP "/cfgerr.h5 --rows 8 --seq 16 --vocab 16 --seed 3");
    char ini[1024];
    snprintf(ini, sizeof ini, "%s[data]\ntrain = " TMP "/cfgerr.h5\n[run]\nout_dir = " TMP "/cfgerr\n", TINY_MODEL);
    write_file(TMP "/cfgerr.ini", ini);
    expect_error(SPREC_CHECKED " train " TMP "/cfgerr.ini --lora.enabled=true --lora.targets=q,x", "[lora] targets", "x");
    expect_error(SPREC_CHECKED " train " TMP "/cfgerr.ini --lora.dropout=1", "[lora] dropout", "below 1");
    expect_error(SPREC_CHECKED " train " TMP "/cfgerr.ini --lora.rank=0", "lora.rank", NULL);
    expect_error(SPREC_CHECKED " train " TMP "/cfgerr.ini --sft.loss_on=prompt", "sft.loss_on", "completion|all");
    expect_error(SPREC_CHECKED " train " TMP "/cfgerr.ini --sft.split=dev", "sft.split", "train|valid|test");
    // a token file has no split groups: the data.dataset path reads one
    expect_error(SPREC_CHECKED " train " TMP "/cfgerr.ini --data.train= --data.dataset=" TMP "/cfgerr.h5", "no group 'train'",
                 NULL);
}

DEFINE_TEST_GROUP(test_train,
    cmocka_unit_test(test_checkpoint_round_trip),
    cmocka_unit_test(test_sft_memorises),
    cmocka_unit_test(test_resume_is_bit_identical),
    cmocka_unit_test(test_sft_lora_config_errors),
    cmocka_unit_test(test_run_dir_lock))
