// The DPO trainer (`sprec train` with [train] method = dpo) on a prepared
// synthetic world (GPT-2 tokenizer fixture) and a tiny model: reference ==
// starting policy gives a first loss of exactly log 2; loss falls and the
// reward accuracy rises; random / popular / self negatives are catalogue items
// != the target (popular: only items with popularity > 0); an interrupted and
// resumed run (LoRA with dropout, self negatives) is bit-identical; the SPRec
// loop runs 2 iterations (2 metrics lines) and resumes exactly after --stop-at 1
// and after being killed (SIGKILL, SPREC_FAULT) mid-DPO and mid-SFT.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"
#include "base/h5io.h"
#include "rec/recdata.h"

#define TMP "build/test-tmp"

static const char *TINY =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 128\nseed = 7\n";

// 60 synthetic users, 3 titles of history: 40 train rows
static void prepare_fixture(void) {
    run_ok("mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/dpot-gpt2.json");
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/dpot.h5 --data.synth_users=60 "
           "--data.valid_rows=10 --data.test_rows=10 --data.history=3 --data.tokenizer=" TMP "/dpot-gpt2.json");
    char ini[1024];
    snprintf(ini, sizeof ini, "%s[data]\ndataset = " TMP "/dpot.h5\n[train]\nmethod = dpo\ninit = " TMP "/dpot-init.h5\n", TINY);
    write_file(TMP "/dpot.ini", ini);
    run_ok("build/sprec init " TMP "/dpot.ini -o " TMP "/dpot-init.h5");
}

// checks the pairs of run_dir/pairs.h5: rows' targets are the chosen items,
// every rejected item is a catalogue item != chosen; returns the pair count
static int check_pairs(const char *run_dir, const RecData *d, int *rejected_out) {
    char path[256];
    snprintf(path, sizeof path, "%s/pairs.h5", run_dir);
    hid_t f = h5_open_read(path);
    long n[1] = {-1};
    int *row = h5_read_i32(f, path, "row", 1, n), *ch = h5_read_i32(f, path, "chosen", 1, n),
        *rej = h5_read_i32(f, path, "rejected", 1, n);
    h5_close(f);
    for (long i = 0; i < n[0]; i++) {
        assert_int_equal(ch[i], d->split[SPLIT_TRAIN].target[row[i]]);
        assert_true(rej[i] >= 0 && rej[i] < d->n_items);
        assert_int_not_equal(rej[i], ch[i]);
        if (rejected_out) rejected_out[i] = rej[i];
    }
    free(row); free(ch); free(rej);
    return (int)n[0];
}

static int count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += needle == NULL || strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void test_dpo_train_random(void **state) {
    (void)state;
    prepare_fixture();
    // 40 pairs / (4 x 2) = 5 steps an epoch, 5 epochs
    run_ok("rm -rf " TMP "/dpot-rn && build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-rn "
           "--train.lr=1e-2 --train.epochs=5 --train.batch_size=4 --train.grad_accum=2 --dpo.negatives=random");
    double loss[32], acc[32], margin[32];
    int n = read_jsonl_values(TMP "/dpot-rn/train_log.jsonl", "loss", loss, 32);
    assert_int_equal(n, 25);
    read_jsonl_values(TMP "/dpot-rn/train_log.jsonl", "rewards/accuracies", acc, 32);
    read_jsonl_values(TMP "/dpot-rn/train_log.jsonl", "rewards/margins", margin, 32);
    print_message("  DPO-RN: loss %.17g (log 2 = %.17g) -> %.4f, accuracy %.3f -> %.3f, margin %.4f -> %.4f\n",
                  loss[0], log(2.0), loss[n - 1], acc[0], acc[n - 1], margin[0], margin[n - 1]);
    assert_true(fabs(loss[0] - log(2.0)) < 1e-12);   // reference == starting policy
    assert_true(acc[0] == 0 && margin[0] == 0);
    double first = 0, last = 0, acc_last = 0;        // last epoch against the first
    for (int i = 0; i < 5; i++) { first += loss[i] / 5; last += loss[n - 5 + i] / 5; acc_last += acc[n - 5 + i] / 5; }
    assert_true(last < first - 0.1);
    assert_true(acc_last > 0.7);
    RecData d;
    recdata_load(&d, TMP "/dpot.h5");
    assert_int_equal(check_pairs(TMP "/dpot-rn", &d, NULL), 40);
    // n_pairs samples that many rows; popular negatives only draw items someone chose
    run_ok("rm -rf " TMP "/dpot-pop && build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-pop "
           "--train.max_steps=1 --dpo.negatives=popular --dpo.n_pairs=30");
    int rej[64];
    assert_int_equal(check_pairs(TMP "/dpot-pop", &d, rej), 30);
    for (int i = 0; i < 30; i++) assert_true(d.popularity[rej[i]] > 0);
    recdata_free(&d);
    // a token file cannot give DPO pairs
    expect_error(SPREC_CHECKED " train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-x --data.train=x.h5", "method = dpo", NULL);
}

