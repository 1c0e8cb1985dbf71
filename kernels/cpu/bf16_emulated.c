// The bf16-emulating CPU backend, `--device cpu-bf16`: the CUDA backend's
// storage numerics on any machine. Its act type is bf16 (act_bytes = 2, stored
// as uint16_t), exactly as on the GPU, and every op is the fp32 CPU backend's,
// wrapped: each act input is widened into an fp32 temporary, the CPU op runs
// (through backend_cpu()'s table, whose act type is fp32), and each act output
// is rounded once into its bf16 buffer with bf16_from_f32 (round to nearest
// even). fp32 arguments (gradients, statistics, master weights, tables) and
// int/double ones pass straight through.
//
// Why: every act value an op sees has been through bf16 exactly once per
// store, as on the GPU, so training/decoding with this backend reproduces the
// CUDA backend's rounding without a GPU (tests, debugging a bf16 divergence).
// What still differs from CUDA:
//  - accumulation order (OpenBLAS / OpenMP reductions vs cuBLAS / kernels);
//  - exp: CUDA's expf in attention and the log-prob head, the CPU's
//    polynomial here (the head's logit gradient enters its products as two
//    bf16 parts, hi + lo, on both).
// matmul_bwd rounds dout to bf16 precision before the GEMMs, as CUDA does, so
// the products match an act-precision framework's; the bias gradient is the
// column sum of the unrounded fp32 dout.
//
// Memory is the CPU backend's (byte-based, host memory); the KV cache is the
// CPU's fp32 cache, which holds bf16-rounded values only (they arrive as act),
// so it holds exactly what a bf16 cache would. Temporaries are malloc'd and
// freed within each call: this is an oracle, not a fast path.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../backend.h"
#include "../errors.h"
#include "cpu_ops.h"

static const Backend *cpu;   // the fp32 CPU backend, set by backend_cpu_bf16()

#define NN(x) ((x) > 0 ? (size_t)(x) : 0)

// ---- conversions ---------------------------------------------------------------

// a new fp32 array [n] holding the bf16 values of src[n] (NULL stays NULL)
static float *widen(const void *src, size_t n) {
    if (!src) return NULL;
    const uint16_t *s = src;
    float *d = xmalloc(n * sizeof(float));
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) d[i] = f32_from_bf16(s[i]);
    return d;
}

// dst[i] = bf16(src[i]) for i < n: one rounding per act store
static void narrow(void *dst, const float *src, size_t n) {
    uint16_t *d = dst;
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) d[i] = bf16_from_f32(src[i]);
}

// a new fp32 array [n]: src[n] rounded to bf16 precision (kept in fp32)
static float *rounded(const float *src, size_t n) {
    float *d = xmalloc(n * sizeof(float));
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) d[i] = f32_from_bf16(bf16_from_f32(src[i]));
    return d;
}

// an fp32 output temporary [n] (its contents are written by the CPU op)
static float *scratch(size_t n) { return xmalloc(n * sizeof(float)); }

// rows of h the log-prob head reads: max(rows[i]) + 1 (rows is host memory here)
static size_t head_rows(const int *rows, int n) {
    int mx = -1;
    for (int i = 0; i < n; i++) {
        check(rows[i] >= 0, "cpu-bf16: log-prob row %d is negative (%d)", i, rows[i]);
        if (rows[i] > mx) mx = rows[i];
    }
    return (size_t)(mx + 1);
}

// ---- memory: the CPU backend's (bytes are bytes) ----------------------------------

static void *bf_alloc(size_t bytes) { return cpu->alloc(bytes); }
static void bf_free(void *p) { cpu->free(p); }
static void bf_upload(void *dst, const void *src, size_t bytes) { cpu->upload(dst, src, bytes); }
static void bf_download(void *dst, const void *src, size_t bytes) { cpu->download(dst, src, bytes); }
static void bf_copy(void *dst, const void *src, size_t bytes) { cpu->copy(dst, src, bytes); }
static void bf_zero(void *p, size_t bytes) { cpu->zero(p, bytes); }
// dst != src always (bf16 and fp32 buffers differ in size)
static void bf_act_from_f32(void *dst, const float *src, size_t n) { narrow(dst, src, n); }

// ---- dense layers -----------------------------------------------------------------

