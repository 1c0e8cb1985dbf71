// The unconstrained mode (host/rec/grounding.h, docs/eval.md): the mean-pooled
// embedding against the model's own head (e @ W^T = mean of the logits), the
// L2 ranking against a brute-force one, a generated title equal to a catalogue
// title at distance 0, and `sprec eval --eval.mode=unconstrained` with the
// catalogue cache in the dataset file (written once, reused bit for bit, one
// group per model, a read-only file left alone).
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "tests.h"
#include "rec/grounding.h"
#include "base/h5io.h"

#define TMP "build/test-tmp/grounding"

static uint64_t lcg = 12345;
static double urand(void) {   // [0, 1)
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * 0x1.0p-53;
}

static ModelConfig tiny_config(int V) {
    ModelConfig c = {.vocab_size = V, .dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, .head_dim = 8,
                     .ffn_dim = 32, .max_seq_len = 48, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
                     .tie_embeddings = 0, .qkv_bias = 0, .rope_scaling = 0, .rope_factor = 8.0f,
                     .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f, .rope_original_max_pos = 8192};
    return c;
}

// e_i @ W^T equals the mean over positions of the logits of sequence i run on
// its own (model_forward + model_logits, the head's own path): e is the mean
// of the head's input, the final-normed hidden states. Batching and padding
// do not change an embedding.
static void test_grounding_embed_direct(void **state) {
    (void)state;
    const int V = 40;
    ModelConfig c = tiny_config(V);
    Model m;
    model_create(&m, &c, backend_cpu());
    model_init_random(&m, 11, 0.3f);
    enum { NS = 5 };
    static const int lens[NS] = {1, 7, 3, 12, 5};
    int toks[NS][12];
    const int *seqs[NS];
    for (int i = 0; i < NS; i++) {
        for (int t = 0; t < lens[i]; t++) toks[i][t] = (int)(urand() * V);
        seqs[i] = toks[i];
    }
    const int C = c.dim;
    float emb[NS * 16], one[16];
    grounding_embed(&m, seqs, lens, NS, emb);
    assert_false(m.acts_ready);   // buffers it had to allocate are released
    for (int i = 0; i < NS; i++) {
        // alone, B = 1: the same embedding
        grounding_embed(&m, seqs + i, lens + i, 1, one);
        for (int k = 0; k < C; k++) assert_true(fabsf(one[k] - emb[i * C + k]) <= 1e-6f * (1 + fabsf(one[k])));
        // the head's logits of the sequence on its own, averaged over positions
        float mask[12] = {0}, *logits = malloc((size_t)lens[i] * V * sizeof(float));
        Batch b = {.B = 1, .T = lens[i], .tokens = toks[i], .mask = mask, .lengths = (int *)&lens[i]};
        model_forward(&m, &b, 1);
        model_logits(&m, &b, logits);
        for (int v = 0; v < V; v++) {
            double mean = 0, dot = 0;
            for (int t = 0; t < lens[i]; t++) mean += logits[(size_t)t * V + v];
            mean /= lens[i];
            for (int k = 0; k < C; k++) dot += (double)emb[i * C + k] * ((const float *)m.master.lm_head)[(size_t)v * C + k];
            assert_true(fabs(dot - mean) <= 1e-5 * (1 + fabs(mean)));
        }
        free(logits);
    }
    model_free(&m);
}

// grounding_rank = sort all items by squared distance (double), ties to the
// lower index; duplicated embeddings make ties.
static void test_grounding_rank_bruteforce(void **state) {
    (void)state;
    enum { N = 57, D = 9 };
    float emb[N * D], q[D];
    for (int i = 0; i < N * D; i++) emb[i] = (float)(urand() * 2 - 1);
    for (int k = 0; k < D; k++) {   // items 30 and 40 duplicate 12; item 5 is the query
        emb[30 * D + k] = emb[40 * D + k] = emb[12 * D + k];
        q[k] = emb[5 * D + k];
    }
    int items[N], taken[N];
    float dist[N];
    for (int K = 1; K <= N; K += 7) {
        grounding_rank(emb, N, D, q, K, items, dist);
        memset(taken, 0, sizeof taken);
        for (int k = 0; k < K; k++) {   // the brute force: the untaken item of least distance, lowest index first
            int best = -1;
            double bd = 0;
            for (int i = 0; i < N; i++) {
                if (taken[i]) continue;
                double s = 0;
                for (int c = 0; c < D; c++) s += ((double)emb[i * D + c] - q[c]) * ((double)emb[i * D + c] - q[c]);
                if (best < 0 || s < bd) { best = i; bd = s; }
            }
            taken[best] = 1;
            assert_int_equal(items[k], best);
            assert_true(fabs(dist[k] - sqrt(bd)) <= 1e-6 * (1 + sqrt(bd)));
        }
        assert_int_equal(items[0], 5);
        assert_true(dist[0] == 0.0f);
    }
}

