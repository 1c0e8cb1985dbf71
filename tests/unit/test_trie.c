// The catalogue trie and constrained recommendation: the flat layout, every
// item generable and nothing else, beam top-K = distinct items with their exact
// sequence log-probs, = brute force on an enumerable catalogue, prefix and
// duplicate items, bad K.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "rec/trie.h"
#include "rec/recommend.h"
#include "gen/generate.h"
#include "base/rng.h"

#define V_TINY 16

static ModelConfig tiny_config(void) {
    ModelConfig c = {.vocab_size = V_TINY, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                     .head_dim = 8, .ffn_dim = 48, .max_seq_len = 24, .rope_theta = 10000.0f,
                     .rms_eps = 1e-5f, .tie_embeddings = 1};
    return c;
}

static void tiny_model(Model *m, uint64_t seed) {
    ModelConfig c = tiny_config();
    model_create(m, &c, backend_cpu());
    model_init_random(m, seed, 0.3f);
}

// n distinct random sequences of 1..maxlen tokens in [1, V); with no_prefix no
// sequence is a strict prefix of another
typedef struct { int n; int *seq[64]; int len[64]; } Cat;

static int is_prefix(const int *a, int na, const int *b, int nb) {
    return na <= nb && memcmp(a, b, (size_t)na * sizeof(int)) == 0;
}

static void make_cat(Cat *c, int n, int maxlen, int no_prefix, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    c->n = 0;
    while (c->n < n) {
        int s[8], len = 1 + (int)rng_below(&r, (uint64_t)maxlen);
        for (int i = 0; i < len; i++) s[i] = 1 + (int)rng_below(&r, V_TINY - 1);
        int bad = 0;
        for (int j = 0; j < c->n && !bad; j++) {
            if (len == c->len[j] && memcmp(s, c->seq[j], (size_t)len * sizeof(int)) == 0) bad = 1;
            if (no_prefix && (is_prefix(s, len, c->seq[j], c->len[j]) || is_prefix(c->seq[j], c->len[j], s, len))) bad = 1;
        }
        if (bad) continue;
        c->seq[c->n] = malloc((size_t)len * sizeof(int));
        memcpy(c->seq[c->n], s, (size_t)len * sizeof(int));
        c->len[c->n++] = len;
    }
}

static void free_cat(Cat *c) { for (int i = 0; i < c->n; i++) free(c->seq[i]); }

static void build_cat(Trie *t, const Cat *c) { trie_build(t, (const int *const *)c->seq, c->len, c->n, NULL); }

// log p(item | prompt) by the training forward on prompt ++ item
static double ref_logprob(Model *m, const int *prompt, int plen, const int *item, int ilen) {
    int T = plen + ilen, *tok = malloc((size_t)T * sizeof(int));
    float *mask = calloc((size_t)T, sizeof(float));
    memcpy(tok, prompt, (size_t)plen * sizeof(int));
    memcpy(tok + plen, item, (size_t)ilen * sizeof(int));
    for (int i = plen; i < T; i++) mask[i] = 1;
    Batch b = {.B = 1, .T = T, .tokens = tok, .mask = mask, .lengths = &T};
    const int n = model_forward(m, &b, 0);
    assert_int_equal(n, ilen);
    double s = 0;
    for (int i = 0; i < n; i++) s += m->head_lp[i];
    free(tok); free(mask);
    return s;
}

static const int P0[] = {3, 1, 4, 1, 5}, P1[] = {9}, P2[] = {2, 6, 5, 3};
static const int *const PROMPTS[] = {P0, P1, P2};
static const int LENS[] = {5, 1, 4};

// ---- the trie itself -------------------------------------------------------------