static void bf_matmul_fwd(void *out, const void *inp, const void *w, const void *bias, int N, int C, int OC) {
    const size_t no = NN(N) * NN(OC);
    float *fi = widen(inp, NN(N) * NN(C)), *fw = widen(w, NN(OC) * NN(C)), *fb = widen(bias, NN(OC));
    float *fo = scratch(no);
    cpu->matmul_fwd(fo, fi, fw, fb, N, C, OC);
    narrow(out, fo, no);
    free(fi); free(fw); free(fb); free(fo);
}

// dout is rounded to bf16 for the GEMMs (as CUDA does); inp is read only for
// dw and w only for dinp (a caller may pass a stand-in for the other), so each
// is widened only when needed. dbias sums the fp32 dout, unrounded.
static void bf_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const void *inp,
                          const void *w, int N, int C, int OC) {
    if (dinp || dw) {
        float *rd = rounded(dout, NN(N) * NN(OC));
        float *fi = dw ? widen(inp, NN(N) * NN(C)) : NULL;
        float *fw = dinp ? widen(w, NN(OC) * NN(C)) : NULL;
        cpu->matmul_bwd(dinp, dw, NULL, rd, fi, fw, N, C, OC);
        free(rd); free(fi); free(fw);
    }
    if (dbias) cpu->matmul_bwd(NULL, NULL, dbias, dout, NULL, NULL, N, C, OC);
}

// a row copy moves bf16 values exactly (V is not passed, so wte is not widened)
static void bf_embedding_fwd(void *out, const int *tokens, const void *wte, int N, int C) {
    const uint16_t *src = wte;
    uint16_t *dst = out;
    const size_t c = NN(C);
    #pragma omp parallel for if (NN(N) * c >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) memcpy(dst + (size_t)n * c, src + (size_t)tokens[n] * c, c * sizeof(uint16_t));
}
static void bf_embedding_bwd(float *dwte, const float *dout, const int *tokens, int N, int C, int V) {
    cpu->embedding_bwd(dwte, dout, tokens, N, C, V);
}

static void bf_rmsnorm_fwd(void *out, float *rstd, const void *inp, const void *weight, float eps, int N, int C) {
    const size_t n = NN(N) * NN(C);
    float *fi = widen(inp, n), *fw = widen(weight, NN(C)), *fo = scratch(n);
    cpu->rmsnorm_fwd(fo, rstd, fi, fw, eps, N, C);
    narrow(out, fo, n);
    free(fi); free(fw); free(fo);
}
static void bf_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const void *inp, const void *weight,
                           const float *rstd, int N, int C) {
    float *fi = widen(inp, NN(N) * NN(C)), *fw = widen(weight, NN(C));
    cpu->rmsnorm_bwd(dinp, dweight, dout, fi, fw, rstd, N, C);
    free(fi); free(fw);
}

// res is rounded to bf16 before the norm reads it, as the fused CUDA kernel
// normalises the value it stores (a, b widened first: res may alias them)
static void bf_residual_rmsnorm_fwd(void *res, void *out, float *rstd, const void *a, const void *b,
                                    const void *weight, float eps, int N, int C) {
    const size_t n = NN(N) * NN(C);
    float *fa = widen(a, n), *fb = widen(b, n), *fw = widen(weight, NN(C)), *fo = scratch(n);
    for (size_t i = 0; i < n; i++) fa[i] = f32_from_bf16(bf16_from_f32(fa[i] + fb[i]));
    narrow(res, fa, n);
    cpu->rmsnorm_fwd(fo, rstd, fa, fw, eps, N, C);
    narrow(out, fo, n);
    free(fa); free(fb); free(fw); free(fo);
}

// in place: the whole of x is widened before anything is written back
static void bf_rope_fwd(void *x, const float *cos, const float *sin, int B, int T, int H, int D) {
    const size_t n = NN(B) * NN(T) * NN(H) * NN(D);
    float *fx = widen(x, n);
    cpu->rope_fwd(fx, cos, sin, B, T, H, D);
    narrow(x, fx, n);
    free(fx);
}
static void bf_rope_bwd(float *dx, const float *cos, const float *sin, int B, int T, int H, int D) {
    cpu->rope_bwd(dx, cos, sin, B, T, H, D);
}

