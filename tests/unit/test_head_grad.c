// The LM head's gradient taken in the forward (model_forward_with_head_grad,
// backend logprob_fwd_bwd: the SFT path) against the forward + backward it
// replaces (model_forward, then model_backward with the weights): the same
// log-probs bit for bit and the same gradients, over two accumulated
// micro-batches, on the fp32 and the bf16-storage CPU backends, with a tied
// and an untied head, and with LoRA (frozen head: no dW).
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "model/model.h"
#include "model/lora.h"
#include "kernels/cpu/cpu_ops.h"
#include "base/rng.h"

static const ModelConfig SMALL = {.vocab_size = 97, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                  .head_dim = 8, .ffn_dim = 48, .max_seq_len = 16, .rope_theta = 10000.0f,
                                  .rms_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 0};

enum { BB = 3, TT = 12, MICRO = 2 };

typedef struct { int tokens[BB * TT]; float mask[BB * TT]; int lengths[BB]; Batch b; } TestBatch;

// a completion-style mask (the last part of each row) with uneven weights
static void make_batch(TestBatch *tb, uint64_t seed, int V) {
    Rng r;
    rng_seed(&r, seed);
    const int lens[BB] = {TT, 9, 6};
    for (int i = 0; i < BB * TT; i++) {
        tb->tokens[i] = (int)rng_below(&r, (uint64_t)V);
        tb->mask[i] = i % TT >= 4 ? (float)(1 + i % 3) : 0.0f;
    }
    memcpy(tb->lengths, lens, sizeof lens);
    tb->b = (Batch){.B = BB, .T = TT, .tokens = tb->tokens, .mask = tb->mask, .lengths = tb->lengths};
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return sqrt(num / (den > 0 ? den : 1));
}

// The gradient of the step's loss over MICRO micro-batches, each weighted by
// mask / (the step's mask sum) as sft_step does; fused: through the head's
// gradient in the forward. lp_out[MICRO][BB*TT] gets each forward's log-probs.
static void grads_of(Model *m, TestBatch *tb, int fused, float lp_out[MICRO][BB * TT], int *n_out) {
    double mask_sum = 0;
    for (int k = 0; k < MICRO; k++)
        for (int i = 0; i < BB * TT; i++) mask_sum += tb[k].mask[i];
    model_zero_grad(m);
    for (int k = 0; k < MICRO; k++) {
        float pos_w[BB * TT], w[BB * TT];
        for (int i = 0; i < BB * TT; i++) pos_w[i] = (float)(tb[k].mask[i] / mask_sum);
        const int n = fused ? model_forward_with_head_grad(m, &tb[k].b, pos_w) : model_forward(m, &tb[k].b, 0);
        for (int i = 0; i < n; i++) w[i] = pos_w[m->head_pos[i]];
        memcpy(lp_out[k], m->head_lp, (size_t)n * sizeof(float));
        n_out[k] = n;
        model_backward(m, fused ? NULL : w);
    }
}

static void head_grad_case(const Backend *be, int tied, int lora, int chunk) {
    ModelConfig c = SMALL;
    c.tie_embeddings = tied;
    Model m;
    model_create(&m, &c, be);
    model_init_random(&m, 5, 0.2f);
    if (lora) {
        LoraConfig lc = {.rank = 4, .alpha = 8.0f, .dropout = 0.0f, .targets = LORA_TARGETS_ALL, .seed = 3};
        model_enable_lora(&m, &lc);
        // B = 0 would leave the adapters' A without a gradient: give B values
        for (size_t j = 0; j < m.lora->numel; j++) m.lora->params[j] = 0.05f * (float)((int)(j * 37 % 11) - 5);
        lora_sync_compute(&m);
    }
    cpu_logprob_chunk_rows = chunk;
    TestBatch tb[MICRO];
    for (int k = 0; k < MICRO; k++) make_batch(&tb[k], 40 + k, c.vocab_size);
    static float lp_a[MICRO][BB * TT], lp_b[MICRO][BB * TT];
    int n_a[MICRO], n_b[MICRO];
    const size_t ng = lora ? m.lora->numel : m.numel;
    float *ga = malloc(ng * sizeof(float)), *gb = malloc(ng * sizeof(float));
    grads_of(&m, tb, 0, lp_a, n_a);
    be->download(ga, lora ? m.lora->grads : m.grads, ng * sizeof(float));
    grads_of(&m, tb, 1, lp_b, n_b);
    be->download(gb, lora ? m.lora->grads : m.grads, ng * sizeof(float));
    cpu_logprob_chunk_rows = 0;

    for (int k = 0; k < MICRO; k++) {
        assert_int_equal(n_a[k], n_b[k]);
        assert_true(n_a[k] > 0);
        assert_memory_equal(lp_a[k], lp_b[k], (size_t)n_a[k] * sizeof(float));
    }
    double gsq = 0;
    for (size_t i = 0; i < ng; i++) gsq += (double)ga[i] * ga[i];
    const double err = rel_diff(gb, ga, ng);
    print_message("  %-9s tied %d lora %d chunk %d: gradient rel diff %.2e (%s)\n", be->name, tied, lora, chunk,
                  err, memcmp(ga, gb, ng * sizeof(float)) ? "not bitwise" : "bitwise");
    assert_true(gsq > 0);
    assert_true(err <= 1e-6);
    free(ga); free(gb);
    model_free(&m);
}

static void test_head_grad_in_forward(void **state) {
    (void)state;
    head_grad_case(backend_cpu(), 0, 0, 0);
    head_grad_case(backend_cpu(), 1, 0, 5);        // tied head, several chunks
    head_grad_case(backend_cpu(), 0, 1, 0);        // LoRA: the head is frozen
    head_grad_case(backend_cpu_bf16(), 0, 0, 0);   // the CUDA backend's numerics
    head_grad_case(backend_cpu_bf16(), 1, 0, 7);
    head_grad_case(backend_cpu_checked(), 0, 0, 0);   // the op touches device memory only
}

DEFINE_TEST_GROUP(test_head_grad,
    cmocka_unit_test(test_head_grad_in_forward),
)