static void test_trie_layout(void **state) {
    (void)state;
    // items: 0 = [5 2], 1 = [5 2 7] (0 is its strict prefix), 2 = [3], 3 = [5 1], 4 = [9 9 9]
    const int a[] = {5, 2}, b[] = {5, 2, 7}, c[] = {3}, d[] = {5, 1}, e[] = {9, 9, 9};
    const int *seqs[] = {a, b, c, d, e}, lens[] = {2, 3, 1, 2, 3};
    Trie t;
    trie_build(&t, seqs, lens, 5, NULL);
    assert_int_equal(t.n_items, 5);
    assert_int_equal(t.n_nodes, 1 + 3 + 3 + 2);   // root; 3 5 9; 5-1 5-2 9-9; 5-2-7 9-9-9
    assert_int_equal(t.n_edges, t.n_nodes - 1);
    assert_int_equal(t.max_depth, 3);
    assert_int_equal(t.n_prefix_items, 1);
    assert_int_equal(t.child_start[0], 0);
    assert_int_equal(t.child_start[t.n_nodes], t.n_edges);
    for (int i = 0; i < t.n_nodes; i++) {
        assert_true(t.child_start[i] <= t.child_start[i + 1]);
        for (int e = t.child_start[i]; e < t.child_start[i + 1]; e++) {
            assert_int_equal(t.child_node[e], e + 1);   // breadth first
            if (e > t.child_start[i]) assert_true(t.child_tok[e - 1] < t.child_tok[e]);
        }
    }
    int ids[16], item;
    assert_int_equal(trie_allowed(&t, NULL, 0, ids, 16, &item), 3);
    assert_int_equal(item, -1);
    assert_int_equal(ids[0], 3); assert_int_equal(ids[1], 5); assert_int_equal(ids[2], 9);
    const int p5[] = {5}, p52[] = {5, 2}, p527[] = {5, 2, 7}, off[] = {5, 3};
    assert_int_equal(trie_allowed(&t, p5, 1, ids, 16, &item), 2);
    assert_int_equal(ids[0], 1); assert_int_equal(ids[1], 2); assert_int_equal(item, -1);
    assert_int_equal(trie_allowed(&t, p52, 2, ids, 16, &item), 1);   // a terminal with a child
    assert_int_equal(ids[0], 7); assert_int_equal(item, 0);
    assert_int_equal(trie_allowed(&t, p527, 3, ids, 16, &item), 0);
    assert_int_equal(item, 1);
    assert_int_equal(trie_allowed(&t, off, 2, ids, 16, &item), -1);
    assert_int_equal(item, -1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(trie_item(&t, seqs[i], lens[i]), i);
        assert_int_equal(t.item[t.item_node[i]], i);
        assert_int_equal(t.item_len[i], lens[i]);
    }
    // the generate hooks: stop only at leaves
    assert_int_equal(trie_gen_stop(&t, 0, p52, 2), 0);
    assert_int_equal(trie_gen_stop(&t, 0, p527, 3), 1);
    assert_int_equal(trie_gen_stop(&t, 0, c, 1), 1);
    assert_int_equal(trie_gen_allowed(&t, 0, off, 2, ids, 16), 0);
    trie_free(&t);
}

static void build_dup(void *arg) {
    (void)arg;
    const int a[] = {5, 2}, b[] = {3}, c[] = {5, 2};
    const int *seqs[] = {a, b, c}, lens[] = {2, 1, 2};
    const char *names[] = {"\"Dune\"\n", "\"Emma\"\n", "\"Dune \"\n"};
    Trie t;
    trie_build(&t, seqs, lens, 3, names);
}

static void build_empty(void *arg) {
    (void)arg;
    const int a[] = {5, 2};
    const int *seqs[] = {a, a}, lens[] = {2, 0};
    Trie t;
    trie_build(&t, seqs, lens, 2, NULL);
}

static void expect_one_line(void (*fn)(void *), void *arg, const char *n1, const char *n2) {
    char err[4096];
    const int rc = run_forked(fn, arg, err, sizeof err);
    if (rc != 1 || !strstr(err, n1) || (n2 && !strstr(err, n2))) print_message("exit %d, stderr '%s'\n", rc, err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "sprec: error: "));
    assert_non_null(strstr(err, n1));
    if (n2) assert_non_null(strstr(err, n2));
    const char *nl = strchr(err, '\n');
    assert_true(nl == NULL || nl[1] == 0);
}

static void test_trie_duplicates(void **state) {
    (void)state;
    expect_one_line(build_dup, NULL, "items 0 (\"Dune\"\\n)", "and 2 (\"Dune \"\\n)");
    expect_one_line(build_empty, NULL, "item 1 has an empty token sequence", NULL);
}

// Titles through a real tokenizer: each `"Title"\n` completion tokenizes on its
// own, ends with the quote/newline tokens, walks to its own item and decodes back.

#define PROMPT_TAIL "please write a new books that the user may bought\n\n### Response:\n"

