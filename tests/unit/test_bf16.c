// bf16 act storage (kernels/backend.h), the CUDA backend's numerics, checked
// on the CPU through `--device cpu-bf16`: the rounding itself against hand
// cases, the host's act transfers, and whole-model behaviour against the fp32
// CPU backend (forward/backward, training, decode, checkpoints). The float64
// Hugging Face comparison is in test_reference.c.
#include <math.h>
#include <string.h>
#include "tests.h"
#include "model/act.h"
#include "io/checkpoint.h"
#include "gen/generate.h"
#include "model/model.h"
#include "model/optimizer.h"
#include "base/rng.h"
#include "kernels/cpu/checked.h"
#include <stddef.h>

#define TMP "build/test-tmp/bf16"

static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

// Every op slot of the CPU-side backends is filled (the static assertions in
// checked.c and bf16_emulated.c count the ops; this catches a counted but
// forgotten initialiser). mem_stats is optional and NULL on host memory.
static void test_bf16_backend_tables_complete(void **state) {
    (void)state;
    const Backend *bes[] = {backend_cpu(), backend_cpu_checked(), backend_cpu_bf16()};
    const size_t first = offsetof(Backend, alloc), n = (sizeof(Backend) - first) / sizeof(void (*)(void));
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < n; i++) {
            const size_t at = first + i * sizeof(void (*)(void));
            if (at == offsetof(Backend, mem_stats)) continue;
            void (*fp)(void);
            memcpy(&fp, (const char *)bes[k] + at, sizeof fp);
            if (!fp) print_message("%s: op slot %zu (byte %zu) is NULL\n", bes[k]->name, i, at);
            assert_non_null(fp);
        }
}

// Hand-computed: bf16 keeps the top 16 bits, rounding the low 16 to nearest, ties to even.
static void test_bf16_rounding(void **state) {
    (void)state;
    assert_int_equal(bf16_from_f32(1.0f), 0x3f80);
    assert_int_equal(bf16_from_f32(-2.0f), 0xc000);
    assert_int_equal(bf16_from_f32(float_of(0x3f807fff)), 0x3f80);   // below half: down
    assert_int_equal(bf16_from_f32(float_of(0x3f808001)), 0x3f81);   // above half: up
    assert_int_equal(bf16_from_f32(float_of(0x3f808000)), 0x3f80);   // tie, even stays
    assert_int_equal(bf16_from_f32(float_of(0x3f818000)), 0x3f82);   // tie, odd rounds up to even
    assert_int_equal(bf16_from_f32(float_of(0x3fff8000)), 0x4000);   // carry into the exponent
    assert_int_equal(bf16_from_f32(INFINITY), 0x7f80);
    assert_int_equal(bf16_from_f32(-INFINITY), 0xff80);
    assert_int_equal(bf16_from_f32(float_of(0x7f7fffff)), 0x7f80);   // FLT_MAX rounds to infinity
    assert_true(isnan(f32_from_bf16(bf16_from_f32(NAN))));
    assert_true(isnan(f32_from_bf16(bf16_from_f32(float_of(0x7f800001)))));   // a NaN whose top bits look infinite
    assert_int_equal(bf16_from_f32(float_of(0x00000001)), 0x0000);   // tiny denormal to zero
    assert_true(f32_from_bf16(0x3f80) == 1.0f);
    assert_true(bits_of(f32_from_bf16(0xbf81)) == 0xbf810000u);
    // 3.14159265 = 0x40490fdb -> 0x4049 (low half 0x0fdb < 0x8000)
    assert_int_equal(bf16_from_f32(3.14159265f), 0x4049);
}

