// `sprec bench`: every mode runs on a tiny shape and prints JSON lines with the
// contract's fields (../shared/docs/DESIGN.md "Contracts": name, device,
// tokens_per_s, ms_per_step, peak_bytes, mfu; null on the CPU), and bad flags
// are one-line errors.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include "tests.h"

#define TINY "build/sprec bench --device cpu --threads 1 --dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 64 " \
             "--vocab 256 --seq 16 --batch 2 --steps 2 --warmup 1"

// Parses every line of out as one JSON object with the contract fields; returns
// how many lines there were and writes their "name"s (up to 4) to names.
static int check_lines(const char *out, char names[4][64], const char *mode) {
    int n = 0;
    char *copy = strdup(out), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) print_message("not JSON: %s\n", line);
        assert_non_null(j);
        const cJSON *name = cJSON_GetObjectItem(j, "name"), *dev = cJSON_GetObjectItem(j, "device");
        assert_true(cJSON_IsString(name));
        assert_true(cJSON_IsString(dev));
        assert_string_equal(dev->valuestring, "cpu");
        if (n < 4) snprintf(names[n], 64, "%s", name->valuestring);
        const int sgemm = !strcmp(name->valuestring, "sgemm_1024");
        const char *num[] = {"tokens_per_s", "ms_per_step", "peak_bytes"};
        for (int k = 0; k < 3; k++) {
            const cJSON *v = cJSON_GetObjectItem(j, num[k]);
            assert_non_null(v);
            if (sgemm) assert_true(cJSON_IsNull(v));
            else assert_true(cJSON_IsNumber(v) && v->valuedouble > 0);
        }
        const cJSON *mfu = cJSON_GetObjectItem(j, "mfu");
        assert_non_null(mfu);
        assert_true(cJSON_IsNull(mfu));   // on the CPU
        if (!sgemm && strcmp(mode, "sft")) {
            const cJSON *m = cJSON_GetObjectItem(j, "mode"), *g = cJSON_GetObjectItem(j, "gflops");
            assert_true(cJSON_IsString(m));
            assert_string_equal(m->valuestring, mode);
            assert_true(cJSON_IsNumber(g) && g->valuedouble > 0);
            assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "tokens")));
        }
        cJSON_Delete(j);
        n++;
    }
    free(copy);
    return n;
}

