// Internal to the CPU backend: the op entry points that backend_cpu.c puts in
// the Backend table, and the tuning knobs the unit tests turn.
#ifndef SPREC_CPU_OPS_H
#define SPREC_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

// Elementwise loops shorter than this stay on one thread (fork/join costs more).
#define CPU_PAR_MIN 16384

// Rows of logits per logprob chunk; 0 = automatic (4M logits, at least 256 rows).
extern int cpu_logprob_chunk_rows;
// Query/key block of the causal attention products (> 0). Blocks above the
// diagonal are skipped, so smaller blocks skip more work but call sgemm more.
extern int cpu_attention_block;

// expf written so that loops over it vectorize (glibc's expf is an opaque
// call): e^x = 2^n e^r with n = round(x / ln2), |r| <= ln2/2, e^r by the Cephes
// degree-6 polynomial; within 1 ulp of e^x. x < -87 gives 0 (e^-87 < 2e-38,
// nothing for a softmax), x > 88 gives +inf, NaN stays NaN.
static inline float cpu_expf(float x) {
    float xc = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;   // keeps 2^n normal
    // adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits
    float v = xc * 1.44269504f + 12582912.0f;
    float n = v - 12582912.0f;
    float r = xc - n * 0.693359375f - n * -2.12194440e-4f;   // ln2 split hi + lo: exact n*hi
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float er = p * r * r + r + 1.0f;
    uint32_t bits, sbits;
    memcpy(&bits, &v, sizeof bits);
    sbits = (bits - 0x4B400000u + 127u) << 23;   // 2^n as float bits
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    float y = er * scale;
    return x < -87.0f ? 0.0f : x > 88.0f ? INFINITY : y;
}

// The act arguments (void *, see kernels/backend.h) are fp32 on this backend
// (act_bytes == sizeof(float)): a definition takes them as NAME_ and computes
// on a float *NAME local, so the arithmetic is exactly the fp32 one.
void cpu_matmul_fwd(void *out, const void *inp, const void *w, const void *bias,
                    int N, int C, int OC);
void cpu_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                    const void *inp, const void *w, int N, int C, int OC);
void cpu_embedding_fwd(void *out, const int *tokens, const void *wte, int N, int C);
void cpu_embedding_bwd(float *dwte, const float *dout, const int *tokens, int N, int C, int V);
void cpu_rmsnorm_fwd(void *out, float *rstd, const void *inp, const void *weight,
                     float eps, int N, int C);
void cpu_residual_rmsnorm_fwd(void *res, void *out, float *rstd, const void *a, const void *b,
                              const void *weight, float eps, int N, int C);
void cpu_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const void *inp,
                     const void *weight, const float *rstd, int N, int C);
void cpu_layernorm_fwd(void *out, const void *inp, const void *weight, const void *bias, float eps,
                       int N, int C);
void cpu_rope_fwd(void *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D);
void cpu_rope_bwd(float *dx, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D);
void cpu_attention_fwd(void *out, float *lse, const void *q, const void *k, const void *v,
                       const int *lengths, int B, int T, int NH, int NKV, int D);
void cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const void *out,
                       const float *lse, const void *q, const void *k, const void *v,
                       const int *lengths, int B, int T, int NH, int NKV, int D);
void cpu_attention_bidir_fwd(void *out, const void *q, const void *k, const void *v,
                             const int *lengths, int B, int T, int NH, int D);
void cpu_swiglu_fwd(void *out, const void *gate, const void *up, size_t n);
void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const void *gate,
                    const void *up, size_t n);
void cpu_gelu_fwd(void *out, const void *inp, size_t n);
void cpu_logprob_fwd(float *logprob, float *lse, const void *h, const void *w,
                     const int *rows, const int *targets, int n, int C, int V);
void cpu_logprob_bwd(float *dh, float *dw, const void *h, const void *w,
                     const int *rows, const int *targets, const float *lse,
                     const float *weight, int n, int C, int V);
// The log-prob backward with its logit gradient carried as two bf16 parts
// (hi + lo), as the CUDA head does (kernels/cpu/bf16_emulated.c); h, w fp32.
void cpu_logprob_bwd_bf16_split(float *dh, float *dw, const float *h, const float *w, const int *rows,
                                const int *targets, const float *lse, const float *weight, int n, int C, int V);
void cpu_logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const void *h, const void *w,
                         const int *rows, const int *targets, const float *weight, int n, int C, int V);
// The fused head with the same two-part bf16 logit gradient; h, w fp32.
void cpu_logprob_fwd_bwd_bf16_split(float *logprob, float *lse, float *dh, float *dw, const float *h,
                                    const float *w, const int *rows, const int *targets, const float *weight,
                                    int n, int C, int V);
// dpo.c: sequence log-probs and the DPO loss with its reweighting (double)
void cpu_seq_logprob(double *seq_lp, const float *lp, const float *mask, const int *seq, int n, int S);
void cpu_dpo_loss(double *out, double *w, float *tw, const double *lp, const double *ref,
                  const double *pair_weight, double beta, int n, const int *seq, const float *mask,
                  int n_rows);
// decode.c: KV-cache decoding (forward only)
void cpu_rope_at_fwd(void *x, const float *cos_tab, const float *sin_tab, const int *pos, int N, int H, int D);
void cpu_kv_write(void *cache, const void *x, const int *start, const int *n_new, int R, int S, int P, int W);
void cpu_attention_cached_fwd(void *out, const void *q, const void *kc, const void *vc, const int *start,
                              const int *n_new, int R, int S, int P, int NH, int NKV, int D);
void cpu_kv_gather(void *cache, const int *src, int R, int len, int P, int W);
void cpu_gather_rows(void *out, const void *inp, const int *rows, int N, int C);
// select.c: token selection without the [N x V] download
void cpu_logits_lse_topk(double *lse, int *top_id, float *top_val, const void *logits, int N, int V, int k);
void cpu_gather_cols(float *out, const void *logits, const int *off, const int *src, const int *cols, int N, int V);

#endif
