// Language-model head restricted to the rows that carry a loss (CUDA twin of
// kernels/cpu/logprob.c): log-probs of the targets, a chunk of rows at a time
// so the [n, V] logits never exist at once. Each chunk gathers its hidden rows
// (bf16, as stored) into a contiguous block, computes the chunk's logits with
// one cuBLASLt GEMM (bf16 x bf16, fp32 accumulate, fp32 logits) and reduces
// every row with one block, in fp32. The backward recomputes the fp32 logits
// (the fused forward-backward of SFT reuses the forward's) and carries g = (softmax - onehot) * weight into its two GEMMs as two bf16
// parts, hi = bf16(g) and lo = bf16(g - hi) (~16 significant bits: a single
// bf16 rounding measurably slowed training, docs/RESULTS.md), each product
// accumulating in fp32 into the fp32 gradients. Peak extra memory: chunk x V x
// (4 + 2 x 2 in the backward) bytes plus chunk x C x (2 + 4) in scratch slot
// SCRATCH_LOGITS.
#include <cmath>
#include "cuda_common.cuh"
#include "cuda_ops.h"

// Logits per chunk: at most this many floats (128 MiB), but at least one row.
static const size_t LOGITS_BUDGET = (size_t)32 << 20;
enum { ROW_THREADS = 512 };

static int chunk_rows(int n, int V) {
    size_t r = LOGITS_BUDGET / (size_t)V;
    if (r < 1) r = 1;
    if (r > (size_t)n) r = (size_t)n;
    return (int)r;
}

static size_t align_up(size_t bytes) { return (bytes + 255) & ~(size_t)255; }
// a row stride of n elements of `size` bytes, rounded up to 16 bytes
static int stride16(int n, size_t size) {
    const int per = (int)(16 / size);
    return (n + per - 1) / per * per;
}

// Carve the chunk buffers out of one scratch slot: fp32 logits [R,V], the
// backward's bf16 dlogits [R,V], gathered bf16 hidden rows [R,C] and (backward
// with dh) fp32 dh rows [R,C]. Pieces start 256-byte aligned and rows 16-byte
// aligned (ld* are the padded row strides, in elements; the padding is never
// read), so cuBLASLt can pick its vectorised tensor-core kernels whatever V
// and C are.
struct Chunk {
    float *logits; act_t *g, *glo; act_t *hc; float *dhc;   // g, glo: the gradient's hi and lo parts
    int ldl, ldg, ldh, ldd;
};
static Chunk chunk_buffers(int R, int C, int V, bool with_g, bool with_dhc) {
    Chunk c;
    c.ldl = stride16(V, sizeof(float));
    c.ldg = stride16(V, sizeof(act_t));
    c.ldh = stride16(C, sizeof(act_t));
    c.ldd = stride16(C, sizeof(float));
    const size_t nl = align_up((size_t)R * c.ldl * sizeof(float));
    const size_t ng = with_g ? 2 * align_up((size_t)R * c.ldg * sizeof(act_t)) : 0;   // hi and lo
    const size_t nh = align_up((size_t)R * c.ldh * sizeof(act_t));
    const size_t nd = with_dhc ? align_up((size_t)R * c.ldd * sizeof(float)) : 0;
    char *base = (char *)cuda_scratch(SCRATCH_LOGITS, nl + ng + nh + nd);
    c.logits = (float *)base;
    c.g = with_g ? (act_t *)(base + nl) : NULL;
    c.glo = with_g ? (act_t *)(base + nl + ng / 2) : NULL;
    c.hc = (act_t *)(base + nl + ng);
    c.dhc = with_dhc ? (float *)(base + nl + ng + nh) : NULL;
    return c;
}

