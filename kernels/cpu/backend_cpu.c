// The CPU backend: the registry that fills the Backend table, plus the small
// ops that need no file of their own (memory, add, AdamW, sum of squares).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "../backend.h"
#include "../errors.h"
#include "cpu_ops.h"

// Zero-filled and 64-byte aligned (one cache line, one AVX-512 vector).
static void *cpu_alloc(size_t bytes) {
    if (bytes > SIZE_MAX - 63) fail("out of memory allocating %zu bytes (a negative size?)", bytes);
    size_t padded = (bytes + 63) / 64 * 64;   // aligned_alloc wants a multiple of 64
    void *p = aligned_alloc(64, padded ? padded : 64);
    if (!p) fail("out of memory allocating %zu bytes", bytes);
    memset(p, 0, padded);
    return p;
}

static void cpu_free(void *p) { free(p); }
// the CPU's KV cache is fp32, so it is plain backend memory
static void *cpu_kv_alloc(size_t n) { return cpu_alloc(n * sizeof(float)); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }

// act is fp32 here, so the compute copy is a plain copy (none when in place)
static void cpu_act_from_f32(void *dst, const float *src, size_t n) {
    if (dst != src) memcpy(dst, src, n * sizeof(float));
}

// out[n] = a[n] + b[n]; out may alias a or b (elementwise, so that is safe)
static void cpu_add(void *out_, const void *a_, const void *b_, size_t n) {
    float *out = out_;
    const float *a = a_, *b = b_;
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cpu_scale(float *x, float s, size_t n) {
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
// act is fp32: the same op
static void cpu_scale_act(void *x, float s, size_t n) { cpu_scale(x, s, n); }

static void cpu_dropout_fwd(void *out_, const void *inp_, size_t n, float p, uint64_t key) {
    float *out = out_;
    const float *inp = inp_;
    const float k = 1.0f / (1.0f - p);
    #pragma omp parallel for if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = dropout_keep(key, i, p) ? inp[i] * k : 0.0f;
}

static void cpu_dropout_bwd(float *dinp, const float *dout, size_t n, float p, uint64_t key) {
    if (!dinp) return;   // not needed (a NULL gradient output is skipped)
    const float k = 1.0f / (1.0f - p);
    #pragma omp parallel for if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) if (dropout_keep(key, i, p)) dinp[i] += dout[i] * k;
}
// p, g, m, v: [n]. Same arithmetic as PyTorch's AdamW (single-tensor path):
// decay first, m by lerp, denom = sqrt(v)/sqrt(bc2) + eps, step = lr/bc1.
static void adamw_tensor(float *p, const float *g, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                         float grad_scale) {
    float decay = 1.0f - lr * wd;
    float step = lr / bc1;
    float bc2_sqrt = sqrtf(bc2);
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
        float vi = beta2 * v[i] + (1.0f - beta2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

// The whole flat buffer, tensor by tensor (table is host memory here). The
// compute copy pc is fp32 too: a copy of each stepped tensor, none when pc == p.
static void cpu_adamw_multi(float *p, void *pc, const float *g, float *m, float *v, size_t n,
                            const AdamwTensor *table, int n_tensors, float lr, float beta1,
                            float beta2, float eps, float wd, float bc1, float bc2, float grad_scale) {
    for (int t = 0; t < n_tensors; t++) {
        const AdamwTensor *e = &table[t];
        check(e->offset <= n && e->numel <= n - e->offset,
              "adamw: tensor %d [%zu, +%zu) outside the %zu-value buffer", t, e->offset, e->numel, n);
        adamw_tensor(p + e->offset, g + e->offset, m + e->offset, v + e->offset, e->numel, lr, beta1,
                     beta2, eps, e->decay ? wd : 0.0f, bc1, bc2, grad_scale);
        cpu_act_from_f32((float *)pc + e->offset, p + e->offset, e->numel);
    }
}

// x: [n]. Each thread sums a fixed contiguous share; the partials are added in
// thread order, so the result is the same on every run with the same thread count.
static double cpu_sumsq(const float *x, size_t n) {
    int nt = omp_get_max_threads();
    double *part = xcalloc((size_t)nt, sizeof(double));
    #pragma omp parallel if (n >= CPU_PAR_MIN)
    {
        size_t t = (size_t)omp_get_thread_num(), team = (size_t)omp_get_num_threads();
        size_t lo = n / team * t + (t < n % team ? t : n % team);
        size_t hi = lo + n / team + (t < n % team);
        double s = 0.0;
        #pragma omp simd reduction(+:s)
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[t] = s;
    }
    double total = 0.0;
    for (int t = 0; t < nt; t++) total += part[t];
    free(part);
    return total;
}

const Backend *backend_cpu(void) {
    static const Backend cpu = {
        .name = "cpu",
        .act_bytes = sizeof(float),
        .alloc = cpu_alloc,
        .free = cpu_free,
        .upload = cpu_copy,
        .download = cpu_copy,
        .copy = cpu_copy,
        .zero = cpu_zero,
        .act_from_f32 = cpu_act_from_f32,
        .matmul_fwd = cpu_matmul_fwd,
        .matmul_bwd = cpu_matmul_bwd,
        .embedding_fwd = cpu_embedding_fwd,
        .embedding_bwd = cpu_embedding_bwd,
        .rmsnorm_fwd = cpu_rmsnorm_fwd,
        .rmsnorm_bwd = cpu_rmsnorm_bwd,
        .residual_rmsnorm_fwd = cpu_residual_rmsnorm_fwd,
        .layernorm_fwd = cpu_layernorm_fwd,
        .rope_fwd = cpu_rope_fwd,
        .rope_bwd = cpu_rope_bwd,
        .attention_fwd = cpu_attention_fwd,
        .attention_bwd = cpu_attention_bwd,
        .attention_bidir_fwd = cpu_attention_bidir_fwd,
        .swiglu_fwd = cpu_swiglu_fwd,
        .swiglu_bwd = cpu_swiglu_bwd,
        .gelu_fwd = cpu_gelu_fwd,
        .add = cpu_add,
        .scale = cpu_scale,
        .scale_act = cpu_scale_act,
        .dropout_fwd = cpu_dropout_fwd,
        .dropout_bwd = cpu_dropout_bwd,
        .logprob_fwd = cpu_logprob_fwd,
        .logprob_bwd = cpu_logprob_bwd,
        .logprob_fwd_bwd = cpu_logprob_fwd_bwd,
        .adamw_multi = cpu_adamw_multi,
        .sumsq = cpu_sumsq,
        .seq_logprob = cpu_seq_logprob,
        .dpo_loss = cpu_dpo_loss,
        .kv_alloc = cpu_kv_alloc,
        .rope_at_fwd = cpu_rope_at_fwd,
        .kv_write = cpu_kv_write,
        .attention_cached_fwd = cpu_attention_cached_fwd,
        .kv_gather = cpu_kv_gather,
        .gather_rows = cpu_gather_rows,
        .logits_lse_topk = cpu_logits_lse_topk,
        .gather_cols = cpu_gather_cols,
        .mem_stats = NULL,   // optional op: buffers are host memory (sprec bench reports the process RSS)
    };
    return &cpu;
}