// act_upload rounds, act_download widens exactly; fp32 backends are the identity.
static void test_bf16_act_transfer(void **state) {
    (void)state;
    const size_t n = 3000;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    Rng r;
    rng_seed(&r, 5);
    for (size_t i = 0; i < n; i++) x[i] = (float)(rng_normal(&r) * 10.0);
    const Backend *bes[] = {backend_cpu(), backend_cpu_bf16()};
    for (int k = 0; k < 2; k++) {
        const Backend *be = bes[k];
        assert_int_equal(be->act_bytes, k ? 2 : 4);
        void *d = act_alloc(be, n);
        act_upload(be, d, x, n);
        act_download(be, y, d, n);
        for (size_t i = 0; i < n; i++) assert_true(bits_of(y[i]) == bits_of(act_round(be, x[i])));
        if (k) assert_true(memcmp(x, y, n * sizeof(float)) != 0);
        // act_from_f32 (the compute copy of the weights) rounds the same way
        float *src = be->alloc(n * sizeof(float));
        be->upload(src, x, n * sizeof(float));
        be->act_from_f32(d, src, n);
        act_download(be, y, d, n);
        for (size_t i = 0; i < n; i++) assert_true(bits_of(y[i]) == bits_of(act_round(be, x[i])));
        be->free(src);
        be->free(d);
    }
    free(x); free(y);
}

static const ModelConfig TINY = {.vocab_size = 61, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                 .head_dim = 8, .ffn_dim = 48, .max_seq_len = 24, .rope_theta = 10000.0f,
                                 .rms_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1};

enum { BB = 3, TT = 12 };
static int tok[BB * TT], lens[BB] = {12, 9, 5};
static float mask[BB * TT];
static Batch tiny_batch(void) {
    Rng r;
    rng_seed(&r, 17);
    for (int i = 0; i < BB * TT; i++) {
        tok[i] = (int)rng_below(&r, TINY.vocab_size);
        mask[i] = i % TT >= 2 ? 1.0f : 0.0f;
    }
    return (Batch){.B = BB, .T = TT, .tokens = tok, .mask = mask, .lengths = lens};
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return sqrt(num / (den > 0 ? den : 1));
}

// One forward + backward of the mean masked -log p; returns the loss.
static double step_loss(Model *m, const Batch *b) {
    int n = model_forward(m, b, 0);
    double loss = 0;
    float *w = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) { loss -= m->head_lp[i]; w[i] = 1.0f / (float)n; }
    model_zero_grad(m);
    model_backward(m, w);
    free(w);
    return loss / n;
}

// Same weights on both devices: log-probs and every gradient agree to bf16
// precision, and differ (the bf16 run really rounds).
static void test_bf16_forward_backward_vs_fp32(void **state) {
    (void)state;
    Model a, b;
    model_create(&a, &TINY, backend_cpu());
    model_create(&b, &TINY, backend_cpu_bf16());
    model_init_random(&a, 3, 0.2f);
    model_init_random(&b, 3, 0.2f);
    assert_memory_equal(a.params, b.params, a.numel * sizeof(float));   // masters are fp32 on both
    Batch bt = tiny_batch();
    double la = step_loss(&a, &bt), lb = step_loss(&b, &bt);
    const int n = a.n_head;
    assert_int_equal(n, b.n_head);
    const double e_lp = rel_err(b.head_lp, a.head_lp, (size_t)n), e_g = rel_err(b.grads, a.grads, a.numel);
    print_message("  cpu-bf16 vs cpu: loss %.6f vs %.6f, log-probs rel %.2e, gradient rel %.2e\n", lb, la, e_lp, e_g);
    assert_true(fabs(la - lb) < 2e-2 * fabs(la));
    assert_true(e_lp < 2e-2 && e_lp > 1e-5);
    assert_true(e_g < 5e-2 && e_g > 1e-5);
    model_free(&a); model_free(&b);
}