// self negatives with LoRA (dropout 0.1): the starting model's own picks
// (next-best when equal to the target); 7 steps + resume == 12 steps bit for bit,
// and so is a run killed (SPREC_FAULT) right after its step-6 checkpoint + resume,
// or after step 7, which no checkpoint holds (its log line is dropped and redone)
static void test_dpo_train_self_resume(void **state) {
    (void)state;
    prepare_fixture();
    const char *args = " --dpo.negatives=self --lora.enabled=true --lora.rank=4 --lora.alpha=8 --lora.dropout=0.1 "
                       "--train.lr=3e-2 --train.warmup_steps=2 --train.max_steps=12 --train.batch_size=4 --train.grad_accum=2";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/dpot-sa " TMP "/dpot-sb " TMP "/dpot-sc && build/sprec train " TMP "/dpot.ini "
             "--run.out_dir=" TMP "/dpot-sa%s", args);
    run_ok(cmd);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sb --stop-at 7%s", args);
    run_ok(cmd);
    char bad[1024];
    snprintf(bad, sizeof bad, SPREC_CHECKED " train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sb --resume%s "
             "--dpo.negatives=random", args);
    expect_error(bad, "negatives", NULL);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sb --resume%s", args);
    run_ok(cmd);
    double a[16], b[16], ma[16], mb[16];
    int na = read_jsonl_values(TMP "/dpot-sa/train_log.jsonl", "loss", a, 16), nb = read_jsonl_values(TMP "/dpot-sb/train_log.jsonl", "loss", b, 16);
    assert_int_equal(na, 12);
    assert_int_equal(nb, 12);
    read_jsonl_values(TMP "/dpot-sa/train_log.jsonl", "rewards/margins", ma, 16);
    read_jsonl_values(TMP "/dpot-sb/train_log.jsonl", "rewards/margins", mb, 16);
    for (int i = 0; i < 12; i++) {
        assert_memory_equal(&a[i], &b[i], sizeof(double));
        assert_memory_equal(&ma[i], &mb[i], sizeof(double));
    }
    char out[8192];
    snprintf(cmd, sizeof cmd, "SPREC_FAULT=kill@dpo:6 build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sc "
             "--train.ckpt_every=3%s", args);
    assert_int_not_equal(run_capture(cmd, out, sizeof out), 0);
    assert_int_equal(count_lines(TMP "/dpot-sc/train_log.jsonl", NULL), 6);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sc --resume --train.ckpt_every=3%s", args);
    run_ok(cmd);
    char *la = read_text_file(TMP "/dpot-sa/train_log.jsonl", NULL), *lc = read_text_file(TMP "/dpot-sc/train_log.jsonl", NULL);
    assert_string_equal(la, lc);
    free(lc);
    // killed after step 7, which no checkpoint holds: the resume drops its line and redoes the step (issue 12)
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/dpot-sd && SPREC_FAULT=kill@dpo:7 build/sprec train " TMP "/dpot.ini "
             "--run.out_dir=" TMP "/dpot-sd --train.ckpt_every=3%s", args);
    assert_int_not_equal(run_capture(cmd, out, sizeof out), 0);
    assert_int_equal(count_lines(TMP "/dpot-sd/train_log.jsonl", NULL), 7);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sd --resume --train.ckpt_every=3%s", args);
    run_ok(cmd);
    char *ld = read_text_file(TMP "/dpot-sd/train_log.jsonl", NULL);
    assert_string_equal(la, ld);
    free(la); free(ld);
    print_message("  DPO self negatives, LoRA: loss %.6f -> %.4f; 12 steps == 7 + resume + 5 == killed at 6 + resume, bit for bit\n",
                  a[0], a[11]);
    assert_true(fabs(a[0] - log(2.0)) < 1e-12);   // fresh adapters (B = 0): dropout cannot move step 1
    assert_true(a[11] < a[0]);
    RecData d;
    recdata_load(&d, TMP "/dpot.h5");
    int ra[64], rb[64];
    assert_int_equal(check_pairs(TMP "/dpot-sa", &d, ra), 40);
    assert_int_equal(check_pairs(TMP "/dpot-sb", &d, rb), 40);
    assert_memory_equal(ra, rb, sizeof(int) * 40);
    recdata_free(&d);
}

