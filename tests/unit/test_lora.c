// LoRA: the dropout/scale backend ops, B = 0 leaves the model unchanged,
// adapter gradients against central finite differences of the full model
// loss, training moves only the adapters and memorises a toy set, merging
// preserves the forward, checkpoints round-trip bit-exactly, and export
// writes merged weights (re-imported and compared with the unmerged model).
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "model/lora.h"
#include "io/checkpoint.h"
#include "model/optimizer.h"
#include "model/device.h"
#include "base/rng.h"
#include "base/h5io.h"

#define TMP "build/test-tmp"

static const ModelConfig TINY = {
    .vocab_size = 16, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4, .ffn_dim = 24,
    .max_seq_len = 16, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 0,
    .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f, .rope_original_max_pos = 8192,
};

enum { BB = 3, TT = 8 };

typedef struct { int tokens[BB * TT]; float mask[BB * TT]; int lengths[BB]; Batch b; } TestBatch;

static void make_batch(TestBatch *tb, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < BB * TT; i++) { tb->tokens[i] = (int)rng_below(&r, 16); tb->mask[i] = 1.0f; }
    tb->lengths[0] = TT; tb->lengths[1] = TT - 2; tb->lengths[2] = TT;
    tb->b = (Batch){.B = BB, .T = TT, .tokens = tb->tokens, .mask = tb->mask, .lengths = tb->lengths};
}

static void make_model(Model *m, uint64_t seed) {
    model_create(m, &TINY, backend_cpu());
    model_init_random(m, seed, 0.2f);
}

static LoraConfig lcfg(float dropout) {
    return (LoraConfig){.rank = 4, .alpha = 8.0f, .dropout = dropout, .targets = LORA_TARGETS_ALL, .seed = 11};
}

// sets every B to N(0, std): B = 0 would make the gradients of A zero
static void randomize_b(Model *m, uint64_t seed, float std) {
    Rng r;
    rng_seed(&r, seed);
    Lora *lo = m->lora;
    for (int i = 0; i < lo->n_params; i++) {
        const ParamInfo *p = &lo->table[i];
        if (!strstr(p->name, "lora_B")) continue;
        for (size_t j = 0; j < p->numel; j++) lo->params[p->offset + j] = std * (float)rng_normal(&r);
    }
    lora_sync_compute(m);
}

// -sum of the scored log-probs, accumulated in double
static double loss_of(Model *m, const Batch *b) {
    model_sync_compute(m);   // the caller may have perturbed the master weights
    int n = model_forward(m, b, 0);
    double s = 0;
    for (int i = 0; i < n; i++) s -= m->head_lp[i];
    return s;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_lora_ops(void **state) {
    (void)state;
    const Backend *be = backend_cpu();
    const size_t n = 100000;
    float *x = be->alloc(n * sizeof(float)), *y = be->alloc(n * sizeof(float)), *y2 = be->alloc(n * sizeof(float));
    float *d = be->alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1.0f + (float)(i % 7);
    be->dropout_fwd(y, x, n, 0.3f, 42);
    be->dropout_fwd(y2, x, n, 0.3f, 42);
    assert_memory_equal(y, y2, n * sizeof(float));              // deterministic
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (y[i] != 0.0f) { kept++; assert_true(y[i] == x[i] * (1.0f / 0.7f)); }
    }
    assert_true(fabs((double)kept / n - 0.7) < 0.01);
    be->dropout_fwd(y2, x, n, 0.3f, 43);
    assert_true(memcmp(y, y2, n * sizeof(float)) != 0);         // another key, another mask
    for (size_t i = 0; i < n; i++) d[i] = 1.0f;
    be->dropout_bwd(d, x, n, 0.3f, 42);                          // adds, with the forward's mask
    for (size_t i = 0; i < n; i++) assert_true(d[i] == 1.0f + y[i]);
    be->dropout_fwd(y, x, n, 0.0f, 42);                          // p = 0: identity
    assert_memory_equal(y, x, n * sizeof(float));
    be->scale(y, 0.5f, n);
    for (size_t i = 0; i < n; i++) assert_true(y[i] == 0.5f * x[i]);
    be->free(x); be->free(y); be->free(y2); be->free(d);

    unsigned t;
    char err[128];
    assert_int_equal(lora_parse_targets("q,v", &t, err, sizeof err), 0);
    assert_int_equal(t, (1u << LORA_Q) | (1u << LORA_V));
    assert_int_equal(lora_parse_targets("all", &t, err, sizeof err), 0);
    assert_int_equal(t, LORA_TARGETS_ALL);
    assert_int_equal(lora_parse_targets("q,foo", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "foo"));
    char s[64];
    lora_targets_str(LORA_TARGETS_ALL, s, sizeof s);
    assert_string_equal(s, "q,k,v,o,gate,up,down");
}

