// SFT on a prepared recommendation dataset (`sprec prepare`, synthetic world,
// GPT-2 tokenizer fixture) through the CLI: the loss decreases; loss_on = all
// scores every valid position after the first, completion only the completion;
// LoRA trains only the adapters (base bit-identical to the init), checkpoints
// them, and an interrupted + resumed LoRA run with dropout is bit-identical.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests.h"
#include "io/checkpoint.h"
#include "base/h5io.h"
#include "model/lora.h"

#define TMP "build/test-tmp"

// the model the GPT-2 tokenizer needs, as small as it gets
static const char *TINY =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 128\nseed = 7\n";

// 60 synthetic users, 3 titles of history: 40 train rows of about 110 tokens
static void prepare_fixture(void) {
    run_ok("mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/sftr-gpt2.json");
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/sftr.h5 --data.synth_users=60 "
           "--data.valid_rows=10 --data.test_rows=10 --data.history=3 --data.tokenizer=" TMP "/sftr-gpt2.json");
    char ini[1024];
    snprintf(ini, sizeof ini, "%s[data]\ndataset = " TMP "/sftr.h5\n", TINY);
    write_file(TMP "/sftr.ini", ini);
    run_ok("build/sprec init " TMP "/sftr.ini -o " TMP "/sftr-init.h5");
}

static void test_sft_recdata_loss_decreases(void **state) {
    (void)state;
    prepare_fixture();
    run_ok("rm -rf " TMP "/sftr-full && build/sprec train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-full "
           "--train.lr=1e-2 --train.max_steps=20 --train.batch_size=8 --train.log_every=10");
    double loss[32];
    int n = read_jsonl_values(TMP "/sftr-full/train_log.jsonl", "loss", loss, 32);
    assert_int_equal(n, 20);
    print_message("  SFT on the prepared train split: loss %.4f -> %.4f\n", loss[0], loss[n - 1]);
    assert_true(loss[0] > 10.0);             // about log(50257) at random init
    assert_true(loss[n - 1] < loss[0] - 1.0);
}

// One step over all 40 train rows: the scored-token count of the log is the
// mask sum: completion = sum(lengths - prompt_lengths), all = sum(lengths - 1).
static void test_sft_loss_on(void **state) {
    (void)state;
    prepare_fixture();
    hid_t f = h5_open_read(TMP "/sftr.h5");
    long ld[1] = {-1}, pd[1] = {-1};
    int *len = h5_read_i32(f, "sftr.h5", "train/lengths", 1, ld), *plen = h5_read_i32(f, "sftr.h5", "train/prompt_lengths", 1, pd);
    h5_close(f);
    assert_int_equal(ld[0], 40);
    double want_completion = 0, want_all = 0;
    for (long i = 0; i < ld[0]; i++) { want_completion += len[i] - plen[i]; want_all += len[i] - 1; }
    free(len); free(plen);
    const char *modes[] = {"completion", "all"};
    double scored[2], loss[2];
    for (int m = 0; m < 2; m++) {
        char cmd[512], log[256];
        snprintf(cmd, sizeof cmd, "rm -rf " TMP "/sftr-%s && build/sprec train " TMP "/sftr.ini --run.out_dir=" TMP
                 "/sftr-%s --train.max_steps=1 --train.batch_size=40 --sft.loss_on=%s", modes[m], modes[m], modes[m]);
        run_ok(cmd);
        snprintf(log, sizeof log, TMP "/sftr-%s/train_log.jsonl", modes[m]);
        assert_int_equal(read_jsonl_values(log, "scored", &scored[m], 1), 1);
        assert_int_equal(read_jsonl_values(log, "loss", &loss[m], 1), 1);
    }
    print_message("  one step on 40 rows: completion %.0f tokens, loss %.4f | all %.0f tokens, loss %.4f\n",
                  scored[0], loss[0], scored[1], loss[1]);
    assert_true(scored[0] == want_completion);
    assert_true(scored[1] == want_all);
    assert_true(want_all > 5 * want_completion);
    assert_true(loss[0] != loss[1]);
    // a dataset prepared without a tokenizer has no token ids to train on
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/sftr-text.h5 --data.synth_users=60 "
           "--data.valid_rows=10 --data.test_rows=10 --data.history=3");
    expect_error(SPREC_CHECKED " train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-x --data.dataset=" TMP "/sftr-text.h5",
                 "no token ids", "tokenizer");
}

// a Model with the test's LoRA config and an AdamW over the adapters, loaded from path
static void load_lora(const char *path, Model *m, AdamW *o) {
    ModelConfig mc;
    checkpoint_read_config(path, &mc);
    model_create(m, &mc, backend_cpu());
    LoraConfig lc = {.rank = 4, .alpha = 8, .dropout = 0.1f, .targets = LORA_TARGETS_ALL, .seed = 1234};
    model_enable_lora(m, &lc);
    adamw_create(o, m, 0.9f, 0.999f, 1e-8f, 0, 1, 0);
    assert_int_equal(checkpoint_load(path, m, o, NULL), 1);
}

