// Generation: the decode ops against naive double versions; the KV-cache
// decode forward against the training forward on whole prefixes; greedy,
// sampling and beam search against brute force; stops, the allowed-tokens
// hook, and the CLI.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "gen/generate.h"
#include "gen/sampler.h"
#include "model/lora.h"
#include "base/rng.h"

// ---- helpers -------------------------------------------------------------------

static Rng trng;
static float frnd(void) { return (float)(2.0 * rng_uniform(&trng) - 1.0); }
static float *frand_n(size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = frnd();
    return x;
}

static ModelConfig tiny_config(int V, int NH, int NKV, int qkv_bias, int tied, int rope_scaling) {
    ModelConfig c = {.vocab_size = V, .dim = 32, .n_layers = 2, .n_heads = NH, .n_kv_heads = NKV,
                     .head_dim = 8, .ffn_dim = 48, .max_seq_len = 24, .rope_theta = 10000.0f,
                     .rms_eps = 1e-5f, .tie_embeddings = tied, .qkv_bias = qkv_bias,
                     .rope_scaling = rope_scaling, .rope_factor = 4.0f, .rope_low_freq_factor = 1.0f,
                     .rope_high_freq_factor = 4.0f, .rope_original_max_pos = 16};
    return c;
}

// std 0.3 so the logits are far from flat; biases random too (init zeroes them)
static void tiny_model_on(Model *m, const ModelConfig *c, uint64_t seed, const Backend *be) {
    model_create(m, c, be);   // (cpu and cpu-bf16 buffers are host memory)
    model_init_random(m, seed, 0.3f);
    for (int i = 0; i < m->n_params; i++)
        if (strstr(m->table[i].name, ".bias"))
            for (size_t j = 0; j < m->table[i].numel; j++) m->params[m->table[i].offset + j] = 0.5f * frnd();
    model_sync_compute(m);
}
static void tiny_model(Model *m, const ModelConfig *c, uint64_t seed) { tiny_model_on(m, c, seed, backend_cpu()); }

// LoRA adapters on all seven modules, B ~ N(0, 0.3) (B = 0 would leave the
// model unchanged); dropout only matters while lora_set_train says training
static void tiny_lora(Model *m, float dropout) {
    const LoraConfig lc = {.rank = 4, .alpha = 8.0f, .dropout = dropout, .targets = LORA_TARGETS_ALL, .seed = 7};
    model_enable_lora(m, &lc);
    Lora *lo = m->lora;
    Rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < lo->n_params; i++)
        if (strstr(lo->table[i].name, "lora_B"))
            for (size_t j = 0; j < lo->table[i].numel; j++) lo->params[lo->table[i].offset + j] = 0.3f * (float)rng_normal(&r);
    lora_sync_compute(m);
}

// logits after the last token of seq[0..n), by the training forward on the whole prefix
static void ref_logits(Model *m, const int *seq, int n, float *out) {
    const int V = m->cfg.vocab_size;
    float *mask = calloc((size_t)n, sizeof(float)), *all = malloc((size_t)n * V * sizeof(float));
    Batch b = {.B = 1, .T = n, .tokens = (int *)seq, .mask = mask, .lengths = &n};
    model_forward(m, &b, 1);
    model_logits(m, &b, all);
    memcpy(out, all + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    free(mask); free(all);
}

static double rel_err_f(const float *got, const float *want, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) { num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]); den += (double)want[i] * want[i]; }
    return sqrt(num / (den > 0 ? den : 1));
}

// greedy by full recompute: the oracle for the cached loop
static int greedy_ref(Model *m, const int *prompt, int len, int max_new, int eos, int *out) {
    const int V = m->cfg.vocab_size;
    int *seq = malloc((size_t)(len + max_new) * sizeof(int)), n = 0;
    float *lg = malloc((size_t)V * sizeof(float));
    memcpy(seq, prompt, (size_t)len * sizeof(int));
    while (n < max_new) {
        ref_logits(m, seq, len + n, lg);
        int t = sample_argmax(lg, V);
        out[n++] = t;
        seq[len + n - 1] = t;
        if (t == eos) break;
    }
    free(seq); free(lg);
    return n;
}

static const int P0[] = {3, 1, 4, 1, 5}, P1[] = {9}, P2[] = {2, 6, 5};
static const int *const PROMPTS[] = {P0, P1, P2};
static const int LENS[] = {5, 1, 3};

// ---- ops -----------------------------------------------------------------------