// the SPRec loop (LoRA, dropout 0.1): 2 iterations write 2 "sprec" metrics lines
// (iterations 1 and 2) and an SFT and a DPO stage each; stopping after iteration 1
// and resuming gives the same train log and metrics byte for byte
static void test_sprec_loop_resume(void **state) {
    (void)state;
    prepare_fixture();
    const char *args = " --train.method=sprec --sprec.iterations=2 --sprec.n=16 --sprec.sft_lr=1e-2 --sprec.dpo_lr=1e-2 "
                       "--train.batch_size=4 --train.grad_accum=2 --eval.ks=1,5 --eval.beams=5 --sprec.eval_rows=10 "
                       "--lora.enabled=true --lora.rank=4 --lora.alpha=8 --lora.dropout=0.1";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/dpot-pa " TMP "/dpot-pb && build/sprec train " TMP "/dpot.ini "
             "--run.out_dir=" TMP "/dpot-pa%s", args);
    run_ok(cmd);
    assert_int_equal(count_lines(TMP "/dpot-pa/metrics.jsonl", NULL), 2);
    assert_int_equal(count_lines(TMP "/dpot-pa/metrics.jsonl", "\"label\": \"sprec\", \"iteration\": 1,"), 1);
    assert_int_equal(count_lines(TMP "/dpot-pa/metrics.jsonl", "\"label\": \"sprec\", \"iteration\": 2,"), 1);
    assert_int_equal(count_lines(TMP "/dpot-pa/train_log.jsonl", "\"stage\": \"sft\""), 4);   // 16 rows / 8 = 2 steps
    assert_int_equal(count_lines(TMP "/dpot-pa/train_log.jsonl", "\"stage\": \"dpo\""), 4);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-pb --stop-at 1%s", args);
    run_ok(cmd);
    assert_int_equal(count_lines(TMP "/dpot-pb/metrics.jsonl", NULL), 1);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-pb --resume%s", args);
    run_ok(cmd);
    char *ma = read_text_file(TMP "/dpot-pa/metrics.jsonl", NULL), *mb = read_text_file(TMP "/dpot-pb/metrics.jsonl", NULL);
    char *la = read_text_file(TMP "/dpot-pa/train_log.jsonl", NULL), *lb = read_text_file(TMP "/dpot-pb/train_log.jsonl", NULL);
    assert_string_equal(ma, mb);
    assert_string_equal(la, lb);
    // killed (SIGKILL) after the first DPO step of iteration 2 (global step 7 of 8), then resumed
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/dpot-pc && SPREC_FAULT=kill@sprec.dpo:7 build/sprec train " TMP "/dpot.ini "
             "--run.out_dir=" TMP "/dpot-pc%s", args);
    char outbuf[8192];
    const int rc = run_capture(cmd, outbuf, sizeof outbuf);
    assert_int_not_equal(rc, 0);
    assert_int_equal(count_lines(TMP "/dpot-pc/metrics.jsonl", NULL), 1);
    assert_int_equal(count_lines(TMP "/dpot-pc/train_log.jsonl", "\"iteration\": 2,"), 3);   // 2 SFT + 1 DPO step
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-pc --resume%s", args);
    run_ok(cmd);
    char *mc = read_text_file(TMP "/dpot-pc/metrics.jsonl", NULL), *lc = read_text_file(TMP "/dpot-pc/train_log.jsonl", NULL);
    assert_string_equal(ma, mc);
    assert_string_equal(la, lc);
    // killed in iteration 2's SFT stage (after global step 5), then resumed from iteration 1's checkpoint (its
    // partial SFT lines dropped)
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/dpot-pd && SPREC_FAULT=kill@sprec.sft:5 build/sprec train " TMP "/dpot.ini "
             "--run.out_dir=" TMP "/dpot-pd%s", args);
    assert_int_not_equal(run_capture(cmd, outbuf, sizeof outbuf), 0);
    assert_int_equal(count_lines(TMP "/dpot-pd/train_log.jsonl", "\"iteration\": 2,"), 1);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-pd --resume%s", args);
    run_ok(cmd);
    char *md = read_text_file(TMP "/dpot-pd/metrics.jsonl", NULL), *ld = read_text_file(TMP "/dpot-pd/train_log.jsonl", NULL);
    assert_string_equal(ma, md);
    assert_string_equal(la, ld);
    free(md); free(ld);
    // the valid split is evaluated too (sprec.eval_valid, default true), and resumes identically
    char *va = read_text_file(TMP "/dpot-pa/metrics-valid.jsonl", NULL), *vc = read_text_file(TMP "/dpot-pc/metrics-valid.jsonl", NULL);
    assert_int_equal(count_lines(TMP "/dpot-pa/metrics-valid.jsonl", "\"label\": \"sprec\""), 2);
    assert_string_equal(va, vc);
    // every iteration's ranked lists, test and valid (issue 13): iteration 2's test lists are sprec eval's on the
    // final checkpoint, and the resumed runs wrote the same files
    static const char *topk[] = {"topk-test-iter1.jsonl", "topk-test-iter2.jsonl", "topk-valid-iter1.jsonl", "topk-valid-iter2.jsonl"};
    for (int i = 0; i < 4; i++) {
        char pa[256], pr[256];
        snprintf(pa, sizeof pa, TMP "/dpot-pa/%s", topk[i]);
        assert_int_equal(count_lines(pa, "\"ranked\": ["), 10);
        char *a = read_text_file(pa, NULL);
        for (const char *r = "bcd"; *r; r++) {
            snprintf(pr, sizeof pr, TMP "/dpot-p%c/%s", *r, topk[i]);
            char *b = read_text_file(pr, NULL);
            assert_string_equal(a, b);
            free(b);
        }
        free(a);
    }
    run_ok("build/sprec eval " TMP "/dpot.ini --model " TMP "/dpot-pa/checkpoint.h5 -o " TMP "/dpot-pe --eval.ks=1,5 "
           "--eval.beams=5 --eval.max_rows=10 >/dev/null 2>&1");
    char *ea = read_text_file(TMP "/dpot-pa/topk-test-iter2.jsonl", NULL), *ee = read_text_file(TMP "/dpot-pe/topk-test.jsonl", NULL);
    assert_string_equal(ea, ee);
    free(ea); free(ee);
    print_message("  SPRec: 2 iterations, 2 test + 2 valid metrics lines and top-K files; 1 + resume + 1, killed mid-DPO + "
                  "resume and killed mid-SFT + resume: identical; the last top-K file equals sprec eval's\n");
    free(ma); free(mb); free(la); free(lb); free(mc); free(lc); free(va); free(vc);
}