static void bf_attention_fwd(void *out, float *lse, const void *q, const void *k, const void *v,
                             const int *lengths, int B, int T, int NH, int NKV, int D) {
    const size_t nq = NN(B) * NN(T) * NN(NH) * NN(D), nk = NN(B) * NN(T) * NN(NKV) * NN(D);
    float *fq = widen(q, nq), *fk = widen(k, nk), *fv = widen(v, nk), *fo = scratch(nq);
    cpu->attention_fwd(fo, lse, fq, fk, fv, lengths, B, T, NH, NKV, D);
    narrow(out, fo, nq);
    free(fq); free(fk); free(fv); free(fo);
}
static void bf_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const void *out,
                             const float *lse, const void *q, const void *k, const void *v,
                             const int *lengths, int B, int T, int NH, int NKV, int D) {
    const size_t nq = NN(B) * NN(T) * NN(NH) * NN(D), nk = NN(B) * NN(T) * NN(NKV) * NN(D);
    float *fo = widen(out, nq), *fq = widen(q, nq), *fk = widen(k, nk), *fv = widen(v, nk);
    cpu->attention_bwd(dq, dk, dv, dout, fo, lse, fq, fk, fv, lengths, B, T, NH, NKV, D);
    free(fo); free(fq); free(fk); free(fv);
}

static void bf_swiglu_fwd(void *out, const void *gate, const void *up, size_t n) {
    float *fg = widen(gate, n), *fu = widen(up, n), *fo = scratch(n);
    cpu->swiglu_fwd(fo, fg, fu, n);
    narrow(out, fo, n);
    free(fg); free(fu); free(fo);
}
static void bf_swiglu_bwd(float *dgate, float *dup, const float *dout, const void *gate, const void *up, size_t n) {
    float *fg = widen(gate, n), *fu = widen(up, n);
    cpu->swiglu_bwd(dgate, dup, dout, fg, fu, n);
    free(fg); free(fu);
}

// the encoder's forward-only ops: fp32 math on the widened inputs, the result rounded once
static void bf_layernorm_fwd(void *out, const void *inp, const void *weight, const void *bias, float eps,
                             int N, int C) {
    const size_t n = NN(N) * NN(C);
    float *fi = widen(inp, n), *fw = widen(weight, NN(C)), *fb = widen(bias, NN(C));
    cpu->layernorm_fwd(fi, fi, fw, fb, eps, N, C);
    narrow(out, fi, n);
    free(fi); free(fw); free(fb);
}
static void bf_attention_bidir_fwd(void *out, const void *q, const void *k, const void *v, const int *lengths,
                                   int B, int T, int NH, int D) {
    const size_t n = NN(B) * NN(T) * NN(NH) * NN(D);
    float *fq = widen(q, n), *fk = widen(k, n), *fv = widen(v, n), *fo = scratch(n);
    cpu->attention_bidir_fwd(fo, fq, fk, fv, lengths, B, T, NH, D);
    narrow(out, fo, n);
    free(fq); free(fk); free(fv); free(fo);
}
static void bf_gelu_fwd(void *out, const void *inp, size_t n) {
    float *fi = widen(inp, n);
    cpu->gelu_fwd(fi, fi, n);
    narrow(out, fi, n);
    free(fi);
}

// out may alias a or b: both are widened before out is written
static void bf_add(void *out, const void *a, const void *b, size_t n) {
    float *fa = widen(a, n), *fb = widen(b, n), *fo = scratch(n);
    cpu->add(fo, fa, fb, n);
    narrow(out, fo, n);
    free(fa); free(fb); free(fo);
}
static void bf_scale(float *x, float s, size_t n) { cpu->scale(x, s, n); }
static void bf_scale_act(void *x, float s, size_t n) {
    float *fx = widen(x, n);
    cpu->scale_act(fx, s, n);
    narrow(x, fx, n);
    free(fx);
}
static void bf_dropout_fwd(void *out, const void *inp, size_t n, float p, uint64_t key) {
    float *fi = widen(inp, n), *fo = scratch(n);
    cpu->dropout_fwd(fo, fi, n, p, key);
    narrow(out, fo, n);
    free(fi); free(fo);
}
static void bf_dropout_bwd(float *dinp, const float *dout, size_t n, float p, uint64_t key) {
    cpu->dropout_bwd(dinp, dout, n, p, key);
}