// Training on bf16 storage tracks fp32 training; the master weights stay fp32
// (most are not bf16 numbers after some steps) and the compute copy is their rounding.
static void test_bf16_training_tracks_fp32(void **state) {
    (void)state;
    Model m[2];
    AdamW o[2];
    double first[2], last[2];
    Batch bt = tiny_batch();
    const Backend *bes[] = {backend_cpu(), backend_cpu_bf16()};
    for (int k = 0; k < 2; k++) {
        model_create(&m[k], &TINY, bes[k]);
        model_init_random(&m[k], 9, 0.2f);
        adamw_create(&o[k], &m[k], 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 0);
        for (int s = 0; s < 40; s++) {
            double l = step_loss(&m[k], &bt);
            if (s == 0) first[k] = l;
            last[k] = l;
            adamw_step(&o[k], &m[k], 3e-3f);
        }
    }
    print_message("  40 steps: fp32 %.4f -> %.4f, bf16 %.4f -> %.4f\n", first[0], last[0], first[1], last[1]);
    assert_true(last[0] < 0.5 * first[0]);
    assert_true(last[1] < 0.5 * first[1]);
    assert_true(fabs(last[1] - last[0]) < 0.1 * last[0] + 0.05);
    const Model *b = &m[1];
    size_t off_grid = 0;
    const uint16_t *wc = b->wc;   // cpu-bf16 buffers are host memory
    for (size_t i = 0; i < b->numel; i++) {
        if (bits_of(act_round(b->be, b->params[i])) != bits_of(b->params[i])) off_grid++;
        assert_int_equal(wc[i], bf16_from_f32(b->params[i]));
    }
    assert_true(off_grid > b->numel / 2);
    for (int k = 0; k < 2; k++) { adamw_free(&o[k], &m[k]); model_free(&m[k]); }
}

// The KV-cache decode path reads the same bf16 values the training forward
// stores, so its logits agree with the forward's to bf16 precision.
static void test_bf16_decode_matches_forward(void **state) {
    (void)state;
    Model m;
    model_create(&m, &TINY, backend_cpu_bf16());
    model_init_random(&m, 21, 0.3f);
    const int V = TINY.vocab_size, n = 10;
    int seq[10] = {3, 14, 15, 9, 26, 5, 35, 8, 9, 7}, len = n;
    float *mk = calloc((size_t)n, sizeof(float)), *all = malloc((size_t)n * V * sizeof(float));
    float *dec = malloc((size_t)V * sizeof(float));
    Batch b = {.B = 1, .T = n, .tokens = seq, .mask = mk, .lengths = &len};
    model_forward(&m, &b, 1);
    model_logits(&m, &b, all);
    Decoder d;
    decoder_create(&d, &m, 1, TINY.max_seq_len, 4);   // prefill in chunks of 4 positions
    const int *prompts[1] = {seq};
    decoder_prefill(&d, prompts, &len, 1, dec);
    double e = rel_err(dec, all + (size_t)(n - 1) * V, (size_t)V);
    print_message("  cpu-bf16 decode vs forward logits: rel %.2e\n", e);
    assert_true(e < 2e-2);
    decoder_free(&d);
    free(mk); free(all); free(dec);
    model_free(&m);
}

// A bf16 run's checkpoint holds the fp32 masters (not their bf16 copy), and
// loading refreshes the compute copy.
static void test_bf16_checkpoint_keeps_fp32_master(void **state) {
    (void)state;
    Model a, b;
    model_create(&a, &TINY, backend_cpu_bf16());
    model_init_random(&a, 4, 0.2f);
    AdamW o;
    adamw_create(&o, &a, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 0);
    Batch bt = tiny_batch();
    step_loss(&a, &bt);
    adamw_step(&o, &a, 1e-3f);
    TrainState st = {.step = 1};
    snprintf(st.stage, sizeof st.stage, "sft");
    run_ok("mkdir -p " TMP);
    checkpoint_save(TMP "/ck.h5", &a, &o, &st);
    model_create(&b, &TINY, backend_cpu_bf16());
    checkpoint_load(TMP "/ck.h5", &b, NULL, NULL);
    assert_memory_equal(a.params, b.params, a.numel * sizeof(float));
    assert_memory_equal(a.wc, b.wc, a.numel * 2);
    adamw_free(&o, &a);
    model_free(&a); model_free(&b);
}

// Every host path on bf16 storage, under the sanitized binary: a host size or
// offset computed for fp32 where the buffer holds bf16 would overrun (ASan) or
// give garbage (non-finite losses, failed runs). The numbers themselves are
// checked above and in test_reference.c.
static const char *WORLD =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 128\nseed = 7\n"
    "[data]\ndataset = " TMP "/w.h5\n[train]\ninit = " TMP "/init.h5\nbatch_size = 4\nmax_steps = 2\n"
    "[eval]\nks = 1,3\nbeams = 3\n[sprec]\niterations = 2\nn = 4\neval_rows = 3\neval_valid = false\n"
    "[run]\ndevice = cpu-bf16\n";

