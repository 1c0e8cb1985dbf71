// sprec eval: a synthetic dataset tokenized with the GPT-2 fixture, a tiny
// random model with GPT-2's vocabulary, and the files eval writes: one top-K
// line per row (K distinct catalogue items), metrics.jsonl equal to
// metrics_compute on those lists and to HR/NDCG counted by hand; bad input.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include "tests.h"
#include "rec/recdata.h"
#include "rec/metrics.h"

#define TMP "build/test-tmp/eval"
#define N_ITEMS 30
#define N_TEST 40
#define KMAX 10

static const char *const INI =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 256\nseed = 5\n"
    "[data]\nsource = synthetic\nsynth_items = 30\nsynth_users = 100\nvalid_rows = 10\ntest_rows = 40\nseed = 3\n"
    "dataset = " TMP "/outside.h5\ntokenizer = " TMP "/gpt2.json\n"
    "[run]\nout_dir = " TMP "/run\n"
    "[eval]\nmodel = " TMP "/model.h5\nks = 1,5,10\nbeams = 10\nbatch = 16\nlabel = sft\n";

// Rows of the test split whose target is moved outside the catalogue (-1), so
// N != M and "target": null are exercised.
static const int OUTSIDE[] = {0, 7, 23};

static void setup(void) {
    static int done = 0;
    if (done) return;
    char out[4096];
    assert_int_equal(run_capture("rm -rf " TMP " && mkdir -p " TMP, out, sizeof out), 0);
    assert_int_equal(run_capture("gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/gpt2.json", out,
                                 sizeof out), 0);
    write_file(TMP "/eval.ini", INI);
    run_ok("build/sprec prepare " TMP "/eval.ini -o " TMP "/synth.h5");
    run_ok("build/sprec prepare " TMP "/eval.ini -o " TMP "/text.h5 --data.tokenizer=");
    run_ok("build/sprec init " TMP "/eval.ini -o " TMP "/model.h5");
    RecData d;
    recdata_load(&d, TMP "/synth.h5");
    assert_int_equal(d.n_items, N_ITEMS);
    assert_int_equal(d.split[SPLIT_TEST].n, N_TEST);
    for (size_t i = 0; i < sizeof OUTSIDE / sizeof OUTSIDE[0]; i++) d.split[SPLIT_TEST].target[OUTSIDE[i]] = -1;
    recdata_save(&d, TMP "/outside.h5");
    recdata_free(&d);
    done = 1;
}

static void read_ints(const cJSON *arr, int *out, int n) {
    assert_true(cJSON_IsArray(arr));
    assert_int_equal(cJSON_GetArraySize(arr), n);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(arr, i);
        assert_true(cJSON_IsNumber(v));
        out[i] = v->valueint;
    }
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    if (!v || !cJSON_IsNumber(v)) print_message("metrics.jsonl: no number '%s'\n", key);
    assert_true(v && cJSON_IsNumber(v));
    return v->valuedouble;
}

