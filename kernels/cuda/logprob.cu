// Language-model head restricted to the rows that carry a loss (CUDA twin of
// kernels/cpu/logprob.c): log-probs of the targets, a chunk of rows at a time
// so the [n, V] logits never exist at once. Each chunk gathers its hidden rows
// into a contiguous block, computes the chunk's logits with one cuBLASLt GEMM
// and reduces every row with one block. Peak extra memory: chunk x (V + 2C)
// floats in scratch slot SCRATCH_LOGITS.
#include <cmath>
#include "cuda_common.cuh"
#include "cuda_ops.h"

// The backend's GEMM (kernels/cuda/matmul.cu): row-major C[M,N] =
// op(A)[M,K] @ op(B)[K,N] + beta * C (+ bias[N]); ta: A stored [K,M]; tb: B stored [N,K].
void cuda_gemm_rm(bool ta, bool tb, int M, int N, int K, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float *C, int64_t ldc, float beta,
                  const float *bias);

// Logits per chunk: at most this many floats (128 MiB), but at least one row.
static const size_t LOGITS_BUDGET = (size_t)32 << 20;
enum { ROW_THREADS = 512 };

static int chunk_rows(int n, int V) {
    size_t r = LOGITS_BUDGET / (size_t)V;
    if (r < 1) r = 1;
    if (r > (size_t)n) r = (size_t)n;
    return (int)r;
}

static size_t align_up(size_t x) { return (x + 63) & ~(size_t)63; }   // floats: 256 bytes

// Carve the chunk buffers out of one scratch slot: logits/grad [R,V],
// gathered hidden rows [R,C], and (backward with dh) dh rows [R,C].
struct Chunk { float *logits, *hc, *dhc; };
static Chunk chunk_buffers(int R, int C, int V, bool with_dhc) {
    size_t nl = align_up((size_t)R * V), nh = align_up((size_t)R * C);
    size_t total = nl + nh + (with_dhc ? nh : 0);
    float *base = (float *)cuda_scratch(SCRATCH_LOGITS, total * sizeof(float));
    Chunk c;
    c.logits = base;
    c.hc = base + nl;
    c.dhc = with_dhc ? base + nl + nh : NULL;
    return c;
}

// hc[i, :] = h[rows[i], :] for i < m (one block per row). With weight != NULL,
// rows of weight 0 are written as 0 instead: they carry no gradient, and a
// zero row keeps even a NaN in h out of dw.
static __global__ void gather_kernel(float *hc, const float *h, const int *rows,
                                     const float *weight, int C) {
    int i = blockIdx.x;
    float *dst = hc + (size_t)i * C;
    if (weight && weight[i] == 0.0f) {
        for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = 0.0f;
        return;
    }
    const float *src = h + (size_t)rows[i] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// (m1, s1) <- the merge of two partial log-sum-exp states (max, sum of exp(x - max))
__device__ __forceinline__ void lse_merge(float &m1, float &s1, float m2, float s2) {
    float m = fmaxf(m1, m2);
    if (m == -INFINITY) return;              // both empty
    s1 = s1 * expf(m1 - m) + s2 * expf(m2 - m);
    m1 = m;
}

// One block per row of the chunk: lse of logits[i, 0..V) (online max/sum per
// thread over a fixed stride, then a fixed-shape tree: deterministic), and
// logprob = logits[target] - lse.
static __global__ void __launch_bounds__(ROW_THREADS)
lse_kernel(float *logprob, float *lse, const float *logits, const int *targets, int V) {
    __shared__ float sm[ROW_THREADS / 32], ss[ROW_THREADS / 32];
    int i = blockIdx.x;
    const float *x = logits + (size_t)i * V;
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = x[j];
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

// In place: g[i, j] = weight[i] * (exp(logits[i, j] - lse[i]) - [j == target[i]]),
// the gradient of -weight * logprob with respect to the logits (as the CPU:
// w * softmax, then w subtracted at the target). Rows of weight 0 become 0.
static __global__ void grad_kernel(float *g, const int *targets, const float *lse,
                                   const float *weight, int V) {
    int i = blockIdx.x;
    float *x = g + (size_t)i * V;
    float wi = weight[i], l = lse[i];
    int t = targets[i];
    if (wi == 0.0f) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) x[j] = 0.0f;
        return;
    }
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = wi * expf(x[j] - l);
        if (j == t) v -= wi;
        x[j] = v;
    }
}