static void test_sft_lora_resume(void **state) {
    (void)state;
    prepare_fixture();
    // 40 rows / (4 x 2) = 5 steps an epoch: the stop at step 7 falls mid-epoch
    const char *args = " --train.init=" TMP "/sftr-init.h5 --lora.enabled=true --lora.rank=4 --lora.alpha=8 "
                       "--lora.dropout=0.1 --train.lr=3e-2 --train.warmup_steps=2 --train.max_steps=12 "
                       "--train.batch_size=4 --train.grad_accum=2";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/sftr-la " TMP "/sftr-lb && build/sprec train " TMP "/sftr.ini "
             "--run.out_dir=" TMP "/sftr-la%s", args);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-lb --stop-at 7%s", args);
    run_ok(cmd);
    // resuming a LoRA run without LoRA is a clean error
    char bad[1024];
    snprintf(bad, sizeof bad, SPREC_CHECKED " train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-lb --resume%s "
             "--lora.enabled=false", args);
    expect_error(bad, "LoRA", "enabled = false");
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-lb --resume%s", args);
    run_ok(cmd);
    double a[16], b[16];
    int na = read_jsonl_values(TMP "/sftr-la/train_log.jsonl", "loss", a, 16), nb = read_jsonl_values(TMP "/sftr-lb/train_log.jsonl", "loss", b, 16);
    assert_int_equal(na, 12);
    assert_int_equal(nb, 12);
    for (int i = 0; i < 12; i++) assert_memory_equal(&a[i], &b[i], sizeof(double));
    print_message("  LoRA SFT: loss %.4f -> %.4f; 12 steps == 7 + resume + 5 bit for bit\n", a[0], a[11]);
    assert_true(a[11] < a[0] - 0.02);

    Model ma, mb, init;
    AdamW oa, ob;
    load_lora(TMP "/sftr-la/checkpoint.h5", &ma, &oa);
    load_lora(TMP "/sftr-lb/checkpoint.h5", &mb, &ob);
    assert_memory_equal(ma.lora->params, mb.lora->params, ma.lora->numel * sizeof(float));
    assert_memory_equal(oa.m, ob.m, oa.numel * sizeof(float));
    assert_memory_equal(oa.v, ob.v, oa.numel * sizeof(float));
    assert_int_equal(oa.step, 12);
    assert_int_equal(oa.numel, ma.lora->numel);   // moments for the adapters only
    // the base is the init, bit for bit; the adapters moved (B starts at 0)
    ModelConfig mc;
    checkpoint_read_config(TMP "/sftr-init.h5", &mc);
    model_create(&init, &mc, backend_cpu());
    checkpoint_load(TMP "/sftr-init.h5", &init, NULL, NULL);
    assert_int_equal(init.numel, ma.numel);
    assert_memory_equal(init.params, ma.params, init.numel * sizeof(float));
    int b_moved = 0;
    for (int i = 0; i < ma.lora->n_params; i++)
        if (strstr(ma.lora->table[i].name, "lora_B")) {
            const float *x = ma.lora->params + ma.lora->table[i].offset;
            for (size_t j = 0; j < ma.lora->table[i].numel; j++) b_moved |= x[j] != 0.0f;
        }
    assert_true(b_moved);
    adamw_free(&oa, &ma); adamw_free(&ob, &mb);
    model_free(&ma); model_free(&mb); model_free(&init);

    // train.init = a LoRA checkpoint: with LoRA on, its adapters are continued (the
    // first loss is the trained one, not the init's); with another adapter config
    // it is an error; with LoRA off it is merged and all weights are trained
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/sftr-lc && build/sprec train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-lc"
             "%s --train.init=" TMP "/sftr-la/checkpoint.h5 --train.max_steps=1 --train.warmup_steps=0", args);
    run_ok(cmd);
    double c[1];
    assert_int_equal(read_jsonl_values(TMP "/sftr-lc/train_log.jsonl", "loss", c, 1), 1);
    assert_true(c[0] < a[0] - 0.02);
    snprintf(bad, sizeof bad, SPREC_CHECKED " train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-ld%s --train.init=" TMP
             "/sftr-la/checkpoint.h5 --lora.rank=8", args);
    expect_error(bad, "LoRA config mismatch", NULL);
    char out[8192];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/sftr-le && build/sprec train " TMP "/sftr.ini --run.out_dir=" TMP "/sftr-le"
             " --train.init=" TMP "/sftr-la/checkpoint.h5 --train.max_steps=1");
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "merged into the base weights"));
}

DEFINE_TEST_GROUP(test_sft_recdata,
    cmocka_unit_test(test_sft_recdata_loss_decreases),
    cmocka_unit_test(test_sft_loss_on),
    cmocka_unit_test(test_sft_lora_resume))
