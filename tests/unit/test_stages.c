// Per-stage training settings (issue 16, docs/training.md "Stages"): the paper
// configs' --dry-run against the numbers of ../shared/docs/SPREC.md; the DPO
// trainer's and SPRec's stage keys as the trainers run them (steps, the lr of
// every step against the schedule's formula, batch sizes); SPRec's SFT stage
// on sft.loss_on = all; sprec.eval_sft's lines (and their resume); width-1
// greedy negatives; SPDPO's per-prompt batches; data.completion_eos; the resume
// policy (issue 12: a changed setting refused, or accepted beside the kept
// config.ini; a DPO or SPRec resume of an SFT run named as such).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cJSON.h>
#include "tests.h"
#include "base/h5io.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "rec/recdata.h"
#include "rec/recommend.h"
#include "rec/trie.h"
#include "kernels/backend.h"

#define TMP "build/test-tmp"

// One JSON object per line of text (the dry run's output); returns the count.
static int parse_lines(char *text, cJSON **out, int cap) {
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        out[n] = cJSON_Parse(line);
        if (!out[n]) print_message("not JSON: %s\n", line);
        assert_non_null(out[n]);
        n++;
    }
    return n;
}

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(j, key);
    if (!cJSON_IsNumber(v)) print_message("no number '%s'\n", key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const char *str(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(j, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

// the stages `sprec train CONFIG --dry-run ARGS` prints
static int dry_run(const char *config, const char *args, cJSON **out, int cap) {
    char cmd[1024], text[8192];
    snprintf(cmd, sizeof cmd, "build/sprec train %s --dry-run %s", config, args);
    const int rc = run_capture(cmd, text, sizeof text);
    if (rc != 0) print_message("%s\n%s\n", cmd, text);
    assert_int_equal(rc, 0);
    return parse_lines(text, out, cap);
}

static void free_all(cJSON **j, int n) { for (int i = 0; i < n; i++) cJSON_Delete(j[i]); }

// The paper configs hold SPREC.md's numbers. Transcribed from SPREC.md section 2:
// initial SFT "4 epochs on 4096 samples, lr 3e-4, effective batch 16, 20 warm-up
// steps then linear decay"; SPRec "T = 5", "n = 2048", "SFT step ... (1 epoch,
// lr 2e-5)", "DPO step ... (1 epoch, lr 2e-5, beta 0.1, effective batch 8)",
// negatives "greedy, one output per prompt". DPO-RN: the reference's DPO
// settings (issue 16: lr 2e-5, effective batch 8, beta 0.1, 20 warm-up steps,
// linear decay), random negatives.
static void test_stage_dry_run_paper_configs(void **state) {
    (void)state;
    const char *configs[] = {"configs/goodreads-llama3.2-1b.ini", "configs/movielens-llama3.2-1b.ini"};
    for (int c = 0; c < 2; c++) {
        cJSON *j[4];
        char args[256];
        snprintf(args, sizeof args, "--train.method=sft --run.out_dir=" TMP "/stg-none");
        assert_int_equal(dry_run(configs[c], args, j, 4), 1);
        assert_string_equal(str(j[0], "stage"), "sft");
        assert_true(num(j[0], "lr") == 3e-4 && num(j[0], "min_lr") == 0 && num(j[0], "warmup_steps") == 20);
        assert_string_equal(str(j[0], "schedule"), "linear");
        assert_true(num(j[0], "effective_batch") == 16 && num(j[0], "epochs") == 4);
        if (c == 1) assert_true(num(j[0], "rows") == 4096 && num(j[0], "steps") == 4 * 4096 / 16);   // 1,024 steps
        free_all(j, 1);
        assert_int_equal(dry_run(configs[c], "--train.method=dpo --run.out_dir=" TMP "/stg-none", j, 4), 1);
        assert_string_equal(str(j[0], "stage"), "dpo");
        assert_true(num(j[0], "lr") == 2e-5 && num(j[0], "min_lr") == 0 && num(j[0], "warmup_steps") == 20);
        assert_string_equal(str(j[0], "schedule"), "linear");
        assert_true(num(j[0], "effective_batch") == 8 && num(j[0], "beta") == 0.1);
        assert_string_equal(str(j[0], "negatives"), "random");
        free_all(j, 1);
        assert_int_equal(dry_run(configs[c], "--train.method=sprec --run.out_dir=" TMP "/stg-none", j, 4), 2);
        assert_string_equal(str(j[0], "stage"), "sprec.sft");
        assert_string_equal(str(j[1], "stage"), "sprec.dpo");
        for (int s = 0; s < 2; s++) {
            assert_true(num(j[s], "iterations") == 5 && num(j[s], "rows") == 2048);
            assert_true(num(j[s], "lr") == 2e-5 && num(j[s], "epochs") == 1 && num(j[s], "warmup_steps") == 20);
            assert_string_equal(str(j[s], "schedule"), "linear");
        }
        assert_true(num(j[1], "effective_batch") == 8 && num(j[1], "steps") == 2048 / 8 && num(j[1], "beta") == 0.1);
        assert_true(num(j[1], "beams") == 1);
        assert_true(num(j[0], "effective_batch") == 16 && num(j[0], "steps") == 2048 / 16);
        free_all(j, 2);
        // an override of [train] reaches the SFT stage only
        assert_int_equal(dry_run(configs[c], "--train.method=dpo --train.lr=1e-3 --train.batch_size=16", j, 4), 1);
        assert_true(num(j[0], "lr") == 2e-5 && num(j[0], "batch") == 4);
        free_all(j, 1);
    }
    assert_false(access(TMP "/stg-none", F_OK) == 0);   // a dry run writes nothing
    // without [dpo] stage keys (the demo's config) the DPO trainer takes [train]'s values, as before
    cJSON *j[2];
    assert_int_equal(dry_run("configs/demo-sprec.ini", "--train.method=dpo --train.lr=1e-3 --train.schedule=constant", j, 2), 1);
    assert_true(num(j[0], "lr") == 1e-3 && num(j[0], "batch") == 32 && num(j[0], "epochs") == 20);
    assert_string_equal(str(j[0], "schedule"), "constant");
    free_all(j, 1);
    expect_error("build/sprec train configs/demo-sprec.ini --dry-run --dpo.batch_size=0", "[dpo] batch_size = 0", "-1");
    expect_error("build/sprec train configs/demo-sprec.ini --dry-run --dpo.lr=-0.5", "[dpo] lr = -0.5", "-1");
    expect_error("build/sprec train configs/demo-sprec.ini --dry-run --sprec.dpo_min_lr=1", "[sprec] dpo_min_lr = 1 is above", NULL);
}

// 60 synthetic users, 3 titles of history: 40 train rows (GPT-2 tokenizer fixture), a tiny random model
static void prepare_fixture(void) {
    run_ok("mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/stg-gpt2.json");
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/stg.h5 --data.synth_users=60 "
           "--data.valid_rows=10 --data.test_rows=10 --data.history=3 --data.tokenizer=" TMP "/stg-gpt2.json");
    write_file(TMP "/stg.ini", "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\n"
               "ffn_dim = 32\nmax_seq_len = 128\nseed = 7\n[data]\ndataset = " TMP "/stg.h5\n[train]\ninit = " TMP
               "/stg-init.h5\n");
    run_ok("build/sprec init " TMP "/stg.ini -o " TMP "/stg-init.h5");
}

// every train_log.jsonl line holding `needle`, parsed
static int log_lines(const char *path, const char *needle, cJSON **out, int cap) {
    char *text = read_text_file(path, NULL);
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n"))
        if (strstr(line, needle)) assert_non_null(out[n++] = cJSON_Parse(line));
    free(text);
    return n;
}

// lr_at's formula in double (warm-up from 0, then linear decay to 0)
static double linear_lr(int k, int total, int warmup, double peak) {
    return k < warmup ? peak * k / warmup : peak * (1.0 - (double)(k - warmup) / (total - warmup));
}

// SPRec's stage keys as the loop runs them: 40 prompts (every train row), SFT
// 2 epochs of 4 x 5 rows (4 steps, warm-up 1), DPO 5 x 2 pairs (4 steps,
// warm-up 2), both linear; the SFT stage on the whole text (sft.loss_on =
// all); SFT_t and DPO_t evaluated (sprec.eval_sft); killed in iteration 2's
// DPO stage and resumed: the same metrics and log
static void test_stage_sprec_settings(void **state) {
    (void)state;
    prepare_fixture();
    const char *args = " --train.method=sprec --sprec.iterations=2 --sprec.n=40 --sprec.sft_lr=1e-2 --sprec.dpo_lr=1e-2 "
                       "--sprec.sft_batch_size=4 --sprec.sft_grad_accum=5 --sprec.sft_epochs=2 --sprec.sft_schedule=linear "
                       "--sprec.sft_warmup_steps=1 --sprec.dpo_batch_size=5 --sprec.dpo_grad_accum=2 "
                       "--sprec.dpo_schedule=linear --sprec.dpo_warmup_steps=2 --train.batch_size=3 --train.grad_accum=7 "
                       "--sft.loss_on=all --sprec.eval_sft=true --sprec.eval_valid=false --eval.ks=1,5 --eval.beams=5 "
                       "--sprec.eval_rows=5";
    char cmd[2048];
    cJSON *j[64];
    snprintf(cmd, sizeof cmd, TMP "/stg.ini%s", args);
    assert_int_equal(dry_run(cmd, "", j, 4), 2);
    assert_true(num(j[0], "steps") == 4 && num(j[0], "rows") == 40 && num(j[0], "effective_batch") == 20);
    assert_true(num(j[1], "steps") == 4 && num(j[1], "pairs") == 40 && num(j[1], "effective_batch") == 10);
    free_all(j, 2);
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/stg-sa " TMP "/stg-sb && build/sprec train " TMP "/stg.ini --run.out_dir="
             TMP "/stg-sa%s", args);
    run_ok(cmd);
    RecData d;
    recdata_load(&d, TMP "/stg.h5");
    double whole = 0, completion = 0;   // the scored tokens of an epoch over the 40 rows
    for (int r = 0; r < d.split[SPLIT_TRAIN].n; r++) {
        assert_true(d.split[SPLIT_TRAIN].target[r] >= 0);   // every row is drawn
        whole += d.split[SPLIT_TRAIN].lengths[r] - 1;
        completion += d.split[SPLIT_TRAIN].lengths[r] - d.split[SPLIT_TRAIN].prompt_len[r];
    }
    recdata_free(&d);
    int n = log_lines(TMP "/stg-sa/train_log.jsonl", "\"stage\": \"sft\"", j, 64);
    assert_int_equal(n, 8);   // 4 a stage
    for (int i = 0; i < n; i++) {
        const int k = i % 4;
        assert_true(fabs(num(j[i], "lr") - linear_lr(k, 4, 1, 1e-2)) <= 1e-9);
        if (k % 2 == 1) assert_true(num(j[i - 1], "scored") + num(j[i], "scored") == whole);   // one epoch
    }
    assert_true(whole != completion);
    free_all(j, n);
    n = log_lines(TMP "/stg-sa/train_log.jsonl", "\"stage\": \"dpo\"", j, 64);
    assert_int_equal(n, 8);
    for (int i = 0; i < n; i++) {
        assert_true(fabs(num(j[i], "lr") - linear_lr(i % 4, 4, 2, 1e-2)) <= 1e-9);
        assert_true(num(j[i], "pairs") == 10);
    }
    free_all(j, n);
    // SFT_t then DPO_t, each iteration
    char *ma = read_text_file(TMP "/stg-sa/metrics.jsonl", NULL);
    const char *p1 = strstr(ma, "\"label\": \"sprec-sft\", \"iteration\": 1,"), *p2 = strstr(ma, "\"label\": \"sprec\", \"iteration\": 1,");
    const char *p3 = strstr(ma, "\"label\": \"sprec-sft\", \"iteration\": 2,"), *p4 = strstr(ma, "\"label\": \"sprec\", \"iteration\": 2,");
    assert_true(p1 && p2 && p3 && p4 && p1 < p2 && p2 < p3 && p3 < p4);
    // killed after the first DPO step of iteration 2 (steps 1-4 sft, 5-8 dpo, 9-12 sft, 13-16 dpo)
    snprintf(cmd, sizeof cmd, "SPREC_FAULT=kill@sprec.dpo:13 build/sprec train " TMP "/stg.ini --run.out_dir=" TMP "/stg-sb%s", args);
    char out[8192];
    assert_int_not_equal(run_capture(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "build/sprec train " TMP "/stg.ini --run.out_dir=" TMP "/stg-sb --resume%s", args);
    run_ok(cmd);
    char *mb = read_text_file(TMP "/stg-sb/metrics.jsonl", NULL);
    char *la = read_text_file(TMP "/stg-sa/train_log.jsonl", NULL), *lb = read_text_file(TMP "/stg-sb/train_log.jsonl", NULL);
    assert_string_equal(ma, mb);
    assert_string_equal(la, lb);
    free(ma); free(mb); free(la); free(lb);
    print_message("  SPRec stages: 4 + 4 steps an iteration at their own batch, lr = the linear schedule's (1e-9), "
                  "loss on the whole text (%.0f tokens an epoch, completion %.0f); sprec-sft + sprec lines, "
                  "kill + resume identical\n", whole, completion);
}

// reads pairs.h5's rejected items and reference log-probs
static int read_pairs(const char *run_dir, int **row, int **ch, int **rej, double **rc, double **rr) {
    char path[256];
    snprintf(path, sizeof path, "%s/pairs.h5", run_dir);
    hid_t f = h5_open_read(path);
    long n[1] = {-1};
    *row = h5_read_i32(f, path, "row", 1, n);
    *ch = h5_read_i32(f, path, "chosen", 1, n);
    *rej = h5_read_i32(f, path, "rejected", 1, n);
    if (rc) *rc = h5_read_f64(f, path, "ref_chosen", 1, n);
    if (rr) *rr = h5_read_f64(f, path, "ref_rejected", 1, n);
    h5_close(f);
    return (int)n[0];
}

// dpo.beams = 1: each negative is the constrained greedy item (recommend_topk
// with K = W = 1), or, where that is the chosen item, the other of a width-2
// beam's two best; SPDPO with spdpo_batch = prompts: steps of whole groups
static void test_stage_greedy_negatives(void **state) {
    (void)state;
    prepare_fixture();
    run_ok("rm -rf " TMP "/stg-g && build/sprec train " TMP "/stg.ini --run.out_dir=" TMP "/stg-g --train.method=dpo "
           "--dpo.negatives=self --dpo.beams=1 --train.max_steps=1");
    int *row, *ch, *rej;
    const int n = read_pairs(TMP "/stg-g", &row, &ch, &rej, NULL, NULL);
    assert_int_equal(n, 40);
    RecData d;
    recdata_load(&d, TMP "/stg.h5");
    Model m;
    ModelConfig mc;
    checkpoint_read_config(TMP "/stg-init.h5", &mc);
    model_create(&m, &mc, backend_cpu());
    checkpoint_load(TMP "/stg-init.h5", &m, NULL, NULL);
    const int V = d.n_items;
    const int **seqs = malloc((size_t)V * sizeof(int *));
    int *lens = malloc((size_t)V * sizeof(int));
    for (int i = 0; i < V; i++) {
        seqs[i] = d.item_tok + d.item_tok_offsets[i];
        lens[i] = d.item_tok_offsets[i + 1] - d.item_tok_offsets[i];
    }
    Trie trie;
    trie_build(&trie, seqs, lens, V, (const char *const *)d.titles);
    // the same oracle for every pair: greedy, or where greedy is the chosen item the other of the width-2 two best
    RecSplit *sp = &d.split[SPLIT_TRAIN];
    int hits = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const int *prompt = sp->tokens + (size_t)row[i] * sp->T, plen = sp->prompt_len[row[i]];
            int g, two[2];
            float s, s2[2];
            recommend_topk(&m, &trie, &prompt, &plen, 1, 1, 1, &g, &s);
            recommend_topk(&m, &trie, &prompt, &plen, 1, 2, 2, two, s2);
            if (pass == 1 && g == ch[i]) hits++;
            assert_int_not_equal(rej[i], ch[i]);
            assert_int_equal(rej[i], g != ch[i] ? g : two[0] == ch[i] ? two[1] : two[0]);
            if (pass == 0) sp->target[row[i]] = g;   // pass 2: every chosen item is the greedy one
        }
        if (pass == 1) break;
        free(row); free(ch); free(rej);
        recdata_save(&d, TMP "/stg-hit.h5");
        run_ok("rm -rf " TMP "/stg-g2 && build/sprec train " TMP "/stg.ini --run.out_dir=" TMP "/stg-g2 --train.method=dpo "
               "--dpo.negatives=self --dpo.beams=1 --train.max_steps=1 --data.dataset=" TMP "/stg-hit.h5");
        assert_int_equal(read_pairs(TMP "/stg-g2", &row, &ch, &rej, NULL, NULL), n);
    }
    assert_int_equal(hits, n);   // the second pass: all 40 through the width-2 fallback
    print_message("  greedy negatives: 40 of 40 match recommend_topk(K = W = 1); with every chosen item set to the greedy "
                  "one, 40 of 40 are the other of the width-2 beam's two best\n");
    free(row); free(ch); free(rej); free(seqs); free(lens);
    trie_free(&trie);
    model_free(&m);
    recdata_free(&d);
    // SPDPO, 12 prompts x 3 pairs, batches of 2 x 2 prompts: 3 steps of 12 pairs (spdpo_batch = pairs: 9 of 4)
    run_ok("rm -rf " TMP "/stg-k && build/sprec train " TMP "/stg.ini --run.out_dir=" TMP "/stg-k --train.method=dpo "
           "--dpo.negatives=self --dpo.weighting=spdpo --dpo.spdpo_k=3 --dpo.n_pairs=12 --dpo.spdpo_batch=prompts "
           "--dpo.batch_size=2 --dpo.grad_accum=2 --dpo.epochs=1");
    double pairs[16];
    assert_int_equal(read_jsonl_values(TMP "/stg-k/train_log.jsonl", "pairs", pairs, 16), 3);
    assert_true(pairs[0] == 12 && pairs[1] == 12 && pairs[2] == 12);
}