// A catalogue built around the model's own greedy continuation: item 3's
// completion is exactly what the model writes (ending with the one end token
// E that every completion ends with), so grounding_topk ranks it first at
// distance 0 and the generation stops at E.
static void test_grounding_generated_title_first(void **state) {
    (void)state;
    const int V = 32;
    ModelConfig c = tiny_config(V);
    Model m;
    model_create(&m, &c, backend_cpu());
    int prompt[4] = {1, 2, 3, 4}, g[12], j = 0;
    const int *pp = prompt, plen = 4;
    for (uint64_t seed = 1; seed < 50 && j == 0; seed++) {   // a model whose continuation has a new token
        model_init_random(&m, seed, 0.5f);
        GenOpts o;
        gen_opts_default(&o);
        o.max_new_tokens = 12;
        GenOutput out;
        generate(&m, &pp, &plen, 1, &o, &out);
        memcpy(g, out.hyps[0].tokens, 12 * sizeof(int));
        gen_output_free(&out, 1);
        for (int k = 1; k < 12 && !j; k++) {
            int seen = 0;
            for (int i = 0; i < k; i++) seen |= g[i] == g[k];
            if (!seen) j = k;
        }
    }
    assert_true(j >= 1);
    const int E = g[j];   // the end token: generation stops there
    enum { NI = 6 };
    int offs[NI + 1], toks[64], n = 0;
    char *titles[NI];
    static char names[NI][8];
    for (int i = 0; i < NI; i++) {
        offs[i] = n;
        if (i == 3) {
            for (int k = 0; k <= j; k++) toks[n++] = g[k];
        } else {   // other titles: 1 + i random tokens other than E (never equal to item 3's)
            toks[n++] = g[0] == 0 ? 1 : 0;
            for (int k = 0; k < i; k++) { int t = (int)(urand() * V); toks[n++] = t == E ? (t + 1) % V : t; }
            toks[n++] = E;
        }
        snprintf(names[i], sizeof names[i], "item%d", i);
        titles[i] = names[i];
    }
    offs[NI] = n;
    RecData d = {.n_items = NI, .titles = titles, .tokenized = 1, .item_tok_offsets = offs, .item_tok = toks};
    Grounding gr;
    grounding_create(&gr, &m, &d, NULL);
    assert_int_equal(gr.max_new_tokens, 7 > j + 1 ? 7 + GROUNDING_MARGIN : j + 1 + GROUNDING_MARGIN);
    int items[NI];
    float dist[NI];
    GenOutput out;
    grounding_topk(&m, &gr, &pp, &plen, 1, NI, items, dist, &out);
    assert_int_equal(out.hyps[0].n, j + 1);   // stopped at E
    assert_int_equal(out.hyps[0].tokens[j], E);
    assert_int_equal(items[0], 3);
    assert_true(dist[0] < 1e-5f);
    assert_true(dist[1] > 1e-3f);
    // and the catalogue row of item 3 is the embedding of its title tokens (without E)
    float e[16];
    const int tl = grounding_title_len(&d, 3), *ts = toks + offs[3];
    assert_int_equal(tl, j);
    grounding_embed(&m, &ts, &tl, 1, e);
    for (int k = 0; k < c.dim; k++) assert_true(fabsf(e[k] - gr.emb[3 * c.dim + k]) <= 1e-6f);
    gen_output_free(&out, 1);
    grounding_free(&gr);
    model_free(&m);
}

// ---- sprec eval --eval.mode=unconstrained and the cache -----------------------------

static const char *const INI =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 256\nseed = 5\n"
    "[data]\nsource = synthetic\nsynth_items = 30\nsynth_users = 100\nvalid_rows = 10\ntest_rows = 40\nseed = 3\n"
    "dataset = " TMP "/ds.h5\ntokenizer = " TMP "/gpt2.json\n"
    "[run]\nout_dir = " TMP "/run\n"
    "[eval]\nmodel = " TMP "/model.h5\nks = 1,5,10\nbatch = 4\nmax_rows = 6\nmode = unconstrained\n";