static void test_trie_tokenized_titles(void **state) {
    (void)state;
    const char *fix[] = {"gpt2", "smollm2", "sp"};   // byte-level, byte-level, SentencePiece-style
    const char *texts[] = {"\"Dune\"\n", "\"Dune Messiah\"\n", "\"Earth's End (Air Awakens, #3)\"\n",
                           "\"Emma\"\n", "\"1984\"\n", "\"Dune (Dune Chronicles, #1)\"\n", "\"Émile\"\n"};
    const int n = 7;
    for (int f = 0; f < 3; f++) {
        char path[256];
        snprintf(path, sizeof path, "tests/ref/tokenizer/%s.tokenizer.json.gz", fix[f]);
        size_t len;
        char *json = read_gz(path, &len);
        Tokenizer *tok = tokenizer_from_json(json, len, NULL, 0, path);
        free(json);
        Trie t;
        trie_build_texts(&t, tok, texts, n);
        assert_int_equal(t.n_items, n);
        assert_int_equal(t.n_prefix_items, 0);   // the closing quote + newline end every title
        for (int i = 0; i < n; i++) {
            int *ids, k = trie_tokenize_completion(tok, texts[i], &ids);
            assert_int_equal(trie_item(&t, ids, k), i);
            assert_int_equal(trie_allowed(&t, ids, k, NULL, 0, NULL), 0);
            for (int s = 0; s < k; s++) assert_int_equal(trie_item(&t, ids, s), -1);
            // the boundary: after a prompt ending in "### Response:\n", byte-level BPE
            // tokenizes prompt + completion as prompt ids ++ completion ids; the
            // SentencePiece-style fixture does not (it prefixes the text alone
            // with a space), which is why the convention is "completion alone"
            char joined[512];
            snprintf(joined, sizeof joined, "%s%s", PROMPT_TAIL, texts[i]);
            int *pj, *pp, nj = tokenizer_encode(tok, joined, strlen(joined), 0, &pj);
            int np = tokenizer_encode(tok, PROMPT_TAIL, strlen(PROMPT_TAIL), 0, &pp);
            const int same = nj == np + k && memcmp(pj, pp, (size_t)np * sizeof(int)) == 0 &&
                             memcmp(pj + np, ids, (size_t)k * sizeof(int)) == 0;
            assert_int_equal(same, f < 2);
            free(pj); free(pp);
            char *back = tokenizer_decode(tok, ids, k, 0, NULL);
            if (f < 2) assert_string_equal(back, texts[i]);   // byte-level BPE round-trips exactly
            free(back); free(ids);
        }
        trie_free(&t);
        tokenizer_free(tok);
    }
}

// ---- generation through the hooks ------------------------------------------------

// (a) every item is generable: forcing its path token by token through the
// trie's allowed sets reaches exactly its terminal; generate() with a hook that
// intersects the trie's set with the item's next token yields exactly the item.
typedef struct { const Trie *t; const Cat *c; } ForceArg;

static int force_hook(void *ctx, int seq, const int *gen, int n, int *out, int cap) {
    const ForceArg *f = ctx;
    int ids[V_TINY];
    const int k = trie_allowed(f->t, gen, n, ids, V_TINY, NULL);
    (void)cap;
    if (n >= f->c->len[seq]) return 0;
    for (int i = 0; i < k; i++) if (ids[i] == f->c->seq[seq][n]) { out[0] = ids[i]; return 1; }
    return 0;
}

static void test_trie_every_item_generable(void **state) {
    (void)state;
    Cat c;
    make_cat(&c, 40, 4, 0, 11);
    Trie t;
    build_cat(&t, &c);
    int ids[V_TINY];
    for (int i = 0; i < c.n; i++) {
        for (int s = 0; s < c.len[i]; s++) {
            const int k = trie_allowed(&t, c.seq[i], s, ids, V_TINY, NULL);
            int found = 0;
            for (int j = 0; j < k; j++) found |= ids[j] == c.seq[i][s];
            assert_true(found);
        }
        assert_int_equal(trie_item(&t, c.seq[i], c.len[i]), i);
    }
    Model m;
    tiny_model(&m, 5);
    const int **pr = malloc((size_t)c.n * sizeof(int *)), *pl = malloc((size_t)c.n * sizeof(int));
    int *plw = (int *)pl;
    for (int i = 0; i < c.n; i++) { pr[i] = PROMPTS[i % 3]; plw[i] = LENS[i % 3]; }
    ForceArg fa = {&t, &c};
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = t.max_depth;
    o.allowed = force_hook; o.allowed_ctx = &fa;
    GenOutput *out = calloc((size_t)c.n, sizeof(GenOutput));
    generate(&m, pr, pl, c.n, &o, out);
    for (int i = 0; i < c.n; i++) {
        assert_int_equal(out[i].hyps[0].n, c.len[i]);
        assert_int_equal(trie_item(&t, out[i].hyps[0].tokens, out[i].hyps[0].n), i);
        const double want = ref_logprob(&m, pr[i], pl[i], c.seq[i], c.len[i]);
        assert_true(fabs(out[i].hyps[0].logprob - want) <= 1e-5 * fabs(want) + 1e-6);
    }
    gen_output_free(out, c.n);
    free(out); free(pr); free(plw);
    model_free(&m);
    trie_free(&t);
    free_cat(&c);
}

