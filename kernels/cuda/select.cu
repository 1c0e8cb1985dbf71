// Token selection for decoding (CUDA twin of kernels/cpu/select.c): per row of
// logits, the log-softmax normaliser and the top k entries; and a CSR gather
// of chosen columns (the catalogue trie's allowed children). The host then
// downloads N*k + (allowed) numbers per step instead of N*V logits.
// Deterministic: fixed reduction trees, and a total order (value, then id) for
// the top k. The normaliser is summed in double, in a different order than
// the CPU's index order (last-bit differences only). Logits are act (bf16):
// every entry is widened to fp32 on load, so the values reported are the
// stored values exactly.
#include <cmath>
#include "../backend.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"

enum { SEL_THREADS = 512, SEL_WARPS = SEL_THREADS / 32 };

// a candidate (value, id); id < 0: none. "a ranks before b": a exists and
// (b does not, or a's value is larger, or equal with a lower id).
struct Cand { float v; int id; };

static __device__ __forceinline__ bool before(Cand a, Cand b) {
    return a.id >= 0 && (b.id < 0 || a.v > b.v || (a.v == b.v && a.id < b.id));
}

static __device__ __forceinline__ Cand warp_best(Cand c) {
    for (int off = 16; off > 0; off >>= 1) {
        Cand o;
        o.v = __shfl_xor_sync(0xffffffffu, c.v, off);
        o.id = __shfl_xor_sync(0xffffffffu, c.id, off);
        if (before(o, c)) c = o;
    }
    return c;
}

// the best of the block's candidates, returned to every thread
static __device__ Cand block_best(Cand c, Cand *sm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    c = warp_best(c);
    if (lane == 0) sm[warp] = c;
    __syncthreads();
    if (warp == 0) {
        Cand w = lane < SEL_WARPS ? sm[lane] : Cand{-INFINITY, -1};
        w = warp_best(w);
        if (lane == 0) sm[SEL_WARPS] = w;
    }
    __syncthreads();
    Cand r = sm[SEL_WARPS];
    __syncthreads();   // sm is reused by the next call
    return r;
}

// this thread's best entry x[v] (v = tid, tid + T, ...) ranked after `after`
// (after.id < 0: no bound); -INFINITY entries never count
static __device__ Cand thread_best(const act_t *x, int V, Cand after) {
    Cand c{-INFINITY, -1};
    for (int v = threadIdx.x; v < V; v += SEL_THREADS) {
        const float xv = act_ld(x, v);
        if (xv == -INFINITY) continue;
        const Cand e{xv, v};
        if (after.id >= 0 && !before(after, e)) continue;
        if (before(e, c)) c = e;
    }
    return c;
}

// One block per row. 1) max, 2) sum of exp(x - max) in double, 3) k rounds
// of a block arg-best over per-thread candidates: each thread keeps its own
// best entry not yet listed, so after a round only the winner's owner rescans
// its V/T entries.
static __global__ void __launch_bounds__(SEL_THREADS)
lse_topk_kernel(double *lse, int *top_id, float *top_val, const act_t *logits, int V, int k) {
    __shared__ Cand sm_c[SEL_WARPS + 1];
    __shared__ float sm_f[SEL_WARPS];
    __shared__ double sm_d[SEL_WARPS];
    const int n = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const act_t *x = logits + (size_t)n * V;

    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += SEL_THREADS) mx = fmaxf(mx, act_ld(x, v));
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (lane == 0) sm_f[warp] = mx;
    __syncthreads();
    mx = sm_f[0];
    for (int w = 1; w < SEL_WARPS; w++) mx = fmaxf(mx, sm_f[w]);

    double s = 0.0;
    if (mx != -INFINITY)
        for (int v = threadIdx.x; v < V; v += SEL_THREADS) s += exp((double)act_ld(x, v) - (double)mx);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) sm_d[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int w = 0; w < SEL_WARPS; w++) t += sm_d[w];
        lse[n] = mx == -INFINITY ? -INFINITY : (double)mx + log(t);
    }
    if (k <= 0) return;

    int *ti = top_id + (size_t)n * k;
    float *tv = top_val + (size_t)n * k;
    Cand mine = thread_best(x, V, Cand{-INFINITY, -1});
    for (int i = 0; i < k; i++) {
        const Cand b = block_best(mine, sm_c);   // block-uniform
        if (b.id < 0) {                          // fewer than k listed entries
            for (int j = i + (int)threadIdx.x; j < k; j += SEL_THREADS) { ti[j] = -1; tv[j] = -INFINITY; }
            return;
        }
        if (threadIdx.x == 0) { ti[i] = b.id; tv[i] = b.v; }
        if (b.id % SEL_THREADS == (int)threadIdx.x) mine = thread_best(x, V, b);
    }
}

void cuda_logits_lse_topk(double *lse, int *top_id, float *top_val, const void *logits, int N, int V, int k) {
    if (N <= 0) return;
    lse_topk_kernel<<<(unsigned)N, SEL_THREADS, 0, cuda_stream()>>>(lse, top_id, top_val,
                                                                   (const act_t *)logits, V, k);
    LAUNCH_CHECK();
}

// out[j] = logits[n, cols[src[n] + j - off[n]]] for off[n] <= j < off[n+1];
// one block per row (widened: out is fp32)
static __global__ void gather_cols_kernel(float *out, const act_t *logits, const int *off, const int *src,
                                          const int *cols, int V) {
    const int n = blockIdx.x;
    const act_t *x = logits + (size_t)n * V;
    const int *c = cols + src[n];   // row n's slice
    for (int j = off[n] + (int)threadIdx.x; j < off[n + 1]; j += blockDim.x) out[j] = act_ld(x, c[j - off[n]]);
}

void cuda_gather_cols(float *out, const void *logits, const int *off, const int *src, const int *cols, int N, int V) {
    if (N <= 0) return;
    gather_cols_kernel<<<(unsigned)N, 128, 0, cuda_stream()>>>(out, (const act_t *)logits, off, src, cols, V);
    LAUNCH_CHECK();
}
