// The one interface every compute backend implements (CPU now, CUDA later).
// Host code reaches the math only through a Backend chosen at run time, so the
// same model/trainer code runs on any device.
//
// Conventions shared by every op:
//  - All pointers are device pointers (plain host memory on the CPU backend).
//  - Row-major. "N" is a number of token rows (B*T), "C" a channel width.
//  - Linear weights are stored as Hugging Face / PyTorch do: W[out, in].
//  - Every *_bwd ADDS into its gradient outputs (inputs' and parameters'), so
//    residual branches and gradient accumulation need no extra copies. Callers
//    zero gradient buffers when they want a fresh gradient. A NULL gradient
//    output means "not needed" and is skipped. (rope_bwd is the one exception:
//    it transforms its buffer in place.)
//  - Sequences are right-padded: row (b, t) is valid iff t < lengths[b], with
//    0 <= lengths[b] <= T. Padded rows of inputs are never read (any garbage,
//    even NaN, is harmless) and padded rows of outputs are written as 0.
//  - Every op is deterministic for a fixed thread count / device: reductions
//    run in a fixed order, never with racing float adds.
#ifndef SPREC_BACKEND_H
#define SPREC_BACKEND_H

#include <stddef.h>

typedef struct Backend {
    const char *name;

    // ---- memory -----------------------------------------------------------
    void *(*alloc)(size_t bytes);                 // zero-filled, 64-byte aligned; exits on failure
    void (*free)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);    // host -> device
    void (*download)(void *dst, const void *src, size_t bytes);  // device -> host
    void (*copy)(void *dst, const void *src, size_t bytes);      // device -> device
    void (*zero)(void *p, size_t bytes);

    // ---- dense layers -----------------------------------------------------
    // out[N,OC] = inp[N,C] @ w[OC,C]^T (+ bias[OC] when bias != NULL)
    void (*matmul_fwd)(float *out, const float *inp, const float *w, const float *bias,
                       int N, int C, int OC);
    // dinp[N,C] += dout @ w;  dw[OC,C] += dout^T @ inp;  dbias[OC] += colsum(dout)
    void (*matmul_bwd)(float *dinp, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, int N, int C, int OC);

    // out[N,C] = wte[tokens[n], :]   (tokens already range-checked by the host)
    void (*embedding_fwd)(float *out, const int *tokens, const float *wte, int N, int C);
    // dwte[tokens[n], :] += dout[n, :]   (deterministic: no racing adds)
    void (*embedding_bwd)(float *dwte, const float *dout, const int *tokens, int N, int C, int V);

    // out = inp * rstd * weight, rstd[n] = 1/sqrt(mean(inp[n]^2) + eps)
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *inp, const float *weight,
                        float eps, int N, int C);
    void (*rmsnorm_bwd)(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, const float *rstd, int N, int C);

    // Rotary embedding, rotate-half convention, in place on x[B,T,H,D] (D even)
    // with position t for row (b,t). cos/sin are tables [T, D/2].
    void (*rope_fwd)(float *x, const float *cos, const float *sin, int B, int T, int H, int D);
    // Inverse rotation of the gradient, in place (RoPE is orthogonal).
    void (*rope_bwd)(float *dx, const float *cos, const float *sin, int B, int T, int H, int D);

    // Causal grouped-query attention over right-padded sequences.
    // q[B,T,NH,D], k,v[B,T,NKV,D] (NH % NKV == 0, head h reads kv head h/(NH/NKV)),
    // out[B,T,NH,D], lse[B,NH,T] (log-sum-exp of the scaled scores, kept for the
    // backward). Scale 1/sqrt(D). Rows t >= lengths[b] get out = 0, lse = 0.
    void (*attention_fwd)(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int *lengths, int B, int T, int NH, int NKV, int D);
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                          const float *lse, const float *q, const float *k, const float *v,
                          const int *lengths, int B, int T, int NH, int NKV, int D);

    // out[n] = silu(gate[n]) * up[n] over n elements
    void (*swiglu_fwd)(float *out, const float *gate, const float *up, size_t n);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, size_t n);

    // out[n] = a[n] + b[n]   (out may alias a or b)
    void (*add)(float *out, const float *a, const float *b, size_t n);

    // ---- language-model head: log-probs of chosen rows only ---------------
    // For i < n: r = rows[i] indexes h[*,C]; logits = h[r] @ w[V,C]^T;
    // logprob[i] = logits[targets[i]] - logsumexp(logits); lse[i] kept.
    // Processed in chunks of rows, so no [n x V] tensor ever exists.
    void (*logprob_fwd)(float *logprob, float *lse, const float *h, const float *w,
                        const int *rows, const int *targets, int n, int C, int V);
    // Gradient of the loss -sum_i weight[i] * logprob[i]: dh[rows[i]] += ...,
    // dw += ... (dw may be NULL: frozen head). rows must be distinct; lse comes
    // from logprob_fwd on the same h and w. Rows with weight 0 cost nothing.
    void (*logprob_bwd)(float *dh, float *dw, const float *h, const float *w,
                        const int *rows, const int *targets, const float *lse,
                        const float *weight, int n, int C, int V);

    // ---- optimizer --------------------------------------------------------
    // One AdamW step over n contiguous elements. g is scaled by grad_scale
    // first (clipping). lr already includes the schedule; bc1/bc2 are the bias
    // corrections 1-beta1^t, 1-beta2^t. As torch.optim.AdamW: decoupled decay
    // first, p *= 1 - lr*wd, then p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps).
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr,
                  float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                  float grad_scale);
    double (*sumsq)(const float *x, size_t n);    // sum of squares, accumulated in double
} Backend;

// Registry (host/device.c picks one by name).
const Backend *backend_cpu(void);
// backend_cuda: NULL when sprec was built without nvcc; when built with it but
// no GPU is usable, it exits with a one-line message.
const Backend *backend_cuda(void);

#endif