// (b) nothing else is generable: random walks through the allowed sets end at
// items; sampling at temperature 1 with the hooks only ever yields items.
static void test_trie_nothing_else_generable(void **state) {
    (void)state;
    Cat c;
    make_cat(&c, 40, 4, 0, 12);   // prefix items allowed
    Trie t;
    build_cat(&t, &c);
    Rng r;
    rng_seed(&r, 3);
    int ids[V_TINY], path[8];
    for (int w = 0; w < 2000; w++) {
        int n = 0, item;
        for (;;) {
            const int k = trie_allowed(&t, path, n, ids, V_TINY, &item);
            assert_true(k >= 0);
            if (k == 0) { assert_true(item >= 0); break; }
            if (item >= 0 && rng_uniform(&r) < 0.5) break;   // a prefix item may end here
            path[n++] = ids[rng_below(&r, (uint64_t)k)];
        }
        assert_true(item >= 0 && item < c.n);
        assert_int_equal(c.len[item], n);
        assert_memory_equal(c.seq[item], path, (size_t)n * sizeof(int));
    }
    Model m;
    tiny_model(&m, 6);
    GenOpts o;
    gen_opts_default(&o);
    o.temperature = 1.0f;
    o.max_new_tokens = t.max_depth + 3;   // room to overrun if the hooks let it
    o.allowed = trie_gen_allowed; o.allowed_ctx = &t;
    o.stop = trie_gen_stop; o.stop_ctx = &t;
    int seen[64] = {0}, distinct = 0;
    for (int seed = 0; seed < 60; seed++) {
        GenOutput out[3];
        o.seed = (uint64_t)seed;
        generate(&m, PROMPTS, LENS, 3, &o, out);
        for (int b = 0; b < 3; b++) {
            const GenHyp *h = &out[b].hyps[0];
            const int item = trie_item(&t, h->tokens, h->n);
            assert_true(item >= 0);
            assert_true(h->finish == GEN_STOP || h->finish == GEN_CONSTRAINT);
            if (!seen[item]++) distinct++;
        }
        gen_output_free(out, 3);
    }
    assert_true(distinct >= 10);   // the draws do explore the catalogue
    model_free(&m);
    trie_free(&t);
    free_cat(&c);
}

// ---- recommend_topk ----------------------------------------------------------------

static void check_topk(Model *m, const Cat *c, const int *items, const float *scores, int K, int b) {
    for (int k = 0; k < K; k++) {
        const int it = items[b * K + k];
        assert_true(it >= 0 && it < c->n);
        for (int j = 0; j < k; j++) assert_int_not_equal(items[b * K + j], it);
        if (k > 0) assert_true(scores[b * K + k - 1] >= scores[b * K + k]);
        const double want = ref_logprob(m, PROMPTS[b], LENS[b], c->seq[it], c->len[it]);
        if (fabs(scores[b * K + k] - want) > 1e-5 * fabs(want))
            print_message("prompt %d rank %d item %d: score %.9g, forward %.9g\n", b, k, it, scores[b * K + k], want);
        assert_true(fabs(scores[b * K + k] - want) <= 1e-5 * fabs(want));
    }
}