// data.completion_eos: both completions end with the model's EOS token (GPT-2's
// <|endoftext|>), so every reference log-prob drops by log p(EOS | completion) < 0;
// a model without a tokenizer is a one-line error
static void test_stage_completion_eos(void **state) {
    (void)state;
    prepare_fixture();
    Model m;
    ModelConfig mc;
    checkpoint_read_config(TMP "/stg-init.h5", &mc);
    model_create(&m, &mc, backend_cpu());
    checkpoint_load(TMP "/stg-init.h5", &m, NULL, NULL);
    m.tokenizer_json = read_text_file(TMP "/stg-gpt2.json", &m.tokenizer_json_len);
    TrainState st = {0};
    checkpoint_save(TMP "/stg-tok.h5", &m, NULL, &st);
    model_free(&m);
    const char *base = "build/sprec train " TMP "/stg.ini --train.method=dpo --train.init=" TMP "/stg-tok.h5 --dpo.n_pairs=8 "
                       "--train.max_steps=1";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/stg-e0 " TMP "/stg-e1 && %s --run.out_dir=" TMP "/stg-e0 && %s "
             "--run.out_dir=" TMP "/stg-e1 --data.completion_eos=true", base, base);
    run_ok(cmd);
    int *row0, *ch0, *rej0, *row1, *ch1, *rej1;
    double *rc0, *rr0, *rc1, *rr1;
    const int n = read_pairs(TMP "/stg-e0", &row0, &ch0, &rej0, &rc0, &rr0);
    assert_int_equal(read_pairs(TMP "/stg-e1", &row1, &ch1, &rej1, &rc1, &rr1), n);
    for (int i = 0; i < n; i++) {
        assert_true(row0[i] == row1[i] && rej0[i] == rej1[i]);
        assert_true(rc1[i] < rc0[i] && rr1[i] < rr0[i]);
    }
    double loss[2];
    assert_int_equal(read_jsonl_values(TMP "/stg-e1/train_log.jsonl", "loss", loss, 2), 1);
    assert_true(fabs(loss[0] - log(2.0)) < 1e-12);   // the reference pass saw the same EOS
    free(row0); free(ch0); free(rej0); free(rc0); free(rr0); free(row1); free(ch1); free(rej1); free(rc1); free(rr1);
    expect_error(SPREC_CHECKED " train " TMP "/stg.ini --train.method=dpo --run.out_dir=" TMP "/stg-e2 --dpo.n_pairs=8 "
                 "--train.max_steps=1 --data.completion_eos=true", "completion_eos", "tokenizer");
    // SPRec's DPO stage: its reference pass sees the EOS too (the first DPO step's loss is log 2 exactly)
    run_ok("rm -rf " TMP "/stg-e3 && build/sprec train " TMP "/stg.ini --train.method=sprec --train.init=" TMP "/stg-tok.h5 "
           "--run.out_dir=" TMP "/stg-e3 --data.completion_eos=true --sprec.iterations=1 --sprec.n=8 --sprec.sft_lr=1e-2 "
           "--train.batch_size=4 --eval.ks=1 --sprec.eval_rows=2 --sprec.eval_valid=false");
    cJSON *j[8];
    const int nd = log_lines(TMP "/stg-e3/train_log.jsonl", "\"stage\": \"dpo\"", j, 8);
    assert_int_equal(nd, 2);
    assert_true(fabs(num(j[0], "loss") - log(2.0)) < 1e-12);
    free_all(j, nd);
}