static void test_gen_ops(void **state) {
    (void)state;
    const Backend *be = backend_cpu();
    rng_seed(&trng, 11);
    // rope at explicit positions vs a double rotation
    enum { N = 5, H = 3, D = 8, PT = 12 };
    float *x = frand_n(N * H * D), *cs = frand_n(PT * D / 2), *sn = frand_n(PT * D / 2), *x0 = malloc(sizeof(float) * N * H * D);
    memcpy(x0, x, sizeof(float) * N * H * D);
    int pos[N] = {0, 7, 3, 11, 3};
    be->rope_at_fwd(x, cs, sn, pos, N, H, D);
    double maxe = 0;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D / 2; i++) {
                const float *r = x0 + (n * H + h) * D;
                double c = cs[pos[n] * D / 2 + i], s = sn[pos[n] * D / 2 + i];
                double w1 = r[i] * c - r[i + D / 2] * s, w2 = r[i + D / 2] * c + r[i] * s;
                maxe = fmax(maxe, fabs(w1 - x[(n * H + h) * D + i]));
                maxe = fmax(maxe, fabs(w2 - x[(n * H + h) * D + i + D / 2]));
            }
    assert_true(maxe < 1e-6);

    // kv_write + cached attention vs naive double, GQA and MHA
    for (int nkv = 1; nkv <= 4; nkv *= 4) {
        enum { R = 3, S = 3, P = 10, NH = 4 };
        const int W = nkv * D, start[R] = {0, 4, 7}, n_new[R] = {3, 0, 2};
        float *kc = be->kv_alloc((size_t)R * P * W), *vc = be->kv_alloc((size_t)R * P * W);
        float *kref = frand_n((size_t)R * P * W), *vref = frand_n((size_t)R * P * W);
        memcpy(kc, kref, sizeof(float) * R * P * W);
        memcpy(vc, vref, sizeof(float) * R * P * W);
        float *kn = frand_n((size_t)R * S * W), *vn = frand_n((size_t)R * S * W), *q = frand_n((size_t)R * S * NH * D);
        float *out = frand_n((size_t)R * S * NH * D);
        be->kv_write(kc, kn, start, n_new, R, S, P, W);
        be->kv_write(vc, vn, start, n_new, R, S, P, W);
        for (int b = 0; b < R; b++)
            for (int s = 0; s < n_new[b]; s++) {
                memcpy(kref + ((size_t)b * P + start[b] + s) * W, kn + ((size_t)b * S + s) * W, sizeof(float) * W);
                memcpy(vref + ((size_t)b * P + start[b] + s) * W, vn + ((size_t)b * S + s) * W, sizeof(float) * W);
            }
        assert_memory_equal(kc, kref, sizeof(float) * R * P * W);
        assert_memory_equal(vc, vref, sizeof(float) * R * P * W);
        be->attention_cached_fwd(out, q, kc, vc, start, n_new, R, S, P, NH, nkv, D);
        double err = 0;
        for (int b = 0; b < R; b++)
            for (int s = 0; s < S; s++)
                for (int h = 0; h < NH; h++) {
                    const float *o = out + (((size_t)b * S + s) * NH + h) * D;
                    if (s >= n_new[b]) { for (int i = 0; i < D; i++) assert_true(o[i] == 0.0f); continue; }
                    const float *qh = q + (((size_t)b * S + s) * NH + h) * D;
                    const int g = h / (NH / nkv), L = start[b] + s + 1;
                    double sc[P], mx = -1e300, sum = 0, want[D];
                    for (int j = 0; j < L; j++) {
                        double dot = 0;
                        for (int i = 0; i < D; i++) dot += (double)qh[i] * kref[((size_t)b * P + j) * W + g * D + i];
                        sc[j] = dot / sqrt((double)D);
                        mx = fmax(mx, sc[j]);
                    }
                    for (int j = 0; j < L; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
                    for (int i = 0; i < D; i++) {
                        want[i] = 0;
                        for (int j = 0; j < L; j++) want[i] += sc[j] / sum * vref[((size_t)b * P + j) * W + g * D + i];
                        err = fmax(err, fabs(want[i] - o[i]));
                    }
                }
        print_message("  cached attention NKV=%d max abs err %.2e\n", nkv, err);
        assert_true(err < 1e-5);

        // beam reorder: a gather from the old state, rows may repeat
        const int src[R] = {2, 0, 0};
        be->kv_gather(kc, src, R, P, P, W);
        for (int i = 0; i < R; i++)
            assert_memory_equal(kc + (size_t)i * P * W, kref + (size_t)src[i] * P * W, sizeof(float) * P * W);
        const int src2[R] = {1, 1, 0};   // row 1 stays, only the first 4 positions move
        memcpy(kref, kc, sizeof(float) * R * P * W);
        be->kv_gather(kc, src2, R, 4, P, W);
        for (int i = 0; i < R; i++)
            for (int t = 0; t < P; t++)
                assert_memory_equal(kc + ((size_t)i * P + t) * W,
                                    kref + ((size_t)(t < 4 ? src2[i] : i) * P + t) * W, sizeof(float) * W);
        be->free(kc); be->free(vc);
        free(kref); free(vref); free(kn); free(vn); free(q); free(out);
    }

    float *in = frand_n(6 * 4), *g = malloc(sizeof(float) * 3 * 4);
    const int rows[3] = {5, 0, 5};
    be->gather_rows(g, in, rows, 3, 4);
    for (int i = 0; i < 3; i++) assert_memory_equal(g + i * 4, in + rows[i] * 4, sizeof(float) * 4);
    free(in); free(g); free(x); free(x0); free(cs); free(sn);
}

// ---- the decode forward --------------------------------------------------------

// Prefill three prompts of different lengths in small chunks, then decode
// steps where rows sometimes sit out; every logits row equals the training
// forward's on the row's whole prefix (relative error < tol), on backend be,
// with LoRA adapters when lora is set.
static void check_cache(const ModelConfig *c, const Backend *be, int lora, double tol, const char *what) {
    Model m;
    rng_seed(&trng, 5);
    tiny_model_on(&m, c, 42, be);
    const int V = c->vocab_size, R = 3, steps = 5;
    float *lg = malloc((size_t)R * V * sizeof(float)), *want = malloc((size_t)V * sizeof(float));
    if (lora) {   // the adapters must move the logits far beyond tol, or agreeing would prove little
        ref_logits(&m, PROMPTS[0], LENS[0], lg);
        tiny_lora(&m, 0.1f);
        ref_logits(&m, PROMPTS[0], LENS[0], want);
        const double moved = rel_err_f(lg, want, V);
        print_message("  %-28s adapters move the logits by rel %.2e\n", what, moved);
        assert_true(moved > 0.1);
    }
    Decoder d;
    decoder_create(&d, &m, R, 16, R * 2);   // 2-column prefill chunks
    int seq[R][16], len[R];
    for (int r = 0; r < R; r++) { memcpy(seq[r], PROMPTS[r], sizeof(int) * LENS[r]); len[r] = LENS[r]; }
    decoder_prefill(&d, PROMPTS, LENS, R, lg);
    double worst = 0;
    for (int step = 0; step <= steps; step++) {
        for (int r = 0; r < R; r++) {
            if (step > 0 && (step + r) % 3 == 0) continue;   // this row sat out the step
            ref_logits(&m, seq[r], len[r], want);
            worst = fmax(worst, rel_err_f(lg + (size_t)r * V, want, V));
        }
        if (step == steps) break;
        int tok[R], n_new[R];
        for (int r = 0; r < R; r++) {
            n_new[r] = (step + 1 + r) % 3 != 0;
            tok[r] = (int)rng_below(&trng, (uint64_t)V);
            if (n_new[r]) seq[r][len[r]++] = tok[r];
        }
        decoder_step(&d, tok, n_new, R, 1, lg);
        for (int r = 0; r < R; r++) assert_int_equal(d.kv.len[r], len[r]);
    }
    print_message("  %-28s cached vs full logits rel err %.2e\n", what, worst);
    assert_true(worst < tol);
    decoder_free(&d);
    free(lg); free(want);
    model_free(&m);
}

static void test_gen_cache_matches_full_forward(void **state) {
    (void)state;
    ModelConfig a = tiny_config(40, 4, 2, 0, 1, 0), b = tiny_config(40, 4, 4, 1, 0, 0), c = tiny_config(40, 4, 1, 1, 0, 1);
    check_cache(&a, backend_cpu(), 0, 1e-5, "GQA, tied");
    check_cache(&b, backend_cpu(), 0, 1e-5, "MHA, qkv bias, untied");
    check_cache(&c, backend_cpu(), 0, 1e-5, "MQA, bias, llama3 rope scaling");
}