// (c) beam top-K: K distinct items, scores = their log-probs by model_forward
static void test_recommend_topk_scores(void **state) {
    (void)state;
    Cat c;
    make_cat(&c, 48, 4, 1, 13);
    Trie t;
    build_cat(&t, &c);
    Model m;
    tiny_model(&m, 7);
    const int K = 5, W = 8;
    int items[3 * 5];
    float scores[3 * 5];
    recommend_topk(&m, &t, PROMPTS, LENS, 3, K, W, items, scores);
    for (int b = 0; b < 3; b++) check_topk(&m, &c, items, scores, K, b);
    // greedy = K = W = 1 = the first of the constrained greedy decode
    int g[3];
    float gs[3];
    recommend_topk(&m, &t, PROMPTS, LENS, 3, 1, 1, g, gs);
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = t.max_depth;
    o.allowed = trie_gen_allowed; o.allowed_ctx = &t;
    o.stop = trie_gen_stop; o.stop_ctx = &t;
    GenOutput out[3];
    generate(&m, PROMPTS, LENS, 3, &o, out);
    for (int b = 0; b < 3; b++) {
        assert_int_equal(g[b], trie_item(&t, out[b].hyps[0].tokens, out[b].hyps[0].n));
        assert_true(fabs(gs[b] - out[b].hyps[0].logprob) <= 1e-5 * fabs(gs[b]));
    }
    gen_output_free(out, 3);
    // next best: avoiding the top item gives the second, otherwise the top
    int avoid[3] = {items[0], -1, items[2 * K + 1]}, nb[3];
    float nbs[3];
    recommend_next_best(&m, &t, PROMPTS, LENS, 3, avoid, W, nb, nbs);
    assert_int_equal(nb[0], items[1]);
    assert_int_equal(nb[1], items[K]);
    assert_int_equal(nb[2], items[2 * K]);
    assert_true(fabs(nbs[0] - scores[1]) <= 1e-5 * fabs(scores[1]));
    model_free(&m);
    trie_free(&t);
    free_cat(&c);
}

// The trie as slices of its child tokens (kept on the device) constrains
// generation exactly as the same children handed over as lists: greedy,
// sampled and beam outputs bit-identical, on fp32 and on bf16 storage.
static void test_trie_slices_equal_lists(void **state) {
    (void)state;
    Cat c;
    make_cat(&c, 48, 4, 1, 17);
    Trie t;
    build_cat(&t, &c);
    const Backend *bes[] = {backend_cpu(), backend_cpu_bf16()};
    for (int k = 0; k < 2; k++) {
        Model m;
        tiny_model(&m, 9);
        if (k) {   // the same weights on bf16 storage
            Model b;
            model_create(&b, &m.cfg, bes[k]);
            memcpy(b.params, m.params, m.numel * sizeof(float));   // cpu buffers are host memory
            model_sync_compute(&b);
            model_free(&m);
            m = b;
        }
        for (int mode = 0; mode < 3; mode++) {
            GenOpts o;
            gen_opts_default(&o);
            o.max_new_tokens = t.max_depth;
            o.stop = trie_gen_stop; o.stop_ctx = &t;
            o.temperature = mode == 1 ? 0.9f : 0.0f;
            o.seed = 5;
            o.beams = mode == 2 ? 4 : 0;
            GenOutput lists[3], slices[3];
            o.allowed = trie_gen_allowed; o.allowed_ctx = &t;
            generate(&m, PROMPTS, LENS, 3, &o, lists);
            o.allowed = NULL;
            o.allowed_slice = trie_gen_allowed_slice;
            o.allowed_table = t.child_tok; o.allowed_table_len = t.n_edges;
            generate(&m, PROMPTS, LENS, 3, &o, slices);
            for (int b = 0; b < 3; b++) {
                assert_int_equal(lists[b].n, slices[b].n);
                for (int h = 0; h < lists[b].n; h++) {
                    const GenHyp *x = &lists[b].hyps[h], *y = &slices[b].hyps[h];
                    assert_int_equal(x->n, y->n);
                    assert_memory_equal(x->tokens, y->tokens, (size_t)x->n * sizeof(int));
                    assert_true(x->logprob == y->logprob && x->finish == y->finish);
                    assert_true(trie_item(&t, x->tokens, x->n) >= 0 || x->finish == GEN_CONSTRAINT);
                }
            }
            gen_output_free(lists, 3);
            gen_output_free(slices, 3);
        }
        model_free(&m);
    }
    trie_free(&t);
    free_cat(&c);
}

// brute force: the K best items by the training forward (ties to the lower index)
static void brute_topk(Model *m, const Cat *c, int b, int K, int *best) {
    double *lp = malloc((size_t)c->n * sizeof(double));
    for (int i = 0; i < c->n; i++) lp[i] = ref_logprob(m, PROMPTS[b], LENS[b], c->seq[i], c->len[i]);
    for (int k = 0; k < K; k++) {
        int bi = -1;
        for (int i = 0; i < c->n; i++) {
            int used = 0;
            for (int j = 0; j < k; j++) used |= best[j] == i;
            if (!used && (bi < 0 || lp[i] > lp[bi])) bi = i;
        }
        best[k] = bi;
    }
    free(lp);
}