static void run_mode(const char *mode, const char *extra, char out[8192]) {
    char cmd[1024];
    snprintf(cmd, 1024, TINY " --mode %s %s 2>/dev/null", mode, extra);
    int rc = run_capture(cmd, out, 8192);
    if (rc) print_message("%s: exit %d\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
}

static void test_bench_modes(void **state) {
    (void)state;
    char out[8192], names[4][64];
    // sft: the step and the sgemm line (no --mode: the same)
    run_mode("sft", "", out);
    assert_int_equal(check_lines(out, names, "sft"), 2);
    assert_string_equal(names[0], "sft_step");
    assert_string_equal(names[1], "sgemm_1024");
    assert_null(strstr(out, "\"mode\""));   // the CPU SFT line is the original contract line
    // dpo: tokens = both sides of every pair
    run_mode("dpo", "--name d", out);
    assert_int_equal(check_lines(out, names, "dpo"), 1);
    assert_string_equal(names[0], "d");
    assert_non_null(strstr(out, "\"tokens\": 64,"));          // 2 pairs x 2 sides x 16
    assert_non_null(strstr(out, "\"pairs\": 2,"));
    // forward: the forward alone, then the same run's sgemm line; its FLOPs are the
    // model's own count over 2 x 16 tokens: 2 * (linear weights 9216) * 32 + 4 * (NH*D 32) *
    // (2 x 136 causal pairs) + 2 * (V*C 256 x 32) * (16 scored rows, the last half of each)
    run_mode("forward", "", out);
    assert_int_equal(check_lines(out, names, "forward"), 2);
    assert_string_equal(names[0], "forward");
    assert_string_equal(names[1], "sgemm_1024");
    assert_non_null(strstr(out, "\"flops_per_step\": 886784,"));
    // logprob: --tokens rows, extra memory reported; the one-pass head (SFT), then the
    // two-pass one (DPO), on the same inputs: the same loss
    run_mode("logprob", "--tokens 40", out);
    assert_int_equal(check_lines(out, names, "logprob"), 2);
    assert_string_equal(names[0], "logprob");
    assert_string_equal(names[1], "logprob-twopass");
    assert_non_null(strstr(out, "\"tokens\": 40,"));
    assert_non_null(strstr(out, "\"extra_bytes\": "));
    const char *l1 = strstr(out, "\"final_loss\": "), *l2 = l1 ? strstr(l1 + 1, "\"final_loss\": ") : NULL;
    assert_non_null(l2);
    assert_true(strtod(l1 + 14, NULL) == strtod(l2 + 14, NULL));
    // generate: one greedy and one beam line; beams 1 gives the greedy one only
    run_mode("generate", "--prompts 3 --beams 2 --items 20 --prompt-len 5", out);
    assert_int_equal(check_lines(out, names, "generate"), 2);
    assert_string_equal(names[0], "generate_greedy");
    assert_string_equal(names[1], "generate_beam2");
    run_mode("generate", "--prompts 2 --beams 1 --items 5 --prompt-len 3 --name g", out);
    assert_int_equal(check_lines(out, names, "generate"), 1);
    assert_string_equal(names[0], "g_greedy");
}

// --mode attention: attention_fwd + attention_bwd alone on q[2,32,4,8], k,v[2,32,2,8]
#define ATTN "build/sprec bench --threads 1 --mode attention --seq 32 --heads 4 --kv-heads 2 --head-dim 8 " \
             "--steps 2 --warmup 1"

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(j, key);
    if (!cJSON_IsNumber(v)) print_message("\"%s\" is not a number\n", key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

// Runs ATTN with extra flags; returns its one JSON line, checked for the fields
// every attention line has (the caller frees it).
static cJSON *attention_line(const char *extra, const char *device) {
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, ATTN " --device %s %s 2>/dev/null", device, extra);
    int rc = run_capture(cmd, out, sizeof out);
    if (rc) print_message("%s: exit %d\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(strchr(out, '\n')[1], 0);   // one line
    cJSON *j = cJSON_Parse(out);
    if (!j) print_message("not JSON: %s\n", out);
    assert_non_null(j);
    const char *str[][2] = {{"impl", "sprec"}, {"mode", "attention"}, {"device", device}};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItem(j, str[k][0]);
        assert_true(cJSON_IsString(v));
        assert_string_equal(v->valuestring, str[k][1]);
    }
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "name")));
    assert_int_equal((int)num(j, "seq"), 32);
    assert_int_equal((int)num(j, "heads"), 4);
    assert_int_equal((int)num(j, "kv_heads"), 2);
    assert_int_equal((int)num(j, "head_dim"), 8);
    assert_int_equal((int)num(j, "causal"), 1);
    const char *pos[] = {"tokens", "tokens_per_s", "ms_per_step", "ms_per_step_mean", "ms_per_step_min",
                         "peak_bytes", "gflops", "flops_fwd", "flops_per_step"};
    for (int k = 0; k < 9; k++) {
        const double x = num(j, pos[k]);
        if (!(isfinite(x) && x > 0)) print_message("%s = %g\n", pos[k], x);
        assert_true(isfinite(x) && x > 0);
    }
    assert_true(num(j, "extra_bytes") >= 0);
    assert_true(isfinite(num(j, "final_loss")));
    // step = fwd + bwd = 3.5 x fwd
    assert_true(fabs(num(j, "flops_per_step") - 3.5 * num(j, "flops_fwd")) <= 1e-6 * num(j, "flops_per_step"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "mfu")));   // on the CPU
    return j;
}