// The decode step runs the adapters as the training forward does (no merge):
// the same agreement with them as without, on fp32 and on bf16 storage (the
// bound of test_bf16_decode_matches_forward there).
static void test_gen_lora_cache_matches_forward(void **state) {
    (void)state;
    ModelConfig a = tiny_config(40, 4, 2, 0, 1, 0), b = tiny_config(40, 4, 1, 1, 0, 1);
    check_cache(&a, backend_cpu(), 1, 1e-5, "LoRA, GQA, tied");
    check_cache(&b, backend_cpu(), 1, 1e-5, "LoRA, MQA, bias, llama3 rope");
    check_cache(&a, backend_cpu_bf16(), 0, 2e-2, "cpu-bf16, GQA, tied");
    check_cache(&a, backend_cpu_bf16(), 1, 2e-2, "cpu-bf16, LoRA, GQA, tied");
    check_cache(&b, backend_cpu_bf16(), 1, 2e-2, "cpu-bf16, LoRA, MQA, bias");
}

// ---- greedy, sampling ----------------------------------------------------------

static void assert_same_tokens(const GenHyp *a, const GenHyp *b) {
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->tokens, b->tokens, sizeof(int) * (size_t)a->n);
}

static void test_gen_greedy_and_sampling(void **state) {
    (void)state;
    ModelConfig c = tiny_config(40, 4, 2, 1, 0, 0);
    Model m;
    rng_seed(&trng, 6);
    tiny_model(&m, &c, 7);
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = 8;
    GenOutput g[3], s[3], s2[3], one[1];
    generate(&m, PROMPTS, LENS, 3, &o, g);
    for (int b = 0; b < 3; b++) {
        int want[8], n = greedy_ref(&m, PROMPTS[b], LENS[b], 8, -1, want);
        assert_int_equal(g[b].hyps[0].n, n);
        assert_memory_equal(g[b].hyps[0].tokens, want, sizeof(int) * n);
        assert_int_equal(g[b].hyps[0].finish, GEN_LENGTH);
    }
    // the greedy limits of sampling
    GenOpts lim = o;
    lim.seed = 3;
    float temps[] = {1e-4f, 1.0f, 1.0f};
    int ks[] = {0, 1, 0};
    float ps[] = {1.0f, 1.0f, 1e-6f};
    for (int i = 0; i < 3; i++) {
        lim.temperature = temps[i]; lim.top_k = ks[i]; lim.top_p = ps[i];
        generate(&m, PROMPTS, LENS, 3, &lim, s);
        for (int b = 0; b < 3; b++) assert_same_tokens(&s[b].hyps[0], &g[b].hyps[0]);
        gen_output_free(s, 3);
    }
    // seeded: same seed -> same tokens, also for a prompt run alone
    GenOpts so = o;
    so.temperature = 1.5f; so.top_k = 20; so.top_p = 0.95f; so.seed = 1234; so.max_new_tokens = 8;
    generate(&m, PROMPTS, LENS, 3, &so, s);
    generate(&m, PROMPTS, LENS, 3, &so, s2);
    int differs = 0;
    for (int b = 0; b < 3; b++) {
        assert_same_tokens(&s[b].hyps[0], &s2[b].hyps[0]);
        differs |= s[b].hyps[0].n != g[b].hyps[0].n ||
                   memcmp(s[b].hyps[0].tokens, g[b].hyps[0].tokens, sizeof(int) * (size_t)g[b].hyps[0].n);
    }
    assert_true(differs);   // at T = 1.5 the draws leave the greedy path
    // the stream of prompt b depends on (seed, b): run prompt 0 alone
    generate(&m, PROMPTS, LENS, 1, &so, one);
    assert_same_tokens(&one[0].hyps[0], &s[0].hyps[0]);
    gen_output_free(one, 1);
    // ... or by an explicit stream id: prompt 2 alone, as stream 2
    const uint64_t sid = 2;
    GenOpts alone = so;
    alone.stream_ids = &sid;
    generate(&m, PROMPTS + 2, LENS + 2, 1, &alone, one);
    assert_same_tokens(&one[0].hyps[0], &s[2].hyps[0]);
    // the reported log-prob is the model's: check against the full forward
    {
        const GenHyp *h = &s[2].hyps[0];
        int seq[32];
        float lg[40];
        memcpy(seq, P2, sizeof P2);
        double lp = 0;
        for (int i = 0; i < h->n; i++) {
            ref_logits(&m, seq, 3 + i, lg);
            lp += lg[h->tokens[i]] - logsumexp(lg, 40);
            seq[3 + i] = h->tokens[i];
        }
        assert_true(fabs(lp - h->logprob) < 1e-4);
    }
    gen_output_free(g, 3); gen_output_free(s, 3); gen_output_free(s2, 3); gen_output_free(one, 1);
    model_free(&m);
}

// ---- stops and the allowed-tokens hook -----------------------------------------

typedef struct { int calls; int end_after; } EvenCtx;
// toy constraint: even ids only; nothing allowed once end_after tokens exist
static int allow_even(void *ctx, int seq, const int *gen, int n, int *out, int cap) {
    (void)seq; (void)gen;
    EvenCtx *e = ctx;
    e->calls++;
    if (e->end_after > 0 && n >= e->end_after) return 0;
    int k = 0;
    for (int v = 0; v < 40 && k < cap; v += 2) out[k++] = v;
    return k;
}