// B = 0 at initialisation: the adapted model is the base model, bit for bit
// (with dropout active too); A follows PEFT's U(-1/sqrt(in), 1/sqrt(in)).
static void test_lora_zero_init_identity(void **state) {
    (void)state;
    Model m;
    TestBatch tb;
    make_model(&m, 5);
    make_batch(&tb, 6);
    int n = model_forward(&m, &tb.b, 1);
    float *base = malloc((size_t)n * sizeof(float));
    memcpy(base, m.head_lp, (size_t)n * sizeof(float));
    LoraConfig c = lcfg(0.1f);
    model_enable_lora(&m, &c);
    lora_set_train(&m, 1, 0);
    assert_int_equal(model_forward(&m, &tb.b, 1), n);
    assert_memory_equal(base, m.head_lp, (size_t)n * sizeof(float));
    Lora *lo = m.lora;
    assert_int_equal(lo->n_params, 2 * LORA_N_TARGETS * TINY.n_layers);
    assert_string_equal(lo->table[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    assert_string_equal(lo->table[13].name, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    for (int i = 0; i < lo->n_params; i++) {
        const ParamInfo *p = &lo->table[i];
        int is_a = strstr(p->name, "lora_A") != NULL;
        assert_int_equal(p->shape[is_a ? 0 : 1], c.rank);
        double bound = 1.0 / sqrt(p->shape[1]), maxabs = 0;
        for (size_t j = 0; j < p->numel; j++) maxabs = fmax(maxabs, fabs(lo->params[p->offset + j]));
        if (is_a) assert_true(maxabs <= bound && maxabs > 0.5 * bound);
        else assert_true(maxabs == 0.0);
    }
    free(base);
    model_free(&m);
}

// Adapter gradients against central differences of the whole model's loss
// (float32 forward, double accumulation of the loss), with and without dropout
// (the mask is fixed by the micro-batch key, so the loss is a smooth function).
// The base stays frozen: its gradient buffer is never written.
static void test_lora_gradients_fd(void **state) {
    (void)state;
    const float dropouts[2] = {0.0f, 0.25f};
    for (int k = 0; k < 2; k++) {
        Model m;
        TestBatch tb;
        make_model(&m, 7);
        make_batch(&tb, 8);
        LoraConfig c = lcfg(dropouts[k]);
        model_enable_lora(&m, &c);
        randomize_b(&m, 9, 0.3f);
        lora_set_train(&m, 1, 3);
        Lora *lo = m.lora;
        model_zero_grad(&m);
        int n = model_forward(&m, &tb.b, 0);
        float *w = malloc((size_t)n * sizeof(float));
        for (int i = 0; i < n; i++) w[i] = 1.0f;
        model_backward(&m, w);
        free(w);
        for (size_t i = 0; i < m.numel; i++) assert_true(m.grads[i] == 0.0f);
        double num = 0, den = 0, worst = 0;
        Rng r;
        rng_seed(&r, 10);
        for (int i = 0; i < lo->n_params; i++) {
            const ParamInfo *p = &lo->table[i];
            // the largest-gradient entry plus two random ones per tensor
            size_t idx[3] = {0, rng_below(&r, p->numel), rng_below(&r, p->numel)};
            for (size_t j = 0; j < p->numel; j++)
                if (fabsf(lo->grads[p->offset + j]) > fabsf(lo->grads[p->offset + idx[0]])) idx[0] = j;
            for (int s = 0; s < 3; s++) {
                float *x = &lo->params[p->offset + idx[s]];
                const float x0 = *x, h = 1e-2f;
                // central differences at h and h/2, Richardson-extrapolated (error O(h^4))
                double d[2];
                for (int q = 0; q < 2; q++) {
                    const float hq = q ? h / 2 : h;
                    *x = x0 + hq; double lp = loss_of(&m, &tb.b);
                    *x = x0 - hq; double lm = loss_of(&m, &tb.b);
                    d[q] = (lp - lm) / ((double)(x0 + hq) - (double)(x0 - hq));
                }
                *x = x0;
                double fd = (4.0 * d[1] - d[0]) / 3.0;
                double g = lo->grads[p->offset + idx[s]];
                num += (fd - g) * (fd - g);
                den += g * g;
                double we = fabs(fd - g) / (fabs(g) + 1e-2);
                if (we > worst) { worst = we; if (getenv("LORA_FD_DEBUG")) print_message("  %s[%zu] g %.6g fd %.6g\n", p->name, idx[s], g, fd); }
            }
        }
        double e = sqrt(num / den);
        print_message("  LoRA dropout %.2f: gradient vs central differences, relative error %.2e (worst entry %.2e)\n",
                      dropouts[k], e, worst);
        assert_true(e < 2e-4);
        model_free(&m);
    }
}

// AdamW on the adapters memorises a toy batch; the base weights do not move.
static void test_lora_training(void **state) {
    (void)state;
    Model m;
    TestBatch tb;
    // a frozen random head bounds the logits by ||lm_head row|| * ||rmsnorm output||:
    // std 0.5 leaves room to memorise
    model_create(&m, &TINY, backend_cpu());
    model_init_random(&m, 12, 0.5f);
    make_batch(&tb, 13);
    LoraConfig c = lcfg(0.05f);
    c.rank = 8;
    c.alpha = 16;
    model_enable_lora(&m, &c);
    float *base = malloc(m.numel * sizeof(float)), *adapters = malloc(m.lora->numel * sizeof(float));
    memcpy(base, m.params, m.numel * sizeof(float));
    memcpy(adapters, m.lora->params, m.lora->numel * sizeof(float));
    AdamW opt;
    adamw_create(&opt, &m, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0);
    assert_int_equal(opt.numel, m.lora->numel);
    double first = 0, last = 0;
    for (int step = 0; step < 200; step++) {
        lora_set_train(&m, 1, (uint64_t)step);
        model_zero_grad(&m);
        int n = model_forward(&m, &tb.b, 0);
        double loss = 0;
        float w[BB * TT];
        for (int i = 0; i < n; i++) { loss -= m.head_lp[i]; w[i] = 1.0f / n; }
        loss /= n;
        model_backward(&m, w);
        adamw_step(&opt, &m, 1e-2f);
        if (step == 0) first = loss;
        last = loss;
    }
    lora_set_train(&m, 0, 0);
    print_message("  LoRA r=8 on a toy batch: loss %.4f -> %.4f\n", first, last);
    assert_true(first > 2.0);
    assert_true(last < 0.1 * first);
    assert_memory_equal(base, m.params, m.numel * sizeof(float));
    assert_true(memcmp(adapters, m.lora->params, m.lora->numel * sizeof(float)) != 0);
    adamw_free(&opt, &m);
    free(base); free(adapters);
    model_free(&m);
}

// merge: forward of the merged model equals the adapted one (rel 1e-6)
static void test_lora_merge(void **state) {
    (void)state;
    Model m;
    TestBatch tb;
    make_model(&m, 14);
    make_batch(&tb, 15);
    LoraConfig c = lcfg(0.05f);
    c.targets = LORA_TARGETS_ALL & ~(1u << LORA_K);   // a subset too
    model_enable_lora(&m, &c);
    randomize_b(&m, 16, 0.2f);
    const size_t nl = (size_t)BB * TT * TINY.vocab_size;
    float *before = malloc(nl * sizeof(float)), *after = malloc(nl * sizeof(float));
    model_forward(&m, &tb.b, 1);            // training off: no dropout
    model_logits(&m, &tb.b, before);
    float *wk = malloc((size_t)8 * 16 * sizeof(float));
    memcpy(wk, m.master.layers[1].wk, (size_t)8 * 16 * sizeof(float));
    float *wq = malloc((size_t)16 * 16 * sizeof(float));
    memcpy(wq, m.master.layers[1].wq, (size_t)16 * 16 * sizeof(float));
    model_merge_lora(&m);
    assert_null(m.lora);
    assert_memory_equal(wk, m.master.layers[1].wk, (size_t)8 * 16 * sizeof(float));   // not targeted
    assert_true(memcmp(wq, m.master.layers[1].wq, (size_t)16 * 16 * sizeof(float)) != 0);
    model_forward(&m, &tb.b, 1);
    model_logits(&m, &tb.b, after);
    double e = rel_err(after, before, nl);
    print_message("  merged vs adapted logits: relative error %.2e\n", e);
    assert_true(e < 1e-6);
    free(before); free(after); free(wk); free(wq);
    model_free(&m);
}

static void load_wrong_config(void *arg) {
    Model m;
    make_model(&m, 1);
    LoraConfig c = lcfg(0.05f);
    c.rank = 2;
    model_enable_lora(&m, &c);
    checkpoint_load((const char *)arg, &m, NULL, NULL);
}

// Save with optimizer state, reload: adapters, moments and step bit-exact;
// a model-only load into a plain model enables LoRA from the file.
static void test_lora_checkpoint_roundtrip(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP);
    const char *path = TMP "/lora-ckpt.h5";
    Model m;
    TestBatch tb;
    make_model(&m, 17);
    make_batch(&tb, 18);
    LoraConfig c = lcfg(0.05f);
    model_enable_lora(&m, &c);
    AdamW opt;
    adamw_create(&opt, &m, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 0);
    for (int step = 0; step < 3; step++) {
        lora_set_train(&m, 1, (uint64_t)step);
        model_zero_grad(&m);
        int n = model_forward(&m, &tb.b, 0);
        float w[BB * TT];
        for (int i = 0; i < n; i++) w[i] = 1.0f;
        model_backward(&m, w);
        adamw_step(&opt, &m, 1e-2f);
    }
    TrainState st = {.step = 3, .epoch = 0, .epoch_pos = 3, .last_loss = 1.5};
    snprintf(st.stage, sizeof st.stage, "sft");
    checkpoint_save(path, &m, &opt, &st);

    Model m2;
    make_model(&m2, 99);
    model_enable_lora(&m2, &c);
    AdamW opt2;
    adamw_create(&opt2, &m2, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 0);
    TrainState st2 = {0};
    assert_int_equal(checkpoint_load(path, &m2, &opt2, &st2), 1);
    assert_int_equal(opt2.step, 3);
    assert_memory_equal(m.params, m2.params, m.numel * sizeof(float));
    assert_memory_equal(m.lora->params, m2.lora->params, m.lora->numel * sizeof(float));
    assert_memory_equal(opt.m, opt2.m, opt.numel * sizeof(float));
    assert_memory_equal(opt.v, opt2.v, opt.numel * sizeof(float));
    adamw_free(&opt2, &m2);
    model_free(&m2);

    Model m3;   // plain model: the file's /lora enables the adapters
    make_model(&m3, 98);
    assert_int_equal(checkpoint_load(path, &m3, NULL, NULL), 1);
    assert_non_null(m3.lora);
    assert_int_equal(m3.lora->cfg.rank, c.rank);
    assert_true(m3.lora->cfg.alpha == c.alpha && m3.lora->cfg.dropout == c.dropout);
    assert_int_equal(m3.lora->cfg.targets, c.targets);
    assert_memory_equal(m.lora->params, m3.lora->params, m.lora->numel * sizeof(float));
    model_free(&m3);

    char err[2048];
    int rc = run_forked(load_wrong_config, (void *)path, err, sizeof err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "LoRA config mismatch"));
    adamw_free(&opt, &m);
    model_free(&m);
}

// export merges: re-importing the exported folder gives the adapted model's
// log-probs without any adapters.
static void test_lora_export_merged(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/lora-export " TMP "/lora-reimport.h5");
    Model m;
    TestBatch tb;
    make_model(&m, 19);
    make_batch(&tb, 20);
    LoraConfig c = lcfg(0.05f);
    model_enable_lora(&m, &c);
    randomize_b(&m, 21, 0.2f);
    checkpoint_save(TMP "/lora-export.h5", &m, NULL, NULL);
    int n = model_forward(&m, &tb.b, 1);
    float *ref = malloc((size_t)n * sizeof(float));
    memcpy(ref, m.head_lp, (size_t)n * sizeof(float));
    model_free(&m);

    char out[4096];
    int rc = run_capture("build/sprec export " TMP "/lora-export.h5 -o " TMP "/lora-export", out, sizeof out);
    if (rc) print_message("%s\n", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "LoRA merged"));
    run_ok("build/sprec import " TMP "/lora-export -o " TMP "/lora-reimport.h5");
    Model m2;
    model_create(&m2, &TINY, backend_cpu());
    checkpoint_load(TMP "/lora-reimport.h5", &m2, NULL, NULL);
    assert_null(m2.lora);
    assert_int_equal(model_forward(&m2, &tb.b, 1), n);
    double e = rel_err(m2.head_lp, ref, (size_t)n);
    print_message("  exported (merged) vs adapted log-probs: relative error %.2e\n", e);
    assert_true(e < 1e-6);
    free(ref);
    model_free(&m2);
}