// runs eval, requires exit 0 and `needle` in its output; returns the top-K file
static char *eval_run(const char *args, const char *needle) {
    char cmd[2048], out[16384];
    snprintf(cmd, sizeof cmd, "build/sprec eval " TMP "/g.ini -o " TMP "/run %s", args);
    const int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, needle)) print_message("%s\nexit %d:\n%s\n(wanted '%s')\n", cmd, rc, out, needle);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, needle));
    return read_text_file(TMP "/run/topk-test.jsonl", NULL);
}

static int n_groups(const char *path) {
    hid_t f = h5_open_read(path);
    int n = 0;
    if (h5_exists(f, "grounding")) {
        char **names = h5_list(f, path, "grounding", &n);
        for (int i = 0; i < n; i++) {   // each group: embeddings [30, 16] and its own fingerprint
            char ds[128], fp[64];
            snprintf(ds, sizeof ds, "grounding/%s/embeddings", names[i]);
            long dims[8];
            assert_int_equal(h5_shape(f, path, ds, dims), 2);
            assert_int_equal(dims[0], 30);
            assert_int_equal(dims[1], 16);
            snprintf(ds, sizeof ds, "grounding/%s", names[i]);
            hid_t g = H5Gopen2(f, ds, H5P_DEFAULT);
            h5_attr_read_str(g, path, "fingerprint", fp, sizeof fp);
            assert_string_equal(fp, names[i]);
            H5Gclose(g);
        }
        h5_list_free(names, n);
    }
    h5_close(f);
    return n;
}

static void test_grounding_eval_cache(void **state) {
    (void)state;
    char out[4096];
    assert_int_equal(run_capture("rm -rf " TMP " && mkdir -p " TMP, out, sizeof out), 0);
    assert_int_equal(run_capture("gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/gpt2.json", out,
                                 sizeof out), 0);
    write_file(TMP "/g.ini", INI);
    run_ok("build/sprec prepare " TMP "/g.ini");
    run_ok("build/sprec init " TMP "/g.ini -o " TMP "/model.h5");
    run_ok("build/sprec init " TMP "/g.ini -o " TMP "/model2.h5 --model.seed=6");
    run_ok("cp " TMP "/ds.h5 " TMP "/ro.h5 && chmod 0444 " TMP "/ro.h5");
    assert_int_equal(n_groups(TMP "/ds.h5"), 0);

    // first use: computed and cached; the lines carry the generation
    char *first = eval_run("", "and cached in");
    assert_int_equal(n_groups(TMP "/ds.h5"), 1);
    int lines = 0;
    for (char *p = first; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 6);
    assert_non_null(strstr(first, "\"generated\": null, \"generated_ids\": ["));   // init models have no tokenizer
    // second use: reused, the same lists bit for bit
    char *second = eval_run("", "reused from the cache");
    assert_string_equal(first, second);
    assert_int_equal(n_groups(TMP "/ds.h5"), 1);
    // another model: its own group
    free(eval_run("--model " TMP "/model2.h5", "and cached in"));
    assert_int_equal(n_groups(TMP "/ds.h5"), 2);
    free(eval_run("--model " TMP "/model2.h5", "reused from the cache"));
    // a read-only dataset: computed without caching, the file untouched, the same lists
    struct stat st0, st1;
    assert_int_equal(stat(TMP "/ro.h5", &st0), 0);
    char *ro = eval_run("--data.dataset=" TMP "/ro.h5", "read-only");
    assert_string_equal(first, ro);
    assert_int_equal(stat(TMP "/ro.h5", &st1), 0);
    assert_true(st0.st_ino == st1.st_ino && st0.st_size == st1.st_size && st0.st_mtime == st1.st_mtime);
    assert_int_equal(n_groups(TMP "/ro.h5"), 0);
    assert_int_equal(run_capture("ls " TMP " | grep -c 'tmp$'", out, sizeof out), 1);   // no copy left behind
    // the constrained mode is unaffected by the cache
    free(eval_run("--eval.mode=constrained", "beams 10"));
    free(first); free(second); free(ro);
}

DEFINE_TEST_GROUP(test_grounding,
    cmocka_unit_test(test_grounding_embed_direct),
    cmocka_unit_test(test_grounding_rank_bruteforce),
    cmocka_unit_test(test_grounding_generated_title_first),
    cmocka_unit_test(test_grounding_eval_cache),
)