// The sampling oracle: every step downloads the live rows' logits
// (decoder_step's host copy), masks them with the allowed hook and draws with
// sample_token from the prompt's stream: the plain algorithm, which
// generate() must match token for token while downloading far less.
static void sampled_ref(Model *m, const GenOpts *o, int B, int (*toks)[16], int *ntok) {
    const int V = m->cfg.vocab_size;
    Decoder d;
    decoder_create(&d, m, B, m->cfg.max_seq_len, 64);
    float *lg = malloc((size_t)B * V * sizeof(float)), *row = malloc((size_t)V * sizeof(float));
    float *fs = malloc((size_t)V * sizeof(float));
    int *is = malloc((size_t)V * sizeof(int)), ids[64], next[3], n_new[3], live[3];
    unsigned char *mark = calloc((size_t)V, 1);
    Rng rng[3];
    const SamplerCfg sc = {o->temperature, o->top_k, o->top_p};
    for (int b = 0; b < B; b++) { rng_seed(&rng[b], gen_stream_seed(o->seed, (uint64_t)b)); ntok[b] = 0; live[b] = 1; }
    decoder_prefill(&d, PROMPTS, LENS, B, lg);
    for (int step = 0; step < o->max_new_tokens; step++) {
        for (int b = 0; b < B; b++) {
            n_new[b] = 0;
            next[b] = 0;
            if (!live[b]) continue;
            memcpy(row, lg + (size_t)b * V, (size_t)V * sizeof(float));
            const int k = o->allowed ? o->allowed(o->allowed_ctx, b, toks[b], ntok[b], ids, 64) : -1;
            if (k == 0) { live[b] = 0; continue; }
            if (k > 0) mask_allowed(row, V, ids, k, mark);
            next[b] = sample_token(row, V, &sc, &rng[b], fs, is);
            toks[b][ntok[b]++] = next[b];
            n_new[b] = ntok[b] < o->max_new_tokens;
            live[b] = n_new[b];
        }
        decoder_step(&d, next, n_new, B, 1, lg);
    }
    decoder_free(&d);
    free(lg); free(row); free(fs); free(is); free(mark);
}

// Sampling reads the top_k + 1 best (or the allowed tokens' logits) instead
// of whole rows, falling back to the row when those cannot decide the draw:
// the same tokens as the oracle in every case, on fp32 and on bf16 storage
// (whose coarse logits tie often, so the top-k boundary fallback runs).
static void test_gen_sampling_matches_rows(void **state) {
    (void)state;
    ModelConfig c = tiny_config(40, 4, 2, 1, 0, 0);
    rng_seed(&trng, 8);
    Model m32;
    tiny_model(&m32, &c, 11);
    const struct { float t; int k; float p; int constrained; } cfgs[] = {
        {1.3f, 5, 1.0f, 0},    // top-k: the fetched 6 decide
        {0.8f, 0, 0.9f, 0},    // top-p alone: the whole row
        {2.0f, 3, 0.8f, 0},    // top-k then top-p
        {1.0f, 0, 1.0f, 0},    // plain temperature: the whole row
        {1.0f, 0, 1.0f, 1},    // allowed tokens only: gathered
        {0.7f, 4, 0.95f, 1},   // allowed tokens, filtered
        {3.0f, 1, 1.0f, 0},    // top-1 at a high temperature
        {1.0f, 10, 1.0f, 0},   // T = 1 (z exact): bf16 ties at the top-k boundary decided from the fetch
    };
    const Backend *bes[] = {backend_cpu(), backend_cpu_bf16()};
    for (int k = 0; k < 2; k++) {
        Model mm;
        model_create(&mm, &c, bes[k]);
        memcpy(mm.params, m32.params, m32.numel * sizeof(float));   // cpu buffers are host memory
        model_sync_compute(&mm);
        for (size_t t = 0; t < sizeof cfgs / sizeof cfgs[0]; t++)
            for (uint64_t seed = 1; seed <= 3; seed++) {
                GenOpts o;
                gen_opts_default(&o);
                o.max_new_tokens = 10;
                o.temperature = cfgs[t].t; o.top_k = cfgs[t].k; o.top_p = cfgs[t].p; o.seed = seed;
                EvenCtx ec = {0, 0};
                if (cfgs[t].constrained) { o.allowed = allow_even; o.allowed_ctx = &ec; }
                int want[3][16], nw[3];
                sampled_ref(&mm, &o, 3, want, nw);
                GenOutput got[3];
                generate(&mm, PROMPTS, LENS, 3, &o, got);
                for (int b = 0; b < 3; b++) {
                    if (got[b].hyps[0].n != nw[b] ||
                        memcmp(got[b].hyps[0].tokens, want[b], (size_t)nw[b] * sizeof(int)) != 0)
                        print_message("%s config %zu seed %llu prompt %d differs\n", bes[k]->name, t,
                                      (unsigned long long)seed, b);
                    assert_int_equal(got[b].hyps[0].n, nw[b]);
                    assert_memory_equal(got[b].hyps[0].tokens, want[b], (size_t)nw[b] * sizeof(int));
                }
                gen_output_free(got, 3);
            }
        model_free(&mm);
    }
    model_free(&m32);
}

// sample_token_sparse == sample_token on the full row (-inf outside the
// sparse entries), and sample_topk_decided against hand-made boundaries.
static void test_sampler_sparse_and_topk_decided(void **state) {
    (void)state;
    enum { V = 97 };
    Rng r;
    rng_seed(&r, 21);
    float row[V], fs[V], vals[V];
    int is[V], ids[V];
    for (int trial = 0; trial < 400; trial++) {
        int m = 0;
        for (int v = 0; v < V; v++) {
            row[v] = -INFINITY;
            if (rng_uniform(&r) < 0.3) {   // coarse values: ties are common
                row[v] = (float)(int)(rng_uniform(&r) * 8) * 0.5f;
                ids[m] = v; vals[m++] = row[v];
            }
        }
        const SamplerCfg cfgs[] = {{1.0f, 0, 1.0f}, {0.7f, 3, 1.0f}, {1.5f, 0, 0.8f}, {2.0f, 5, 0.6f}, {0.0f, 0, 1.0f}};
        for (int c = 0; c < 5; c++) {
            const double u = rng_uniform(&r);
            const int want = sample_token_u(row, V, &cfgs[c], u, fs, is);
            const int got = m ? sample_token_sparse(ids, vals, m, &cfgs[c], u, fs + 0, is) : 0;
            assert_int_equal(got, want);
        }
    }
    // the boundary: the fetched best {3, 2, 1} decide top-2 (two values above the smallest) ...
    const float best[3] = {3.0f, 2.0f, 1.0f}, flat[3] = {3.0f, 1.0f, 1.0f};
    assert_true(sample_topk_decided(best, 3, 3, 2, 0.7f));
    assert_false(sample_topk_decided(flat, 3, 3, 2, 0.7f));   // a tie at the boundary: an unfetched 1.0 may rank
    assert_true(sample_topk_decided(flat, 2, 3, 2, 0.7f));    // fewer than fetched: the row has no more
    // 1/T a power of two: z = x / T is exact, the fetch (x desc, id asc) ranks ties as top_n does
    assert_true(sample_topk_decided(flat, 3, 3, 2, 1.0f));
    assert_true(sample_topk_decided(flat, 3, 3, 2, 0.5f));
    // ... and distinct logits whose z = x / T round to the same float
    const float T = 1.0f / 1.5f;
    float x = 1.5f, y = 0;
    for (int i = 0; i < 100000 && y == 0; i++) {
        const float nx = nextafterf(x, 2.0f);
        if (nx * (1.0f / T) == x * (1.0f / T)) y = nx;
        else x = nx;
    }
    assert_true(y > x);   // such a pair exists
    const float collapsed[2] = {y, x};
    assert_false(sample_topk_decided(collapsed, 2, 2, 1, T));
    assert_true(sample_topk_decided(collapsed, 2, 2, 1, 1.0f));
}

