// `sprec bench`: every mode runs on a tiny shape and prints JSON lines with the
// contract's fields (../shared/docs/DESIGN.md "Contracts": name, device,
// tokens_per_s, ms_per_step, peak_bytes, mfu; null on the CPU), and bad flags
// are one-line errors.
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
    // logprob: --tokens rows, extra memory reported
    run_mode("logprob", "--tokens 40", out);
    assert_int_equal(check_lines(out, names, "logprob"), 1);
    assert_non_null(strstr(out, "\"tokens\": 40,"));
    assert_non_null(strstr(out, "\"extra_bytes\": "));
    // generate: one greedy and one beam line; beams 1 gives the greedy one only
    run_mode("generate", "--prompts 3 --beams 2 --items 20 --prompt-len 5", out);
    assert_int_equal(check_lines(out, names, "generate"), 2);
    assert_string_equal(names[0], "generate_greedy");
    assert_string_equal(names[1], "generate_beam2");
    run_mode("generate", "--prompts 2 --beams 1 --items 5 --prompt-len 3 --name g", out);
    assert_int_equal(check_lines(out, names, "generate"), 1);
    assert_string_equal(names[0], "g_greedy");
}

static void test_bench_bad_flags(void **state) {
    (void)state;
    expect_error(TINY " --mode ppo", "--mode must be sft, dpo, logprob or generate", NULL);
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
}

DEFINE_TEST_GROUP(test_bench,
    cmocka_unit_test(test_bench_modes),
    cmocka_unit_test(test_bench_bad_flags),
)
