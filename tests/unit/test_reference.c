// Reference test against Hugging Face transformers: for every fixture in
// tests/ref/fixtures (made by tests/ref/make_fixtures.py from random
// LlamaForCausalLM / Qwen2ForCausalLM models in float64), run `sprec dump` and
// require a relative error ||ours - theirs|| / ||theirs|| under 1e-4 on the
// logits, log-probs, sequence log-probs, loss and every parameter gradient.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "../../host/checkpoint.h"
#include "../../host/h5io.h"

#define FIXTURES "tests/ref/fixtures"
#define TOLERANCE 1e-4

static double rel_err(const float *a, const float *b, size_t n, double *max_abs) {
    double num = 0, den = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (fabs(d) > *max_abs) *max_abs = fabs(d);
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double compare(hid_t ours, hid_t ref, const char *dir, const char *name, double *worst_name_err, char *worst_name) {
    long d1[8] = {-1, -1, -1, -1, -1, -1, -1, -1}, d2[8];
    int rank = h5_shape(ref, dir, name, d1);
    memcpy(d2, d1, sizeof d2);
    float *b = h5_read_f32(ref, dir, name, rank, d1);
    float *a = h5_read_f32(ours, "dump output", name, rank, d2);   // same shape required
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)d1[i];
    double max_abs, e = rel_err(a, b, n, &max_abs);
    if (e > *worst_name_err) { *worst_name_err = e; snprintf(worst_name, 128, "%s", name); }
    if (e > TOLERANCE) print_message("  %s: %s relative error %.3e (max abs %.3e) > %.0e\n", dir, name, e, max_abs, TOLERANCE);
    free(a); free(b);
    return e;
}

static void check_fixture(const char *dir) {
    char cmd[4096], out[8192], model[1024], batch[1024], expected[1024], dumped[1024];
    snprintf(model, sizeof model, "%.400s/model.h5", dir);
    snprintf(batch, sizeof batch, "%.400s/batch.h5", dir);
    snprintf(expected, sizeof expected, "%.400s/expected.h5", dir);
    snprintf(dumped, sizeof dumped, "build/test-tmp/ref-%.200s.h5", strrchr(dir, '/') + 1);
    snprintf(cmd, sizeof cmd, "mkdir -p build/test-tmp && build/sprec dump --model %s --batch %s -o %s", model, batch, dumped);
    int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0) print_message("%s\n", out);
    assert_int_equal(rc, 0);

    hid_t ours = h5_open_read(dumped), ref = h5_open_read(expected);
    double worst = 0, worst_grad = 0;
    char worst_name[128] = "", worst_grad_name[128] = "";
    const char *outputs[] = {"logits", "logprobs", "seq_logprob", "loss"};
    for (int i = 0; i < 4; i++) compare(ours, ref, dir, outputs[i], &worst, worst_name);
    ModelConfig mc;
    checkpoint_read_config(model, &mc);
    int count; size_t total;
    ParamInfo *table = model_param_table(&mc, &count, &total);
    for (int i = 0; i < count; i++) {
        char name[160];
        snprintf(name, sizeof name, "grad/%s", table[i].name);
        compare(ours, ref, dir, name, &worst_grad, worst_grad_name);
    }
    free(table);
    h5_close(ours); h5_close(ref);
    print_message("  %-24s worst output %.2e (%s), worst gradient %.2e (%s)\n", strrchr(dir, '/') + 1, worst,
                  worst_name, worst_grad, worst_grad_name);
    assert_true(worst <= TOLERANCE);
    assert_true(worst_grad <= TOLERANCE);
}

static void test_reference_fixtures(void **state) {
    (void)state;
    DIR *d = opendir(FIXTURES);
    if (!d) fail_msg("no fixtures in %s (run python3 tests/ref/make_fixtures.py)", FIXTURES);
    struct dirent *e;
    int n = 0;
    char names[64][200];
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%.199s", e->d_name);
    closedir(d);
    assert_true(n >= 5);
    for (int i = 0; i < n; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%.199s", FIXTURES, names[i]);
        check_fixture(dir);
    }
}

DEFINE_TEST_GROUP(test_reference, cmocka_unit_test(test_reference_fixtures))