static void test_gen_stops_and_allowed(void **state) {
    (void)state;
    ModelConfig c = tiny_config(40, 4, 2, 0, 1, 0);
    Model m;
    tiny_model(&m, &c, 9);
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = 6;
    GenOutput g[3], r[3];
    generate(&m, PROMPTS, LENS, 3, &o, g);
    const GenHyp *h = &g[0].hyps[0];
    // EOS = the third greedy token (first occurrence) -> stops right after it
    int k = 0;
    while (k < 2 && h->tokens[k] != h->tokens[2]) k++;
    GenOpts e = o;
    e.eos_id = h->tokens[2];
    generate(&m, PROMPTS, LENS, 1, &e, r);
    assert_int_equal(r[0].hyps[0].n, k + 1);
    assert_int_equal(r[0].hyps[0].finish, GEN_EOS);
    gen_output_free(r, 1);
    // a stop token sequence
    GenOpts st = o;
    st.stop_ids = h->tokens + 2; st.n_stop_ids = 2;
    generate(&m, PROMPTS, LENS, 1, &st, r);
    assert_true(r[0].hyps[0].n <= 4);
    assert_int_equal(r[0].hyps[0].finish, GEN_STOP);
    gen_output_free(r, 1);
    // max_new_tokens
    GenOpts mx = o;
    mx.max_new_tokens = 2;
    generate(&m, PROMPTS, LENS, 3, &mx, r);
    for (int b = 0; b < 3; b++) {
        assert_int_equal(r[b].hyps[0].n, 2);
        assert_memory_equal(r[b].hyps[0].tokens, g[b].hyps[0].tokens, 2 * sizeof(int));
    }
    gen_output_free(r, 3);

    // the hook: greedy, sampling and beams only ever emit allowed ids
    EvenCtx ec = {0, 0};
    for (int mode = 0; mode < 3; mode++) {
        GenOpts a = o;
        a.allowed = allow_even; a.allowed_ctx = &ec;
        if (mode == 1) { a.temperature = 2.0f; a.seed = 5; }
        if (mode == 2) a.beams = 3;
        generate(&m, PROMPTS, LENS, 3, &a, r);
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < r[b].n; i++)
                for (int j = 0; j < r[b].hyps[i].n; j++) assert_int_equal(r[b].hyps[i].tokens[j] % 2, 0);
        gen_output_free(r, 3);
    }
    assert_true(ec.calls > 0);
    // returning 0 ends the sequence
    EvenCtx end = {0, 2};
    GenOpts a = o;
    a.allowed = allow_even; a.allowed_ctx = &end;
    generate(&m, PROMPTS, LENS, 3, &a, r);
    for (int b = 0; b < 3; b++) {
        assert_int_equal(r[b].hyps[0].n, 2);
        assert_int_equal(r[b].hyps[0].finish, GEN_CONSTRAINT);
    }
    gen_output_free(r, 3);
    gen_output_free(g, 3);
    model_free(&m);
}

// ---- beam search ---------------------------------------------------------------

static void test_gen_beam_width_one_is_greedy(void **state) {
    (void)state;
    ModelConfig c = tiny_config(40, 4, 2, 1, 0, 0);
    Model m;
    tiny_model(&m, &c, 21);
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = 7;
    GenOutput g[3], bm[3];
    generate(&m, PROMPTS, LENS, 3, &o, g);
    o.eos_id = g[1].hyps[0].tokens[3];   // so one sequence at least finishes by EOS
    gen_output_free(g, 3);
    generate(&m, PROMPTS, LENS, 3, &o, g);
    o.beams = 1;   // the beam loop at width 1
    generate(&m, PROMPTS, LENS, 3, &o, bm);
    assert_int_equal(g[1].hyps[0].finish, GEN_EOS);
    for (int b = 0; b < 3; b++) {
        assert_int_equal(bm[b].n, 1);
        assert_same_tokens(&bm[b].hyps[0], &g[b].hyps[0]);
        assert_int_equal(bm[b].hyps[0].finish, g[b].hyps[0].finish);
        assert_true(fabs(bm[b].hyps[0].logprob - g[b].hyps[0].logprob) < 1e-9);
    }
    gen_output_free(bm, 3);
    gen_output_free(g, 3);
    model_free(&m);
}

typedef struct { int tokens[3]; double lp; } Seq3;
static int seq3_cmp(const void *a, const void *b) {
    double x = ((const Seq3 *)a)->lp, y = ((const Seq3 *)b)->lp;
    return x > y ? -1 : x < y;
}