// Against PyTorch PEFT (tests/ref/make_lora_fixtures.py): a base model plus
// adapters with non-zero B; logits, log-probs and loss of the masked-mean
// loss, and the gradient of every adapter, relative error < 1e-4.
static void check_peft_fixture(const char *dir) {
    char model[512], batch[512], expected[512];
    snprintf(model, sizeof model, "%.400s/model.h5", dir);
    snprintf(batch, sizeof batch, "%.400s/batch.h5", dir);
    snprintf(expected, sizeof expected, "%.400s/expected.h5", dir);
    ModelConfig mc;
    checkpoint_read_config(model, &mc);
    Model m;
    model_create(&m, &mc, backend_cpu());
    checkpoint_load(model, &m, NULL, NULL);
    assert_non_null(m.lora);
    Lora *lo = m.lora;

    hid_t fb = h5_open_read(batch), fe = h5_open_read(expected);
    long dt[2] = {-1, -1}, dm[2] = {-1, -1}, dl[1] = {-1};
    int *tokens = h5_read_i32(fb, batch, "tokens", 2, dt);
    float *mask = h5_read_f32(fb, batch, "mask", 2, dm);
    int *lengths = h5_read_i32(fb, batch, "lengths", 1, dl);
    const int B = (int)dt[0], T = (int)dt[1], V = mc.vocab_size;
    Batch b = {.B = B, .T = T, .tokens = tokens, .mask = mask, .lengths = lengths};
    model_zero_grad(&m);
    int n = model_forward(&m, &b, 0);
    double msum = 0, wsum = 0;
    for (int i = 0; i < n; i++) { msum += mask[m.head_pos[i]]; wsum += (double)mask[m.head_pos[i]] * m.head_lp[i]; }
    float *w = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) w[i] = (float)(mask[m.head_pos[i]] / msum);
    float *logits = malloc((size_t)B * T * V * sizeof(float));
    model_logits(&m, &b, logits);
    model_backward(&m, w);

    long dd[3] = {B, T, V};
    float *ref_logits = h5_read_f32(fe, expected, "logits", 3, dd);
    double worst = rel_err(logits, ref_logits, (size_t)B * T * V);
    long d0[1] = {0};
    float *ref_loss = h5_read_f32(fe, expected, "loss", 0, d0);
    double loss_err = fabs(-wsum / msum - ref_loss[0]) / fabs(ref_loss[0]);
    if (loss_err > worst) worst = loss_err;
    double worst_grad = 0;
    char worst_name[MAX_PARAM_NAME] = "";
    for (int i = 0; i < lo->n_params; i++) {
        const ParamInfo *p = &lo->table[i];
        char name[160];
        snprintf(name, sizeof name, "grad/%s", p->name);
        long d[2] = {p->shape[0], p->shape[1]};
        float *ref = h5_read_f32(fe, expected, name, 2, d);
        double e = rel_err(lo->grads + p->offset, ref, p->numel);
        if (e > worst_grad) { worst_grad = e; snprintf(worst_name, sizeof worst_name, "%s", p->name); }
        free(ref);
    }
    print_message("  %-22s %d adapters: logits/loss %.2e, worst adapter gradient %.2e (%s)\n", strrchr(dir, '/') + 1,
                  lo->n_params, worst, worst_grad, worst_name);
    assert_true(worst < 1e-4);
    assert_true(worst_grad < 1e-4);
    for (size_t i = 0; i < m.numel; i++) assert_true(m.grads[i] == 0.0f);
    free(ref_logits); free(ref_loss); free(logits); free(w); free(tokens); free(mask); free(lengths);
    h5_close(fb); h5_close(fe);
    model_free(&m);
}

static void test_lora_peft_fixtures(void **state) {
    (void)state;
    const char *root = "tests/ref/lora";
    DIR *d = opendir(root);
    if (!d) fail_msg("no fixtures in %s (run python3 tests/ref/make_lora_fixtures.py)", root);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%.200s", root, e->d_name);
        check_peft_fixture(dir);
        n++;
    }
    closedir(d);
    assert_true(n >= 3);
}

DEFINE_TEST_GROUP(test_lora,
    cmocka_unit_test(test_lora_peft_fixtures),
    cmocka_unit_test(test_lora_ops),
    cmocka_unit_test(test_lora_zero_init_identity),
    cmocka_unit_test(test_lora_gradients_fd),
    cmocka_unit_test(test_lora_training),
    cmocka_unit_test(test_lora_merge),
    cmocka_unit_test(test_lora_checkpoint_roundtrip),
    cmocka_unit_test(test_lora_export_merged))