// (d) enumerable catalogue, W = catalogue size: the beam's top-K is the brute-force top-K
static void test_recommend_matches_brute_force(void **state) {
    (void)state;
    for (int pass = 0; pass < 2; pass++) {
        Cat c;
        make_cat(&c, 20, 4, pass == 0, 21 + (uint64_t)pass);   // pass 1: prefix items allowed
        Trie t;
        build_cat(&t, &c);
        assert_int_equal(t.n_prefix_items > 0, pass == 1);
        Model m;
        tiny_model(&m, 8 + (uint64_t)pass);
        const int K = 6;
        int items[3 * 6], best[6];
        float scores[3 * 6];
        recommend_topk(&m, &t, PROMPTS, LENS, 3, K, c.n, items, scores);
        for (int b = 0; b < 3; b++) {
            check_topk(&m, &c, items, scores, K, b);
            brute_topk(&m, &c, b, K, best);
            for (int k = 0; k < K; k++) assert_int_equal(items[b * K + k], best[k]);
        }
        // K = the whole catalogue: every item, once
        int all[20];
        float alls[20];
        recommend_topk(&m, &t, PROMPTS, LENS, 1, c.n, c.n, all, alls);
        check_topk(&m, &c, all, alls, c.n, 0);
        model_free(&m);
        trie_free(&t);
        free_cat(&c);
    }
}

// (e) prefix items: an item that is a strict prefix of others is recommended
// with its own log-prob, and its continuations too
static void test_recommend_prefix_items(void **state) {
    (void)state;
    Cat c = {.n = 5};
    const int s[5][3] = {{4, 2}, {4, 2, 7}, {4, 2, 8}, {11}, {4}};
    const int l[5] = {2, 3, 3, 1, 1};
    for (int i = 0; i < 5; i++) {
        c.seq[i] = malloc(3 * sizeof(int));
        memcpy(c.seq[i], s[i], 3 * sizeof(int));
        c.len[i] = l[i];
    }
    Trie t;
    build_cat(&t, &c);
    assert_int_equal(t.n_prefix_items, 2);   // [4] and [4 2]
    Model m;
    tiny_model(&m, 9);
    int items[3 * 5];
    float scores[3 * 5];
    recommend_topk(&m, &t, PROMPTS, LENS, 3, 5, 5, items, scores);
    for (int b = 0; b < 3; b++) check_topk(&m, &c, items, scores, 5, b);
    // greedy: a prefix item outscores each of its continuations
    int g[3];
    float gs[3];
    recommend_topk(&m, &t, PROMPTS, LENS, 3, 1, 1, g, gs);
    for (int b = 0; b < 3; b++) assert_true(g[b] == 3 || g[b] == 4);
    model_free(&m);
    trie_free(&t);
    free_cat(&c);
}

// (f) K larger than the catalogue, W < K: one-line errors
typedef struct { int K, W; } BadK;

static void run_bad_k(void *arg) {
    const BadK *bk = arg;
    Cat c;
    make_cat(&c, 6, 3, 1, 31);
    Trie t;
    build_cat(&t, &c);
    Model m;
    tiny_model(&m, 10);
    int items[64];
    float scores[64];
    recommend_topk(&m, &t, PROMPTS, LENS, 3, bk->K, bk->W, items, scores);
}

static void test_recommend_bad_k(void **state) {
    (void)state;
    BadK a = {7, 8}, b = {3, 2}, z = {0, 4};
    expect_one_line(run_bad_k, &a, "K = 7 is larger than the catalogue (6 items)", NULL);
    expect_one_line(run_bad_k, &b, "beam width (2) must be >= K (3)", NULL);
    expect_one_line(run_bad_k, &z, "K must be >= 1", NULL);
}

DEFINE_TEST_GROUP(test_trie,
    cmocka_unit_test(test_trie_layout),
    cmocka_unit_test(test_trie_duplicates),
    cmocka_unit_test(test_trie_tokenized_titles),
    cmocka_unit_test(test_trie_every_item_generable),
    cmocka_unit_test(test_trie_nothing_else_generable),
    cmocka_unit_test(test_recommend_topk_scores),
    cmocka_unit_test(test_trie_slices_equal_lists),
    cmocka_unit_test(test_recommend_matches_brute_force),
    cmocka_unit_test(test_recommend_prefix_items),
    cmocka_unit_test(test_recommend_bad_k),
)