// V = 5, 3 new tokens, W = 25 = V^2: beam search keeps every prefix, so its
// 25 hypotheses are exactly the 25 best of all 125 continuations.
static void test_gen_beam_exhaustive(void **state) {
    (void)state;
    enum { V = 5, L = 3, W = 25, NS = V * V * V };
    ModelConfig c = tiny_config(V, 4, 2, 0, 0, 0);
    Model m;
    tiny_model(&m, &c, 77);
    const int prompt[] = {1, 3};
    Seq3 all[NS];
    int seq[5] = {1, 3};
    float lg[V];
    for (int i = 0; i < NS; i++) {
        all[i].tokens[0] = i / 25; all[i].tokens[1] = i / 5 % 5; all[i].tokens[2] = i % 5;
        all[i].lp = 0;
        for (int t = 0; t < L; t++) {
            ref_logits(&m, seq, 2 + t, lg);
            all[i].lp += lg[all[i].tokens[t]] - logsumexp(lg, V);
            seq[2 + t] = all[i].tokens[t];
        }
    }
    qsort(all, NS, sizeof *all, seq3_cmp);
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = L;
    o.beams = W;
    GenOutput out[2];
    const int other[] = {4}, *ps[] = {prompt, other};
    const int lens[] = {2, 1};
    generate(&m, ps, lens, 2, &o, out);   // a second prompt in the batch must not disturb the first
    assert_int_equal(out[0].n, W);
    for (int i = 0; i < W; i++) {
        assert_int_equal(out[0].hyps[i].n, L);
        assert_memory_equal(out[0].hyps[i].tokens, all[i].tokens, sizeof(int) * L);
        assert_true(fabs(out[0].hyps[i].score - all[i].lp) < 1e-4);
        assert_true(fabs(out[0].hyps[i].logprob - all[i].lp) < 1e-4);
    }
    gen_output_free(out, 2);
    // length normalisation: score = logprob / n^alpha, best first
    o.beams = 4; o.length_alpha = 1.0f; o.eos_id = all[0].tokens[1];
    generate(&m, ps, lens, 2, &o, out);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < out[b].n; i++) {
            const GenHyp *h = &out[b].hyps[i];
            assert_true(fabs(h->score - h->logprob / h->n) < 1e-9);
            if (i > 0) assert_true(out[b].hyps[i - 1].score >= h->score);
        }
    gen_output_free(out, 2);
    model_free(&m);
}

// ---- CLI -----------------------------------------------------------------------

#define GTMP "build/test-tmp/gen"

static void test_gen_cli(void **state) {
    (void)state;
    char out[8192];
    assert_int_equal(run_capture("mkdir -p " GTMP, out, sizeof out), 0);
    write_file(GTMP "/m.ini", "[model]\nvocab_size = 64\ndim = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\n"
                              "ffn_dim = 48\nmax_seq_len = 32\n");
    assert_int_equal(run_capture("build/sprec init " GTMP "/m.ini -o " GTMP "/m.h5", out, sizeof out), 0);
    int rc = run_capture("build/sprec generate --model " GTMP "/m.h5 --prompt-ids \"1 2 3\" --max-new-tokens 5", out, sizeof out);
    if (rc != 0) print_message("%s\n", out);
    assert_int_equal(rc, 0);
    int n = 0;   // five ids printed
    for (char *p = out, *e; n < 8; p = e, n++) { strtol(p, &e, 10); if (e == p) break; }
    assert_int_equal(n, 5);
    rc = run_capture("build/sprec generate --model " GTMP "/m.h5 --prompt-ids \"1 2 3\" --beams 3 --max-new-tokens 4 --temperature 0.7 --seed 1", out, sizeof out);
    assert_int_equal(rc, 0);
    const char *bad[][2] = {
        {"--prompt-ids \"1 2\" --top-p 1.5", "top-p"},
        {"--prompt-ids \"1 2\" --max-new-tokens 0", "max-new-tokens"},
        {"--prompt-ids \"1 x\"", "prompt-ids"},
        {"--prompt-ids \"1 999\"", "999"},
        {"--prompt-ids \"1 2\" --bogus", "bogus"},
        {"--prompt hello", "no tokenizer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "build/sprec generate --model " GTMP "/m.h5 %s", bad[i][0]);
        rc = run_capture(cmd, out, sizeof out);
        const char *err = strstr(out, "sprec: error: ");
        if (rc != 1 || !err || !strstr(err, bad[i][1])) print_message("%s -> %d: %s\n", cmd, rc, out);
        assert_int_equal(rc, 1);
        assert_non_null(err);
        assert_non_null(strstr(err, bad[i][1]));
        const char *nl = strchr(err, '\n');
        assert_true(nl == NULL || nl[1] == 0);
    }
}

// With a tokenizer (the tiny imported Llama fixture): text prompts, a batch
// file whose sampled output does not depend on --batch-size, a stop string.
static void test_gen_cli_text(void **state) {
    (void)state;
    char out[8192], out2[8192];
    assert_int_equal(run_capture("mkdir -p " GTMP, out, sizeof out), 0);
    int rc = run_capture("build/sprec import tests/ref/import/llama_fp32/hf -o " GTMP "/tok.h5", out, sizeof out);
    if (rc != 0) print_message("%s\n", out);
    assert_int_equal(rc, 0);
    assert_int_equal(run_capture("build/sprec generate --model " GTMP "/tok.h5 --prompt 'hello world' --max-new-tokens 4",
                                 out, sizeof out), 0);
    write_file(GTMP "/prompts.txt", "first prompt\nthe second, longer prompt\n\nthird\n");
    const char *cmd = "build/sprec generate --model " GTMP "/tok.h5 --prompts " GTMP "/prompts.txt --max-new-tokens 5 "
                      "--temperature 1 --top-k 50 --seed 9 --ids";
    char full[512];
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    snprintf(full, sizeof full, "%s --batch-size 2", cmd);
    assert_int_equal(run_capture(full, out2, sizeof out2), 0);
    assert_string_equal(out, out2);   // same lines (each batch prints in finishing order; all run to length)
    assert_non_null(strstr(out, "2\t"));
    assert_null(strstr(out, "3\t"));   // the empty line is no prompt
    // a stop string (a character the unconstrained run prints at byte 7): the
    // output is cut at the token holding its first occurrence, stop kept
    const char *base = "build/sprec generate --model " GTMP "/tok.h5 --prompt 'a' --max-new-tokens 30 --no-bos";
    assert_int_equal(run_capture(base, out, sizeof out), 0);
    assert_true(strlen(out) > 8);
    char stop[2] = {out[7], 0};
    snprintf(full, sizeof full, "%s --stop '%s'", base, stop);
    assert_int_equal(run_capture(full, out2, sizeof out2), 0);
    size_t n = strlen(out2);
    assert_true(n >= 2 && out2[n - 1] == '\n' && n < strlen(out));
    assert_memory_equal(out2, out, n - 1);   // a prefix of the full output
    assert_true(strchr(out, stop[0]) - out < (long)n - 1);   // that contains the first occurrence
}


// ---- token selection ops (logits_lse_topk, gather_cols) -----------------------

typedef struct { float v; int id; } RankedTok;
static int ranked_tok_cmp(const void *pa, const void *pb) {
    const RankedTok *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

// the CPU twins against a naive double computation: ties (values on a coarse
// grid), -inf entries, a row of -inf only, a row with fewer finite entries than
// k, V a prime
static void test_gen_select_ops(void **state) {
    (void)state;
    const Backend *be = backend_cpu();
    rng_seed(&trng, 21);
    enum { N = 6, V = 1009, K = 7 };
    float *x = malloc(sizeof(float) * N * V);
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            float t = roundf(frnd() * 8.0f) / 2.0f;              // 17 levels: many ties
            if (n == 1 && v % 3 == 0) t = -INFINITY;
            if (n == 2) t = -INFINITY;                          // the whole row
            if (n == 3) t = v % 200 == 7 ? (float)(v % 3) : -INFINITY;   // 5 finite entries < K
            if (n == 5) t = frnd() * 30.0f;                     // no ties, wide range
            x[(size_t)n * V + v] = t;
        }
    double lse[N], lse0[N];
    int ti[N * K];
    float tv[N * K];
    for (int i = 0; i < N * K; i++) { ti[i] = -7; tv[i] = 7.0f; }
    be->logits_lse_topk(lse, ti, tv, x, N, V, K);
    be->logits_lse_topk(lse0, NULL, NULL, x, N, V, 0);   // k = 0: lse only
    RankedTok *all = malloc(sizeof(RankedTok) * V);
    for (int n = 0; n < N; n++) {
        const float *row = x + (size_t)n * V;
        // exactly host/gen/sampler.c's logsumexp; and a naive double reference
        assert_memory_equal(&lse[n], &lse0[n], sizeof(double));
        const double want = logsumexp(row, V);
        assert_memory_equal(&lse[n], &want, sizeof(double));
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, row[v]);
        if (mx == -INFINITY) assert_true(lse[n] == -INFINITY);
        else {
            for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
            assert_true(fabs(lse[n] - (mx + log(s))) < 1e-12 * fmax(1.0, fabs(lse[n])));
        }
        // top K: the finite entries sorted by (value desc, id asc), then -1 / -inf
        int nf = 0;
        for (int v = 0; v < V; v++) if (row[v] != -INFINITY) all[nf++] = (RankedTok){row[v], v};
        qsort(all, (size_t)nf, sizeof *all, ranked_tok_cmp);
        for (int i = 0; i < K; i++) {
            if (i < nf) {
                assert_int_equal(ti[n * K + i], all[i].id);
                assert_true(tv[n * K + i] == all[i].v);
            } else {
                assert_int_equal(ti[n * K + i], -1);
                assert_true(tv[n * K + i] == -INFINITY);
            }
        }
        // and the same as sampler.c's top_n
        int top[K];
        const int k = top_n(row, V, K, top);
        assert_int_equal(k, nf < K ? nf : K);
        assert_memory_equal(top, ti + n * K, sizeof(int) * (size_t)k);
    }
    // k larger than V: every finite entry, then padding
    {
        enum { V2 = 5, K2 = 8 };
        const float y[V2] = {1.0f, -INFINITY, 1.0f, 3.0f, -2.0f};
        double l;
        int id2[K2];
        float v2[K2];
        be->logits_lse_topk(&l, id2, v2, y, 1, V2, K2);
        const int want[K2] = {3, 0, 2, 4, -1, -1, -1, -1};
        assert_memory_equal(id2, want, sizeof want);
        assert_true(v2[0] == 3.0f && v2[3] == -2.0f && v2[4] == -INFINITY && v2[7] == -INFINITY);
    }
    // gather_cols: CSR lists, an empty row, repeated and boundary columns
    {
        const int off[N + 1] = {0, 3, 3, 4, 7, 8, 10};
        const int cols[10] = {0, V - 1, 500, 9, 3, 3, 7, 1008, 0, 1};
        float out[10];
        be->gather_cols(out, x, off, off, cols, N, V);   // src = off: consecutive slices
        for (int n = 0; n < N; n++)
            for (int j = off[n]; j < off[n + 1]; j++)
                assert_memory_equal(&out[j], &x[(size_t)n * V + cols[j]], sizeof(float));
        // slices anywhere in a table (a trie's child tokens): out of order, overlapping, shared
        const int src[N] = {6, 0, 2, 1, 9, 5};
        be->gather_cols(out, x, off, src, cols, N, V);
        for (int n = 0; n < N; n++)
            for (int j = off[n]; j < off[n + 1]; j++)
                assert_memory_equal(&out[j], &x[(size_t)n * V + cols[src[n] + j - off[n]]], sizeof(float));
    }
    free(x); free(all);
}