static void test_bench_attention(void **state) {
    (void)state;
    // full length: tokens = B*T, fwd FLOPs = 2*2*B*NH*T*T*D/2
    cJSON *c = attention_line("--batch 2", "cpu");
    assert_string_equal(cJSON_GetObjectItem(c, "name")->valuestring, "attention");
    assert_int_equal((int)num(c, "batch"), 2);
    assert_int_equal((int)num(c, "ragged"), 0);
    assert_int_equal((int)num(c, "tokens"), 64);
    assert_int_equal((long)num(c, "flops_fwd"), 2L * 2 * 2 * 4 * 32 * 32 * 8 / 2);
    // the emulated bf16 backend on the same inputs: the checksum agrees to bf16 rounding
    cJSON *h = attention_line("--batch 2 --name a16", "cpu-bf16");
    assert_string_equal(cJSON_GetObjectItem(h, "name")->valuestring, "a16");
    const double l32 = num(c, "final_loss"), l16 = num(h, "final_loss");
    if (fabs(l32 - l16) > 2e-3) print_message("final_loss cpu %g vs cpu-bf16 %g\n", l32, l16);
    assert_true(fabs(l32 - l16) <= 2e-3);
    assert_true(l32 != 0);
    cJSON_Delete(c);
    cJSON_Delete(h);
    // --ragged: lengths 32, 24, 16, 8, 32; tokens and FLOPs from the valid lengths
    cJSON *r = attention_line("--batch 5 --ragged", "cpu");
    assert_int_equal((int)num(r, "ragged"), 1);
    assert_int_equal((int)num(r, "tokens"), 32 + 24 + 16 + 8 + 32);
    assert_int_equal((long)num(r, "flops_fwd"), 2L * 4 * 8 * (32 * 32 + 24 * 24 + 16 * 16 + 8 * 8 + 32 * 32));
    cJSON_Delete(r);
    // and the contract fields every mode shares (batch 8: enough FLOPs that gflops never prints 0.00)
    char out[8192], names[4][64];
    const int rc = run_capture(ATTN " --device cpu --batch 8 2>/dev/null", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_int_equal(check_lines(out, names, "attention"), 1);
    assert_string_equal(names[0], "attention");
}

// --mode iteration: one whole SPRec iteration (the trainer's) at a tiny shape: a line per
// stage, then the whole; the stages' seconds, tokens and FLOPs add up to the whole's
// stages_s, tokens and flops_per_step, and fit in its wall time (not a speed check)
static void test_bench_iteration(void **state) {
    (void)state;
    char out[16384];
    // stdout alone (run_capture adds 2>&1): the trainer's progress goes to stderr
    const char *cmd = "(" TINY " --mode iteration --prompts 6 --items 30 --prompt-len 8 2>/dev/null)";
    int rc = run_capture(cmd, out, sizeof out);
    if (rc) print_message("%s: exit %d\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
    const char *want[] = {"iteration-negatives", "iteration-sft", "iteration-reference", "iteration-dpo",
                          "iteration-eval", "iteration"};
    const char *stage[] = {"negatives", "sft", "reference", "dpo", "eval", "iteration"};
    double sec[6], tok[6], flops[6];
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        assert_true(n < 6);
        cJSON *j = cJSON_Parse(line);
        if (!j) print_message("not JSON: %s\n", line);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, want[n]);
        assert_string_equal(cJSON_GetObjectItem(j, "stage")->valuestring, stage[n]);
        assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "iteration");
        assert_string_equal(cJSON_GetObjectItem(j, "device")->valuestring, "cpu");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "mfu")));   // on the CPU
        const char *pos[] = {"seconds", "tokens", "tokens_per_s", "ms_per_step", "peak_bytes", "flops_per_step"};
        for (int k = 0; k < 6; k++) {
            const double x = num(j, pos[k]);
            if (!(isfinite(x) && x > 0)) print_message("%s: %s = %g\n", want[n], pos[k], x);
            assert_true(isfinite(x) && x > 0);
        }
        assert_true(num(j, "gflops") >= 0);
        sec[n] = num(j, "seconds");
        tok[n] = num(j, "tokens");
        flops[n] = num(j, "flops_per_step");
        assert_true(fabs(num(j, "ms_per_step") - 1e3 * sec[n]) <= 1e-3);
        if (n == 5) {
            double sum_s = 0, sum_tok = 0, sum_flops = 0;
            for (int k = 0; k < 5; k++) { sum_s += sec[k]; sum_tok += tok[k]; sum_flops += flops[k]; }
            const double stages_s = num(j, "stages_s");
            assert_true(fabs(sum_s - stages_s) <= 1e-5);
            assert_true(stages_s <= sec[5] + 1e-5);
            assert_true(fabs(num(j, "other_s") - (sec[5] - stages_s)) <= 1e-5);
            assert_true(tok[5] == sum_tok);
            assert_true(fabs(flops[5] - sum_flops) <= 1e-5 * sum_flops);
        }
        cJSON_Delete(j);
    }
    assert_int_equal(n, 6);
    assert_true(tok[2] == tok[3]);   // the reference pass and DPO read the same pair sequences
}