// The top-K file: one line per row, in order, history and target as in the
// dataset, KMAX distinct catalogue items. metrics.jsonl: one line, equal to
// metrics_compute on the file's lists and to HR/NDCG counted here.
static void test_eval_topk_and_metrics(void **state) {
    (void)state;
    setup();
    run_ok("build/sprec eval " TMP "/eval.ini --iteration 2");
    RecData d;
    recdata_load(&d, TMP "/outside.h5");
    const RecSplit *sp = &d.split[SPLIT_TEST];

    char *text = read_text_file(TMP "/run/topk-test.jsonl", NULL);
    int ranked[N_TEST * KMAX], hist[64], lines = 0;
    for (char *line = text, *nl; *line; line = nl + 1, lines++) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        assert_true(lines < N_TEST);
        const int r = lines;
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        assert_int_equal(num(o, "row"), r);
        const int nh = sp->hist_offsets[r + 1] - sp->hist_offsets[r];
        assert_true(nh <= 64);
        read_ints(cJSON_GetObjectItem(o, "history"), hist, nh);
        for (int i = 0; i < nh; i++) assert_int_equal(hist[i], sp->hist_items[sp->hist_offsets[r] + i]);
        const cJSON *t = cJSON_GetObjectItem(o, "target");
        assert_non_null(t);
        if (sp->target[r] < 0) assert_true(cJSON_IsNull(t));
        else { assert_true(cJSON_IsNumber(t)); assert_int_equal(t->valueint, sp->target[r]); }
        int *rk = ranked + r * KMAX;
        read_ints(cJSON_GetObjectItem(o, "ranked"), rk, KMAX);
        for (int k = 0; k < KMAX; k++) {
            assert_true(rk[k] >= 0 && rk[k] < N_ITEMS);
            for (int j = 0; j < k; j++) assert_int_not_equal(rk[j], rk[k]);
        }
        cJSON_Delete(o);
    }
    assert_int_equal(lines, N_TEST);
    free(text);

    text = read_text_file(TMP "/run/metrics.jsonl", NULL);
    assert_non_null(strchr(text, '\n'));
    assert_int_equal(strchr(text, '\n')[1], 0);   // exactly one line
    cJSON *o = cJSON_Parse(text);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "label")->valuestring, "sft");
    assert_int_equal(num(o, "iteration"), 2);
    assert_int_equal(num(o, "N"), N_TEST);
    assert_int_equal(num(o, "M"), N_TEST - (int)(sizeof OUTSIDE / sizeof OUTSIDE[0]));

    // consistency: metrics_compute on the file's lists gives the logged values exactly
    static const int ks[] = {1, 5, 10};
    Metrics m[3];
    const Catalogue cat = {d.n_items, d.n_genres, d.genre_offsets, d.genre_ids};
    metrics_compute(&cat, N_TEST, sp->target, ranked, KMAX, sp->hist_offsets, sp->hist_items, ks, 3, m);
    char key[32];
    for (int i = 0; i < 3; i++) {
        const int K = ks[i];
        const struct { const char *name; double v; } vals[] = {
            {"NDCG", m[i].ndcg}, {"HR", m[i].hr}, {"DivRatio", m[i].div_ratio}, {"ORRatio", m[i].or_ratio},
            {"MGU", m[i].mgu}, {"DGU", m[i].dgu}};
        for (int j = 0; j < 6; j++) {
            snprintf(key, sizeof key, "%s@%d", vals[j].name, K);
            assert_true(num(o, key) == vals[j].v);
        }
        // independent: HR and NDCG counted by hand from the lists (N in both denominators)
        double hits = 0, dcg = 0;
        for (int r = 0; r < N_TEST; r++) {
            if (sp->target[r] < 0) continue;
            for (int k = 0; k < K; k++)
                if (ranked[r * KMAX + k] == sp->target[r]) { hits += 1; dcg += 1.0 / log2(k + 2.0); }
        }
        snprintf(key, sizeof key, "HR@%d", K);
        assert_true(fabs(num(o, key) - hits / N_TEST) < 1e-12);
        snprintf(key, sizeof key, "NDCG@%d", K);
        assert_true(fabs(num(o, key) - dcg / N_TEST) < 1e-12);
    }
    cJSON_Delete(o);
    free(text);
    recdata_free(&d);

    // a second evaluation appends; --model / --split / -o override the config
    run_ok("build/sprec eval " TMP "/eval.ini --split valid -o " TMP "/run2 --model " TMP "/model.h5 "
           "--eval.label=dpo --eval.max_rows=4");
    run_ok("build/sprec eval " TMP "/eval.ini --split=valid -o " TMP "/run2 --eval.ks=3");
    text = read_text_file(TMP "/run2/metrics.jsonl", NULL);
    char *second = strchr(text, '\n');
    assert_non_null(second);
    assert_non_null(strstr(text, "\"label\": \"dpo\", \"iteration\": null, \"N\": 4,"));
    assert_non_null(strstr(second, "\"NDCG@3\""));
    free(text);
    text = read_text_file(TMP "/run2/topk-valid.jsonl", NULL);
    int n = 0;
    for (char *p = text; *p; p++) n += *p == '\n';
    assert_int_equal(n, 10);   // the second run: every valid row, 3 items each
    free(text);
}

static void test_eval_bad_input(void **state) {
    (void)state;
    setup();
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --eval.ks=1,31", "K = 31 is larger than the catalogue",
                 "30 items");
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --data.dataset=" TMP "/text.h5", "without a tokenizer", NULL);
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --eval.ks=1,,5", "[eval] ks", NULL);
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --eval.ks=5,5", "listed twice", NULL);
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --split train", "test or valid", NULL);
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --eval.model=", "no model", NULL);
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --iteration=-1", "--iteration", NULL);
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --model " TMP "/nothing.h5", "nothing.h5", NULL);
    // a model whose context cannot hold a prompt plus an item
    run_ok("build/sprec init " TMP "/eval.ini -o " TMP "/short.h5 --model.max_seq_len=64");
    expect_error(SPREC_CHECKED " eval " TMP "/eval.ini --model " TMP "/short.h5", "exceed the model's context", NULL);
}

DEFINE_TEST_GROUP(test_eval,
    cmocka_unit_test(test_eval_topk_and_metrics),
    cmocka_unit_test(test_eval_bad_input),
)