// dh[rows[i], :] += dhc[i, :] (rows are distinct: no two blocks share a row)
static __global__ void scatter_add_kernel(float *dh, const float *dhc, const int *rows, int C) {
    int i = blockIdx.x;
    float *dst = dh + (size_t)rows[i] * C;
    const float *src = dhc + (size_t)i * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] += src[c];
}

// logprob[n], lse[n]; h[*,C], w[V,C]; rows[n], targets[n] (device pointers)
void cuda_logprob_fwd(float *logprob, float *lse, const float *h, const float *w,
                      const int *rows, const int *targets, int n, int C, int V) {
    if (n <= 0) return;
    const int R = chunk_rows(n, V);
    Chunk cb = chunk_buffers(R, C, V, false);
    cudaStream_t st = cuda_stream();
    for (int i0 = 0; i0 < n; i0 += R) {
        int m = n - i0 < R ? n - i0 : R;
        gather_kernel<<<m, 256, 0, st>>>(cb.hc, h, rows + i0, NULL, C);
        LAUNCH_CHECK();
        // logits[m,V] = hc[m,C] @ w[V,C]^T
        cuda_gemm_rm(false, true, m, V, C, cb.hc, C, w, C, cb.logits, V, 0.0f, NULL);
        lse_kernel<<<m, ROW_THREADS, 0, st>>>(logprob + i0, lse + i0, cb.logits, targets + i0, V);
        LAUNCH_CHECK();
    }
}

// Gradient of -sum_i weight[i] * logprob[i]: dh[rows[i], :] += g @ w,
// dw[V,C] += g^T @ h[rows] (dh or dw may be NULL). Rows of weight 0 are part
// of the chunks but contribute exact zeros.
void cuda_logprob_bwd(float *dh, float *dw, const float *h, const float *w,
                      const int *rows, const int *targets, const float *lse,
                      const float *weight, int n, int C, int V) {
    if (n <= 0 || (!dh && !dw)) return;
    const int R = chunk_rows(n, V);
    Chunk cb = chunk_buffers(R, C, V, dh != NULL);
    cudaStream_t st = cuda_stream();
    for (int i0 = 0; i0 < n; i0 += R) {
        int m = n - i0 < R ? n - i0 : R;
        gather_kernel<<<m, 256, 0, st>>>(cb.hc, h, rows + i0, weight + i0, C);
        LAUNCH_CHECK();
        // recompute the chunk's logits, then turn them into dlogits in place
        cuda_gemm_rm(false, true, m, V, C, cb.hc, C, w, C, cb.logits, V, 0.0f, NULL);
        grad_kernel<<<m, ROW_THREADS, 0, st>>>(cb.logits, targets + i0, lse + i0, weight + i0, V);
        LAUNCH_CHECK();
        if (dh) {
            // dhc[m,C] = g[m,V] @ w[V,C], then added to the scattered rows
            cuda_gemm_rm(false, false, m, C, V, cb.logits, V, w, C, cb.dhc, C, 0.0f, NULL);
            scatter_add_kernel<<<m, 256, 0, st>>>(dh, cb.dhc, rows + i0, C);
            LAUNCH_CHECK();
        }
        if (dw)   // dw[V,C] += g^T @ hc: g stored [m,V] used transposed
            cuda_gemm_rm(true, false, V, C, m, cb.logits, V, cb.hc, C, dw, C, 1.0f, NULL);
    }
}