// ---- language-model head ------------------------------------------------------------
// h's extent is not passed: only the rows up to max(rows) are widened (row
// indices are kept, so dh[rows[i]] is addressed as the caller's h).

static void bf_logprob_fwd(float *logprob, float *lse, const void *h, const void *w, const int *rows,
                           const int *targets, int n, int C, int V) {
    float *fh = widen(h, head_rows(rows, n) * NN(C)), *fw = widen(w, NN(V) * NN(C));
    cpu->logprob_fwd(logprob, lse, fh, fw, rows, targets, n, C, V);
    free(fh); free(fw);
}
static void bf_logprob_bwd(float *dh, float *dw, const void *h, const void *w, const int *rows,
                           const int *targets, const float *lse, const float *weight, int n, int C, int V) {
    float *fh = widen(h, head_rows(rows, n) * NN(C)), *fw = widen(w, NN(V) * NN(C));
    // the CPU head with the CUDA head's two-part bf16 logit gradient
    cpu_logprob_bwd_bf16_split(dh, dw, fh, fw, rows, targets, lse, weight, n, C, V);
    free(fh); free(fw);
}
static void bf_logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const void *h, const void *w,
                               const int *rows, const int *targets, const float *weight, int n, int C, int V) {
    float *fh = widen(h, head_rows(rows, n) * NN(C)), *fw = widen(w, NN(V) * NN(C));
    cpu_logprob_fwd_bwd_bf16_split(logprob, lse, dh, dw, fh, fw, rows, targets, weight, n, C, V);
    free(fh); free(fw);
}

// ---- optimizer ------------------------------------------------------------------------

// The CPU op steps p in place with pc = p (its act is fp32); then each stepped
// element's compute copy is rounded from the new master value. table is host
// memory on this backend.
static void bf_adamw_multi(float *p, void *pc, const float *g, float *m, float *v, size_t n,
                           const AdamwTensor *table, int n_tensors, float lr, float beta1, float beta2,
                           float eps, float wd, float bc1, float bc2, float grad_scale) {
    cpu->adamw_multi(p, p, g, m, v, n, table, n_tensors, lr, beta1, beta2, eps, wd, bc1, bc2, grad_scale);
    uint16_t *c = pc;
    for (int t = 0; t < n_tensors; t++) narrow(c + table[t].offset, p + table[t].offset, table[t].numel);
}
static double bf_sumsq(const float *x, size_t n) { return cpu->sumsq(x, n); }

// ---- DPO: fp32 / double only ------------------------------------------------------------

static void bf_seq_logprob(double *seq_lp, const float *lp, const float *mask, const int *seq, int n, int S) {
    cpu->seq_logprob(seq_lp, lp, mask, seq, n, S);
}
static void bf_dpo_loss(double *out, double *w, float *tw, const double *lp, const double *ref,
                        const double *pair_weight, double beta, int n, const int *seq, const float *mask,
                        int n_rows) {
    cpu->dpo_loss(out, w, tw, lp, ref, pair_weight, beta, n, seq, mask, n_rows);
}

// ---- generation ---------------------------------------------------------------------------
// The cache is the CPU's fp32 one; it only ever receives widened bf16 values.

static void *bf_kv_alloc(size_t n) { return cpu->kv_alloc(n); }
static void bf_rope_at_fwd(void *x, const float *cos, const float *sin, const int *pos, int N, int H, int D) {
    const size_t n = NN(N) * NN(H) * NN(D);
    float *fx = widen(x, n);
    cpu->rope_at_fwd(fx, cos, sin, pos, N, H, D);
    narrow(x, fx, n);
    free(fx);
}
static void bf_kv_write(void *cache, const void *x, const int *start, const int *n_new, int R, int S, int P, int W) {
    float *fx = widen(x, NN(R) * NN(S) * NN(W));
    cpu->kv_write(cache, fx, start, n_new, R, S, P, W);
    free(fx);
}
static void bf_attention_cached_fwd(void *out, const void *q, const void *kc, const void *vc, const int *start,
                                    const int *n_new, int R, int S, int P, int NH, int NKV, int D) {
    const size_t nq = NN(R) * NN(S) * NN(NH) * NN(D);
    float *fq = widen(q, nq), *fo = scratch(nq);
    cpu->attention_cached_fwd(fo, fq, kc, vc, start, n_new, R, S, P, NH, NKV, D);
    narrow(out, fo, nq);
    free(fq); free(fo);
}
static void bf_kv_gather(void *cache, const int *src, int R, int len, int P, int W) {
    cpu->kv_gather(cache, src, R, len, P, W);
}
// a row copy moves bf16 values exactly (inp's extent is not passed)
static void bf_gather_rows(void *out, const void *inp, const int *rows, int N, int C) {
    const uint16_t *src = inp;
    uint16_t *dst = out;
    const size_t c = NN(C);
    for (int n = 0; n < N; n++) memcpy(dst + (size_t)n * c, src + (size_t)rows[n] * c, c * sizeof(uint16_t));
}