// generate()'s choices on the device ops == the choices on downloaded rows
// (the previous host loop: mask, argmax / top_n, logsumexp), bit for bit:
// greedy with a hook that returns unsorted, repeated and out-of-range ids,
// only out-of-range ids (argmax of an all -inf row: token 0) or no constraint, prompts prefilled in 2-row chunks (the staged prefill)
static int allow_messy(void *ctx, int seq, const int *gen, int n, int *out, int cap) {
    (void)ctx; (void)gen;
    if ((seq + n) % 3 == 2) return -1;                    // no constraint this step
    if (seq == 0 && n == 4) { out[0] = 50; out[1] = -1; return 2; }   // nothing in range: token 0
    const int ids[] = {31, 45, 4, 31, -2, 17, 9, 4, 26, 1000};
    int k = 0;
    for (int i = 0; i < 10 && k < cap; i++) out[k++] = (ids[i] + 5 * n) % 1000 == ids[i] + 5 * n ? ids[i] + 5 * n : ids[i];
    return k;
}

static void test_gen_select_matches_host_choice(void **state) {
    (void)state;
    ModelConfig c = tiny_config(40, 4, 2, 1, 0, 0);
    Model m;
    rng_seed(&trng, 8);
    tiny_model(&m, &c, 5);
    const int V = 40, STEPS = 6, B = 3;
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = STEPS;
    o.allowed = allow_messy;
    o.prefill_rows = 2;
    GenOutput g[3];
    generate(&m, PROMPTS, LENS, B, &o, g);
    // the reference: decoder rows downloaded, the host choice of the old loop
    Decoder d;
    decoder_create(&d, &m, B, 24, 2);
    float *lg = malloc(sizeof(float) * B * V), row[40];
    int ids[40], gen[3][8], ng[3] = {0, 0, 0}, next[3], n_new[3] = {1, 1, 1};
    unsigned char mark[40] = {0};
    double lp[3] = {0, 0, 0};
    decoder_prefill(&d, PROMPTS, LENS, B, lg);
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < B; b++) {
            memcpy(row, lg + (size_t)b * V, sizeof row);
            const int k = allow_messy(NULL, b, gen[b], ng[b], ids, V);
            if (k > 0) mask_allowed(row, V, ids, k, mark);
            const int t = sample_argmax(row, V);
            lp[b] += lg[(size_t)b * V + t] - logsumexp(lg + (size_t)b * V, V);
            gen[b][ng[b]++] = next[b] = t;
        }
        if (step + 1 < STEPS) decoder_step(&d, next, n_new, B, 1, lg);
    }
    for (int b = 0; b < B; b++) {
        assert_int_equal(g[b].hyps[0].n, STEPS);
        assert_memory_equal(g[b].hyps[0].tokens, gen[b], sizeof(int) * STEPS);
        assert_memory_equal(&g[b].hyps[0].logprob, &lp[b], sizeof(double));
    }
    decoder_free(&d);
    free(lg);
    gen_output_free(g, B);
    model_free(&m);
}