#define RUN_BF16 "OMP_NUM_THREADS=1 " SPREC_CHECKED

static void finite_losses(const char *log) {
    double v[64];
    int n = read_jsonl_values(log, "loss", v, 64);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) assert_true(isfinite(v[i]) && v[i] > 0);
}

static void test_bf16_every_host_path(void **state) {
    (void)state;
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/gpt2.json");
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/w.h5 --data.synth_users=40 "
           "--data.valid_rows=5 --data.test_rows=5 --data.history=3 --data.tokenizer=" TMP "/gpt2.json");
    write_file(TMP "/w.ini", WORLD);
    run_ok("build/sprec init " TMP "/w.ini -o " TMP "/init.h5");
    run_ok(RUN_BF16 " train " TMP "/w.ini --run.out_dir=" TMP "/sft --train.method=sft --train.max_steps=3");
    finite_losses(TMP "/sft/train_log.jsonl");
    run_ok(RUN_BF16 " train " TMP "/w.ini --run.out_dir=" TMP "/lora --train.method=sft --lora.enabled=true "
           "--lora.rank=4 --lora.dropout=0.1");
    finite_losses(TMP "/lora/train_log.jsonl");
    run_ok(RUN_BF16 " train " TMP "/w.ini --run.out_dir=" TMP "/self --train.method=dpo --dpo.negatives=self "
           "--dpo.n_pairs=8");
    finite_losses(TMP "/self/train_log.jsonl");
    run_ok(RUN_BF16 " train " TMP "/w.ini --run.out_dir=" TMP "/sp --train.method=sprec --dpo.weighting=spdpo "
           "--lora.enabled=true --lora.rank=4 --lora.dropout=0.1");
    finite_losses(TMP "/sp/train_log.jsonl");
    double it[4];
    assert_int_equal(read_jsonl_values(TMP "/sp/metrics.jsonl", "iteration", it, 4), 2);   // one line per iteration
    run_ok(RUN_BF16 " eval " TMP "/w.ini --model " TMP "/sp/checkpoint.h5 -o " TMP "/ev");
    run_ok(RUN_BF16 " eval " TMP "/w.ini --model " TMP "/init.h5 -o " TMP "/evu --eval.mode=unconstrained");
    free(read_text_file(TMP "/ev/topk-test.jsonl", NULL));
    free(read_text_file(TMP "/evu/topk-test.jsonl", NULL));
    run_ok(RUN_BF16 " export " TMP "/sp/checkpoint.h5 -o " TMP "/hf");
    run_ok("build/sprec import tests/ref/import/llama_fp32/hf -o " TMP "/tok.h5");
    run_ok(RUN_BF16 " generate --model " TMP "/tok.h5 --device cpu-bf16 --prompt 'hello world' --max-new-tokens 6 "
           "--beams 3");
    const char *modes[] = {"sft", "dpo", "logprob --tokens 40", "generate --prompts 3 --beams 2 --items 20 --prompt-len 5"};
    for (int i = 0; i < 4; i++) {
        char cmd[1024], out[8192];
        snprintf(cmd, sizeof cmd, RUN_BF16 " bench --device cpu-bf16 --dim 32 --layers 1 --heads 2 --kv-heads 1 "
                 "--ffn 64 --vocab 256 --seq 16 --batch 2 --steps 2 --warmup 1 --mode %s", modes[i]);
        int rc = run_capture(cmd, out, sizeof out);
        if (rc != 0) print_message("%s\n%s\n", cmd, out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "\"device\": \"cpu-bf16\""));
        assert_non_null(strstr(out, "\"storage\": \"bf16\""));
    }
}

DEFINE_TEST_GROUP(test_bf16, cmocka_unit_test(test_bf16_backend_tables_complete), cmocka_unit_test(test_bf16_rounding), cmocka_unit_test(test_bf16_act_transfer),
                  cmocka_unit_test(test_bf16_forward_backward_vs_fp32), cmocka_unit_test(test_bf16_training_tracks_fp32),
                  cmocka_unit_test(test_bf16_decode_matches_forward),
                  cmocka_unit_test(test_bf16_checkpoint_keeps_fp32_master), cmocka_unit_test(test_bf16_every_host_path))