// reads run_dir/pairs.h5's SPDPO groups: k consecutive pairs per prompt (same
// row and chosen item, k distinct rejected items != chosen), pair weights > 0
// summing to k in each group; returns the pair count
static int check_spdpo_pairs(const char *run_dir, const RecData *d, int k) {
    assert_true(check_pairs(run_dir, d, NULL) > 0);
    char path[256];
    snprintf(path, sizeof path, "%s/pairs.h5", run_dir);
    hid_t f = h5_open_read(path);
    long n[1] = {-1};
    int *row = h5_read_i32(f, path, "row", 1, n), *rej = h5_read_i32(f, path, "rejected", 1, n);
    double *w = malloc((size_t)n[0] * sizeof(double));
    hid_t ds = H5Dopen2(f, "pair_weight", H5P_DEFAULT);
    assert_true(ds >= 0);
    assert_true(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
    H5Dclose(ds);
    h5_close(f);
    assert_int_equal(n[0] % k, 0);
    for (long g = 0; g < n[0]; g += k) {
        double sum = 0;
        for (int j = 0; j < k; j++) {
            assert_int_equal(row[g + j], row[g]);
            assert_true(w[g + j] > 0);
            sum += w[g + j];
            for (int i = 0; i < j; i++) assert_int_not_equal(rej[g + i], rej[g + j]);
        }
        assert_true(fabs(sum - k) < 1e-12);
    }
    free(row); free(rej); free(w);
    return (int)n[0];
}

// dpo.weighting = spdpo: k self negatives per prompt with their normalised
// generation probabilities as pair weights, in the DPO trainer and in SPRec
// (killed mid-DPO and resumed from its SFT stage checkpoint: identical)
static void test_spdpo_weighting(void **state) {
    (void)state;
    prepare_fixture();
    RecData d;
    recdata_load(&d, TMP "/dpot.h5");
    run_ok("rm -rf " TMP "/dpot-sw && build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sw "
           "--train.max_steps=2 --dpo.negatives=self --dpo.weighting=spdpo --dpo.spdpo_k=3 --dpo.n_pairs=12");
    assert_int_equal(check_spdpo_pairs(TMP "/dpot-sw", &d, 3), 36);
    expect_error(SPREC_CHECKED " train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-sx --dpo.weighting=spdpo "
                 "--dpo.negatives=random", "negatives = self", NULL);

    const char *args = " --train.method=sprec --sprec.iterations=2 --sprec.n=8 --sprec.sft_lr=1e-2 --sprec.dpo_lr=1e-2 "
                       "--train.batch_size=4 --train.grad_accum=2 --eval.ks=1,5 --eval.beams=5 --sprec.eval_rows=10 "
                       "--dpo.weighting=spdpo --dpo.spdpo_k=2 --sprec.eval_valid=false";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/dpot-ka " TMP "/dpot-kb && build/sprec train " TMP "/dpot.ini "
             "--run.out_dir=" TMP "/dpot-ka%s", args);
    run_ok(cmd);
    // 8 prompts: 1 SFT step; 16 pairs: 2 DPO steps, per iteration
    assert_int_equal(count_lines(TMP "/dpot-ka/train_log.jsonl", "\"stage\": \"sft\""), 2);
    assert_int_equal(count_lines(TMP "/dpot-ka/train_log.jsonl", "\"stage\": \"dpo\""), 4);
    assert_int_equal(count_lines(TMP "/dpot-ka/metrics.jsonl", NULL), 2);
    assert_false(access(TMP "/dpot-ka/metrics-valid.jsonl", F_OK) == 0);
    // killed at global step 2 = the first DPO step of iteration 1 (steps: 1 sft, 2-3 dpo, 4 sft, 5-6 dpo): the
    // resumed run finishes iteration 1 from its SFT stage checkpoint, then runs iteration 2 in full
    snprintf(cmd, sizeof cmd, "SPREC_FAULT=kill@sprec.dpo:2 build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-kb%s", args);
    char outbuf[8192];
    assert_int_not_equal(run_capture(cmd, outbuf, sizeof outbuf), 0);
    assert_int_equal(check_spdpo_pairs(TMP "/dpot-kb", &d, 2), 16);   // the interrupted iteration's pairs
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/dpot.ini --run.out_dir=" TMP "/dpot-kb --resume%s", args);
    assert_int_equal(run_capture(cmd, outbuf, sizeof outbuf), 0);
    assert_non_null(strstr(outbuf, "after iteration 0 + its SFT stage"));
    char *ma = read_text_file(TMP "/dpot-ka/metrics.jsonl", NULL), *mb = read_text_file(TMP "/dpot-kb/metrics.jsonl", NULL);
    char *la = read_text_file(TMP "/dpot-ka/train_log.jsonl", NULL), *lb = read_text_file(TMP "/dpot-kb/train_log.jsonl", NULL);
    assert_string_equal(ma, mb);
    assert_string_equal(la, lb);
    print_message("  SPDPO: groups of k pairs, weights sum to k; SPRec killed mid-DPO, resumed from its SFT stage: identical\n");
    free(ma); free(mb); free(la); free(lb);
    recdata_free(&d);
}

DEFINE_TEST_GROUP(test_dpo_train,
    cmocka_unit_test(test_dpo_train_random),
    cmocka_unit_test(test_dpo_train_self_resume),
    cmocka_unit_test(test_sprec_loop_resume),
    cmocka_unit_test(test_spdpo_weighting),
)