// ---- LoRA adapters in the decode step --------------------------------------------

// Generation with adapters == generation on the model with them merged
// (model_merge_lora on a copy): the same greedy and beam tokens, log-probs and
// scores equal to rounding: measured max difference 6.0e-6 (fp32) on sums of
// up to 8 log-probs of magnitude ~10 (on cpu-bf16 the tokens agree too, the
// scores by up to 0.26: bf16(W + sBA) is not bf16(W) + bf16's adapter path).
static void test_gen_lora_matches_merged(void **state) {
    (void)state;
    const ModelConfig c = tiny_config(40, 4, 2, 1, 0, 0);
    Model m, mm;
    rng_seed(&trng, 3);
    tiny_model(&m, &c, 17);
    rng_seed(&trng, 3);
    tiny_model(&mm, &c, 17);
    tiny_lora(&m, 0.1f);
    tiny_lora(&mm, 0.1f);
    model_merge_lora(&mm);
    assert_null(mm.lora);
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = 8;
    double worst = 0;
    for (int beams = 0; beams <= 4; beams += 4) {
        o.beams = beams;
        GenOutput a[3], b[3];
        generate(&m, PROMPTS, LENS, 3, &o, a);
        generate(&mm, PROMPTS, LENS, 3, &o, b);
        for (int p = 0; p < 3; p++) {
            assert_int_equal(a[p].n, b[p].n);
            for (int i = 0; i < a[p].n; i++) {
                assert_same_tokens(&a[p].hyps[i], &b[p].hyps[i]);
                assert_int_equal(a[p].hyps[i].finish, b[p].hyps[i].finish);
                worst = fmax(worst, fabs(a[p].hyps[i].logprob - b[p].hyps[i].logprob));
                worst = fmax(worst, fabs(a[p].hyps[i].score - b[p].hyps[i].score));
            }
        }
        gen_output_free(a, 3);
        gen_output_free(b, 3);
    }
    print_message("  LoRA vs merged: same tokens, max log-prob/score difference %.2e\n", worst);
    assert_true(worst < 1e-4);
    model_free(&m);
    model_free(&mm);
}

// Generating between a training forward (LoRA dropout on) and its backward
// leaves the backward's result bit-identical (decoding keeps its own buffers,
// never the adapters' kept activations, whatever its row count), and decoding
// applies no dropout even while lora_set_train says training.
static void test_gen_lora_between_forward_and_backward(void **state) {
    (void)state;
    const ModelConfig c = tiny_config(40, 4, 2, 1, 0, 0);
    Model m;
    rng_seed(&trng, 4);
    tiny_model(&m, &c, 23);
    tiny_lora(&m, 0.25f);
    int tok[2 * 5] = {3, 1, 4, 1, 5, 2, 6, 5, 0, 0}, len[2] = {5, 3};
    float mask[2 * 5];
    for (int i = 0; i < 10; i++) mask[i] = 1.0f;
    const Batch bt = {.B = 2, .T = 5, .tokens = tok, .mask = mask, .lengths = len};
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = 6;
    o.beams = 3;
    GenOutput g0[3], g1[3];
    generate(&m, PROMPTS, LENS, 3, &o, g0);   // not training: no dropout
    const size_t G = m.lora->numel;
    float *grads = malloc(G * sizeof(float)), lp[8], w[8];
    for (int pass = 0; pass < 2; pass++) {
        lora_set_train(&m, 1, 5);
        const int n = model_forward(&m, &bt, 0);
        assert_int_equal(n, 6);
        if (pass == 0) memcpy(lp, m.head_lp, sizeof(float) * n);
        else assert_memory_equal(lp, m.head_lp, sizeof(float) * n);
        if (pass == 1) generate(&m, PROMPTS, LENS, 3, &o, g1);   // 4096-row decode scratch > the forward's 10 rows
        for (int i = 0; i < n; i++) w[i] = 1.0f;
        model_zero_grad(&m);
        model_backward(&m, w);
        if (pass == 0) memcpy(grads, m.lora->grads, G * sizeof(float));
    }
    assert_memory_equal(grads, m.lora->grads, G * sizeof(float));
    for (int p = 0; p < 3; p++) {
        assert_int_equal(g0[p].n, g1[p].n);
        for (int i = 0; i < g0[p].n; i++) {
            assert_same_tokens(&g0[p].hyps[i], &g1[p].hyps[i]);
            assert_memory_equal(&g0[p].hyps[i].score, &g1[p].hyps[i].score, sizeof(double));
        }
    }
    gen_output_free(g0, 3);
    gen_output_free(g1, 3);
    free(grads);
    model_free(&m);
}

DEFINE_TEST_GROUP(test_generate,
    cmocka_unit_test(test_gen_ops),
    cmocka_unit_test(test_gen_select_ops),
    cmocka_unit_test(test_gen_select_matches_host_choice),
    cmocka_unit_test(test_gen_cache_matches_full_forward),
    cmocka_unit_test(test_gen_lora_cache_matches_forward),
    cmocka_unit_test(test_gen_lora_matches_merged),
    cmocka_unit_test(test_gen_lora_between_forward_and_backward),
    cmocka_unit_test(test_gen_greedy_and_sampling),
    cmocka_unit_test(test_gen_sampling_matches_rows),
    cmocka_unit_test(test_sampler_sparse_and_topk_decided),
    cmocka_unit_test(test_gen_stops_and_allowed),
    cmocka_unit_test(test_gen_beam_width_one_is_greedy),
    cmocka_unit_test(test_gen_beam_exhaustive),
    cmocka_unit_test(test_gen_cli),
    cmocka_unit_test(test_gen_cli_text),
)