// logits are act: the values out (top_val) are the bf16 values widened
static void bf_logits_lse_topk(double *lse, int *top_id, float *top_val, const void *logits, int N, int V, int k) {
    float *fl = widen(logits, NN(N) * NN(V));
    cpu->logits_lse_topk(lse, top_id, top_val, fl, N, V, k);
    free(fl);
}
static void bf_gather_cols(float *out, const void *logits, const int *off, const int *src, const int *cols,
                           int N, int V) {
    float *fl = widen(logits, NN(N) * NN(V));
    cpu->gather_cols(out, fl, off, src, cols, N, V);
    free(fl);
}

// a new Backend op needs its wrapper here: this count fails the build until then
// (name and act_bytes, then every function pointer, mem_stats included)
_Static_assert(sizeof(Backend) == sizeof(const char *) + sizeof(size_t) + 44 * sizeof(void (*)(void)),
               "kernels/backend.h changed: wrap the new op in kernels/cpu/bf16_emulated.c and update this count");

const Backend *backend_cpu_bf16(void) {
    static const Backend bf16 = {
        .name = "cpu-bf16",
        .act_bytes = 2,
        .alloc = bf_alloc, .free = bf_free, .upload = bf_upload, .download = bf_download,
        .copy = bf_copy, .zero = bf_zero, .act_from_f32 = bf_act_from_f32,
        .matmul_fwd = bf_matmul_fwd, .matmul_bwd = bf_matmul_bwd,
        .embedding_fwd = bf_embedding_fwd, .embedding_bwd = bf_embedding_bwd,
        .rmsnorm_fwd = bf_rmsnorm_fwd, .rmsnorm_bwd = bf_rmsnorm_bwd,
        .residual_rmsnorm_fwd = bf_residual_rmsnorm_fwd, .layernorm_fwd = bf_layernorm_fwd,
        .rope_fwd = bf_rope_fwd, .rope_bwd = bf_rope_bwd,
        .attention_fwd = bf_attention_fwd, .attention_bwd = bf_attention_bwd,
        .attention_bidir_fwd = bf_attention_bidir_fwd,
        .swiglu_fwd = bf_swiglu_fwd, .swiglu_bwd = bf_swiglu_bwd, .gelu_fwd = bf_gelu_fwd,
        .add = bf_add, .scale = bf_scale, .scale_act = bf_scale_act,
        .dropout_fwd = bf_dropout_fwd, .dropout_bwd = bf_dropout_bwd,
        .logprob_fwd = bf_logprob_fwd, .logprob_bwd = bf_logprob_bwd, .logprob_fwd_bwd = bf_logprob_fwd_bwd,
        .adamw_multi = bf_adamw_multi, .sumsq = bf_sumsq, .seq_logprob = bf_seq_logprob, .dpo_loss = bf_dpo_loss,
        .kv_alloc = bf_kv_alloc, .rope_at_fwd = bf_rope_at_fwd, .kv_write = bf_kv_write,
        .attention_cached_fwd = bf_attention_cached_fwd, .kv_gather = bf_kv_gather,
        .gather_rows = bf_gather_rows, .logits_lse_topk = bf_logits_lse_topk, .gather_cols = bf_gather_cols,
        .mem_stats = NULL,   // as the CPU backend's: host memory, measured by the process RSS
    };
    if (!cpu) cpu = backend_cpu();
    return &bf16;
}