// --resume refuses changed settings with one line naming them (config.ini and the
// checkpoint untouched), also when config.ini was deleted or edited (the checkpoint
// records the settings), takes bookkeeping keys freely, and with --accept-changes
// continues, keeping config.ini and writing the new settings beside it; an SFT
// run resumed as DPO or SPRec is named as such
static void test_stage_resume_policy(void **state) {
    (void)state;
    prepare_fixture();
    const char *run = "build/sprec train " TMP "/stg.ini --run.out_dir=" TMP "/stg-r --train.method=sft --train.max_steps=4 "
                      "--train.batch_size=4 --train.lr=3e-3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf " TMP "/stg-r && %s --stop-at 2", run);
    run_ok(cmd);
    char *cfg0 = read_text_file(TMP "/stg-r/config.ini", NULL);
    size_t n0, n1;
    char *ck0 = read_text_file(TMP "/stg-r/checkpoint.h5", &n0);
    const char *changed = SPREC_CHECKED " train " TMP "/stg.ini --run.out_dir=" TMP "/stg-r --train.method=sft "
                          "--train.max_steps=4 --train.batch_size=4 --train.lr=1e-3 --sprec.n=7 --resume";
    expect_error(changed, "2 settings differ", "train.lr = 0.001 (the run: 0.003)");
    expect_error(changed, "sprec.n = 7 (the run: 2048)", "--accept-changes");
    snprintf(cmd, sizeof cmd, SPREC_CHECKED " train " TMP "/stg.ini --run.out_dir=" TMP "/stg-r --train.method=dpo --resume");
    expect_error(cmd, "holds a 'sft' run, not a 'dpo' one", NULL);
    snprintf(cmd, sizeof cmd, SPREC_CHECKED " train " TMP "/stg.ini --run.out_dir=" TMP "/stg-r --train.method=sprec --resume");
    expect_error(cmd, "is not a SPRec run", "'sft'");
    expect_error(SPREC_CHECKED " train " TMP "/stg.ini --accept-changes", "--accept-changes goes with --resume", NULL);
    // the checkpoint records the settings (/state/settings): config.ini deleted, or edited to the new values,
    // the resume is still refused, and a refused resume writes no config.ini
    run_ok("mv " TMP "/stg-r/config.ini " TMP "/stg-r-config.ini");
    expect_error(changed, "2 settings differ from the run's " TMP "/stg-r/checkpoint.h5", "train.lr = 0.001 (the run: 0.003)");
    assert_false(access(TMP "/stg-r/config.ini", F_OK) == 0);
    run_ok("sed -e 's/^lr = .*/lr = 0.001/' -e 's/^n = 2048/n = 7/' " TMP "/stg-r-config.ini > " TMP "/stg-r/config.ini");
    expect_error(changed, "from the run's " TMP "/stg-r/checkpoint.h5", "sprec.n = 7 (the run: 2048)");
    run_ok("mv " TMP "/stg-r-config.ini " TMP "/stg-r/config.ini");
    char *cfg1 = read_text_file(TMP "/stg-r/config.ini", NULL), *ck1 = read_text_file(TMP "/stg-r/checkpoint.h5", &n1);
    assert_string_equal(cfg0, cfg1);
    assert_true(n0 == n1 && memcmp(ck0, ck1, n0) == 0);
    free(cfg1); free(ck0); free(ck1);
    // a changed lr, accepted: the run goes on, config.ini is the original, the new settings are beside it
    snprintf(cmd, sizeof cmd, "%s --train.max_steps=3 --train.lr=1e-3 --train.log_every=1 --run.threads=1 --resume "
             "--accept-changes", run);
    char out[16384];
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "2 changed settings (--accept-changes)"));
    cfg1 = read_text_file(TMP "/stg-r/config.ini", NULL);
    assert_string_equal(cfg0, cfg1);
    char *cfg2 = read_text_file(TMP "/stg-r/config-resume-1.ini", NULL);
    assert_non_null(strstr(cfg2, "2 settings changed from config.ini: train.lr = 0.001 (the run: 0.003), "
                                 "train.max_steps = 3 (the run: 4)"));
    assert_non_null(strstr(cfg2, "\nlr = 0.001\n"));
    double lr[8];
    assert_int_equal(read_jsonl_values(TMP "/stg-r/train_log.jsonl", "lr", lr, 8), 3);
    assert_true(fabs(lr[2] - 1e-3 * (1.0 - 2.0 / 3.0)) < 1e-9);   // step 3 of 3 at the new peak, linear decay
    free(cfg0); free(cfg1); free(cfg2);
    // the checkpoints written since record the accepted settings: the old lr is now the change
    snprintf(cmd, sizeof cmd, "%s --train.max_steps=3 --resume", run);
    assert_int_equal(run_capture(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "1 setting differs from the run's " TMP "/stg-r/checkpoint.h5: train.lr = 0.003 (the run: 0.001)"));
    // only bookkeeping keys changed (log_every, threads, ckpt_every): no question asked
    snprintf(cmd, sizeof cmd, "%s --train.max_steps=3 --train.lr=1e-3 --train.ckpt_every=1 --train.log_every=3 "
             "--run.threads=1 --resume", run);
    run_ok(cmd);
    assert_false(access(TMP "/stg-r/config-resume-2.ini", F_OK) == 0);
}

DEFINE_TEST_GROUP(test_stages,
    cmocka_unit_test(test_stage_dry_run_paper_configs),
    cmocka_unit_test(test_stage_sprec_settings),
    cmocka_unit_test(test_stage_greedy_negatives),
    cmocka_unit_test(test_stage_completion_eos),
    cmocka_unit_test(test_stage_resume_policy),
)