// hc[i, :] = h[rows[i], :] for i < m (one block per row; bf16 copied as is;
// hc's row stride ldh). With weight != NULL, rows of weight 0 are written as
// 0 instead: they carry no gradient, and a zero row keeps even a NaN in h out
// of dw.
static __global__ void gather_kernel(act_t *hc, int ldh, const act_t *h, const int *rows,
                                     const float *weight, int C) {
    int i = blockIdx.x;
    act_t *dst = hc + (size_t)i * ldh;
    if (weight && weight[i] == 0.0f) {
        for (int c = threadIdx.x; c < C; c += blockDim.x) act_st(dst, c, 0.0f);
        return;
    }
    const act_t *src = h + (size_t)rows[i] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// (m1, s1) <- the merge of two partial log-sum-exp states (max, sum of exp(x - max))
__device__ __forceinline__ void lse_merge(float &m1, float &s1, float m2, float s2) {
    float m = fmaxf(m1, m2);
    if (m == -INFINITY) return;              // both empty
    s1 = s1 * expf(m1 - m) + s2 * expf(m2 - m);
    m1 = m;
}

// One block per row of the chunk: lse of logits[i, 0..V) (row stride ldl;
// online max/sum per thread over a fixed stride, then a fixed-shape tree:
// deterministic), and logprob = logits[target] - lse.
static __global__ void __launch_bounds__(ROW_THREADS)
lse_kernel(float *logprob, float *lse, const float *logits, int ldl, const int *targets, int V) {
    __shared__ float sm[ROW_THREADS / 32], ss[ROW_THREADS / 32];
    int i = blockIdx.x;
    const float *x = logits + (size_t)i * ldl;
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = x[j];
        if (v == -INFINITY) continue;   // adds nothing (and -inf - -inf would be NaN)
        if (v > m) { s = s * expf(m - v) + 1.0f; m = v; }
        else s += expf(v - m);
    }
    for (int off = 16; off > 0; off >>= 1) {
        float m2 = __shfl_down_sync(0xffffffffu, m, off);
        float s2 = __shfl_down_sync(0xffffffffu, s, off);
        lse_merge(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = sm[0], S = ss[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) lse_merge(M, S, sm[w], ss[w]);
        float l = M + logf(S);
        lse[i] = l;
        logprob[i] = x[targets[i]] - l;
    }
}

// v = weight[i] * (exp(logits[i, j] - lse[i]) - [j == target[i]]), the
// gradient of -weight * logprob with respect to the logits (as the CPU: w *
// softmax, then w subtracted at the target; fp32 from the fp32 logits), stored
// as g = bf16(v) and glo = bf16(v - g) for the bf16 GEMMs. Rows of weight 0
// become 0.
static __global__ void grad_kernel(act_t *g, act_t *glo, int ldg, const float *logits, int ldl,
                                   const int *targets, const float *lse, const float *weight, int V) {
    int i = blockIdx.x;
    const float *x = logits + (size_t)i * ldl;
    act_t *gi = g + (size_t)i * ldg, *li = glo + (size_t)i * ldg;
    float wi = weight[i], l = lse[i];
    int t = targets[i];
    if (wi == 0.0f) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) { act_st(gi, j, 0.0f); act_st(li, j, 0.0f); }
        return;
    }
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = __fmul_rn(wi, expf(x[j] - l));
        if (j == t) v = __fsub_rn(v, wi);
        act_st(gi, j, v);
        act_st(li, j, __fsub_rn(v, act_ld(gi, j)));
    }
}

// dh[rows[i], :] += dhc[i, :] (dhc's row stride ldd; rows are distinct: no
// two blocks share a row). Rows of weight 0 are left untouched, as the CPU
// skips them (their dhc row is exactly 0 anyway: this keeps a -0.0 in dh).
static __global__ void scatter_add_kernel(float *dh, const float *dhc, int ldd, const int *rows,
                                          const float *weight, int C) {
    int i = blockIdx.x;
    if (weight[i] == 0.0f) return;
    float *dst = dh + (size_t)rows[i] * C;
    const float *src = dhc + (size_t)i * ldd;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] += src[c];
}

// logprob[n], lse[n]; h[*,C], w[V,C] act; rows[n], targets[n] (device pointers):
// the one-pass head without its gradient
void cuda_logprob_fwd(float *logprob, float *lse, const void *h, const void *w,
                      const int *rows, const int *targets, int n, int C, int V) {
    cuda_logprob_fwd_bwd(logprob, lse, NULL, NULL, h, w, rows, targets, NULL, n, C, V);
}