static void test_bench_bad_flags(void **state) {
    (void)state;
    expect_error(TINY " --mode ppo", "--mode must be sft, dpo, forward, logprob, generate, attention or iteration", NULL);
    expect_error(TINY " --mode iteration --items 1", "--mode iteration needs --items >= 2", NULL);
    expect_error(TINY " --bogus 3", "unknown flag '--bogus'", NULL);
    expect_error(TINY " --mode logprob --tokens 0", "--tokens must be a positive integer", NULL);
    expect_error(TINY " --beams", "--beams needs a value", NULL);
    expect_error(TINY " --loss-frac 1.5", "--loss-frac must be in (0, 1]", NULL);
    expect_error(TINY " --loss-frac 0.5x", "--loss-frac must be in (0, 1]", NULL);
    expect_error(TINY " --prompts=-1 --mode generate", "--prompts must be a positive integer", NULL);
    expect_error(TINY " stray", "unexpected argument 'stray'", NULL);
    expect_error("build/sprec bench --dim 30 --heads 4", "--dim divisible by --heads", NULL);
    expect_error("build/sprec bench --dim 32 --heads 4 --kv-heads 3", "--heads by --kv-heads", NULL);
    expect_error("build/sprec bench --mode generate --vocab 2", "--vocab >= 3", NULL);
    expect_error(TINY " --vocab 512", "--vocab given twice", NULL);
    expect_error(ATTN " --heads 3", "--heads given twice", NULL);
    expect_error("build/sprec bench --mode attention --heads 3 --kv-heads 2", "--heads divisible by --kv-heads", NULL);
    expect_error("build/sprec bench --mode attention --head-dim 129", "--head-dim <= 128", NULL);
    expect_error("build/sprec bench --mode attention --head-dim 0", "--head-dim must be a positive integer", NULL);
    expect_error(ATTN " --ragged=1", "--ragged takes no value", NULL);
    expect_error(ATTN " --ragged --ragged", "--ragged given twice", NULL);
    expect_error(TINY " --ragged", "--head-dim and --ragged are for --mode attention", NULL);
    expect_error(TINY " --head-dim 16", "--head-dim and --ragged are for --mode attention", NULL);
    expect_error(TINY " --zero 2", "--zero must be an integer in [0, 1], got '2'", NULL);
    expect_error(TINY " --micro-batch 0", "--micro-batch must be a positive integer", NULL);
    expect_error(TINY " --mode logprob --micro-batch 1", "--micro-batch is for --mode sft, --zero for sft and iteration", NULL);
    expect_error(TINY " --mode generate --zero 1", "--micro-batch is for --mode sft, --zero for sft and iteration", NULL);
}

DEFINE_TEST_GROUP(test_bench,
    cmocka_unit_test(test_bench_modes),
    cmocka_unit_test(test_bench_attention),
    cmocka_unit_test(test_bench_iteration),
    cmocka_unit_test(test_bench_bad_flags),
)