// The chunk's fp32 logits (in cb.logits, rows i0 .. i0+m) into the gradient
// of -sum_i weight[i] * logprob[i]: g = (softmax - onehot) * weight as its two
// bf16 parts, then dh[rows[i], :] += g @ w and dw[V,C] += g^T @ hc (two
// products each; dh or dw may be NULL).
static void chunk_grad(const Chunk &cb, float *dh, float *dw, const void *w, const int *rows,
                       const int *targets, const float *lse, const float *weight, int i0, int m, int C, int V) {
    cudaStream_t st = cuda_stream();
    grad_kernel<<<m, ROW_THREADS, 0, st>>>(cb.g, cb.glo, cb.ldg, cb.logits, cb.ldl, targets + i0, lse + i0,
                                           weight + i0, V);
    LAUNCH_CHECK();
    if (dh) {
        // dhc[m,C] (fp32) = (g + glo)[m,V] @ w[V,C], then added to the scattered rows
        cuda_gemm_rm(false, false, m, C, V, cb.g, CUDA_R_16BF, cb.ldg, w, CUDA_R_16BF, C,
                     cb.dhc, CUDA_R_32F, cb.ldd, 0.0f, NULL);
        cuda_gemm_rm(false, false, m, C, V, cb.glo, CUDA_R_16BF, cb.ldg, w, CUDA_R_16BF, C,
                     cb.dhc, CUDA_R_32F, cb.ldd, 1.0f, NULL);
        scatter_add_kernel<<<m, 256, 0, st>>>(dh, cb.dhc, cb.ldd, rows + i0, weight + i0, C);
        LAUNCH_CHECK();
    }
    if (dw) {   // dw[V,C] += (g + glo)^T @ hc: g stored [m,V] used transposed
        cuda_gemm_rm(true, false, V, C, m, cb.g, CUDA_R_16BF, cb.ldg, cb.hc, CUDA_R_16BF, cb.ldh,
                     dw, CUDA_R_32F, C, 1.0f, NULL);
        cuda_gemm_rm(true, false, V, C, m, cb.glo, CUDA_R_16BF, cb.ldg, cb.hc, CUDA_R_16BF, cb.ldh,
                     dw, CUDA_R_32F, C, 1.0f, NULL);
    }
}

// Gradient of -sum_i weight[i] * logprob[i] (chunk_grad), recomputing each
// chunk's logits. Rows of weight 0 are part of the chunks but contribute
// exact zeros.
void cuda_logprob_bwd(float *dh, float *dw, const void *h, const void *w,
                      const int *rows, const int *targets, const float *lse,
                      const float *weight, int n, int C, int V) {
    if (n <= 0 || (!dh && !dw)) return;
    const int R = chunk_rows(n, V);
    Chunk cb = chunk_buffers(R, C, V, true, dh != NULL);
    cudaStream_t st = cuda_stream();
    for (int i0 = 0; i0 < n; i0 += R) {
        int m = n - i0 < R ? n - i0 : R;
        gather_kernel<<<m, 256, 0, st>>>(cb.hc, cb.ldh, (const act_t *)h, rows + i0, weight + i0, C);
        LAUNCH_CHECK();
        // recompute the chunk's fp32 logits
        cuda_gemm_rm(false, true, m, V, C, cb.hc, CUDA_R_16BF, cb.ldh, w, CUDA_R_16BF, C,
                     cb.logits, CUDA_R_32F, cb.ldl, 0.0f, NULL);
        chunk_grad(cb, dh, dw, w, rows, targets, lse, weight, i0, m, C, V);
    }
}

// Forward and backward in one pass (weights known before the forward: SFT):
// each chunk's logits are computed once, reduced to log-probs and lse as
// cuda_logprob_fwd does, then turned into the gradient (chunk_grad): the
// logits GEMM of the backward is saved. The hidden rows are gathered as they
// are (no zeroing by weight), since every row needs its log-prob.
void cuda_logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const void *h, const void *w,
                          const int *rows, const int *targets, const float *weight, int n, int C, int V) {
    if (n <= 0) return;
    const int R = chunk_rows(n, V);
    const bool grad = dh || dw;
    Chunk cb = chunk_buffers(R, C, V, grad, dh != NULL);
    cudaStream_t st = cuda_stream();
    for (int i0 = 0; i0 < n; i0 += R) {
        int m = n - i0 < R ? n - i0 : R;
        gather_kernel<<<m, 256, 0, st>>>(cb.hc, cb.ldh, (const act_t *)h, rows + i0, NULL, C);
        LAUNCH_CHECK();
        cuda_gemm_rm(false, true, m, V, C, cb.hc, CUDA_R_16BF, cb.ldh, w, CUDA_R_16BF, C,
                     cb.logits, CUDA_R_32F, cb.ldl, 0.0f, NULL);
        lse_kernel<<<m, ROW_THREADS, 0, st>>>(logprob + i0, lse + i0, cb.logits, cb.ldl, targets + i0, V);
        LAUNCH_CHECK();
        if (grad) chunk_grad(cb, dh, dw, w, rows, targets, lse, weight, i0, m, C, V);
    }
}
