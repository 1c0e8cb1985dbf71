// The optimizer step and the gradient-norm reduction (twins of cpu_adamw_multi
// and cpu_sumsq in kernels/cpu/backend_cpu.c).
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// ---- AdamW --------------------------------------------------------------------

// Same arithmetic, in the same order, as adamw_tensor in backend_cpu.c
// (PyTorch's single-tensor AdamW): decay first, m by lerp, denom =
// sqrt(v)/sqrt(bc2) + eps, step = lr/bc1. The CPU is ISO C (no FMA
// contraction) with IEEE sqrt and division; the _rn intrinsics make nvcc do
// exactly those roundings (no contraction, no approximate sqrt/div), so p, m, v
// match the CPU bit for bit. The scalars decay, step, sqrt(bc2) are recomputed
// on the device for the same reason (a host compiler with FMA contraction could
// fold 1 - lr*wd); it costs a division and a square root per element of a
// memory-bound kernel.
//
// One launch for the whole flat buffer: every block walks the table in order
// and takes its grid-stride share of each tensor, so every tensor, large or
// small, is spread over the whole grid and no per-tensor launch is needed.
// The table entry is read by every thread of a block at once (a broadcast).
// pc is the bf16 compute copy: each new p is also stored rounded once (round
// to nearest even), so the next forward needs no separate conversion pass.
static __global__ void adamw_multi_kernel(float *p, act_t *pc, const float *g, float *m, float *v, size_t n,
                                          const AdamwTensor *table, int n_tensors, float lr, float beta1,
                                          float beta2, float eps, float wd, float bc1, float bc2,
                                          float grad_scale) {
    const float step = __fdiv_rn(lr, bc1);
    const float bc2_sqrt = __fsqrt_rn(bc2);
    const float om_b1 = __fsub_rn(1.0f, beta1), om_b2 = __fsub_rn(1.0f, beta2);
    for (int t = 0; t < n_tensors; t++) {
        const AdamwTensor e = table[t];
        if (e.offset > n || e.numel > n - e.offset) continue;   // outside the buffer (the CPU twin stops): untouched
        const float decay = __fsub_rn(1.0f, __fmul_rn(lr, e.decay ? wd : 0.0f));
        float *pt = p + e.offset, *mt = m + e.offset, *vt = v + e.offset;
        act_t *pct = pc + e.offset;
        const float *gt = g + e.offset;
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel;
             i += (size_t)gridDim.x * blockDim.x) {
            const float gi = __fmul_rn(gt[i], grad_scale);
            const float m0 = mt[i];
            // mi = m + (1 - beta1) * (gi - m)
            const float mi = __fadd_rn(m0, __fmul_rn(om_b1, __fsub_rn(gi, m0)));
            // vi = beta2 * v + (1 - beta2) * (gi * gi)
            const float vi = __fadd_rn(__fmul_rn(beta2, vt[i]), __fmul_rn(om_b2, __fmul_rn(gi, gi)));
            mt[i] = mi;
            vt[i] = vi;
            // p = p * decay - step * (mi / (sqrt(vi) / bc2_sqrt + eps))
            const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
            const float pi = __fsub_rn(__fmul_rn(pt[i], decay), __fmul_rn(step, __fdiv_rn(mi, denom)));
            pt[i] = pi;
            act_st(pct, i, pi);
        }
    }
}

// n (the buffer's size) sizes the grid; the table itself stays on the device.
// pc (act, same layout as p) is required: on this backend act is bf16, so it
// is always a separate buffer (pc == p is only allowed when act is fp32).
void cuda_adamw_multi(float *p, void *pc, const float *g, float *m, float *v, size_t n,
                      const AdamwTensor *table, int n_tensors, float lr, float beta1, float beta2,
                      float eps, float wd, float bc1, float bc2, float grad_scale) {
    if (n == 0 || n_tensors <= 0) return;
    if (!pc || pc == (void *)p)
        cuda_fail("adamw_multi", "the bf16 compute copy pc must be a buffer of its own", __FILE__, __LINE__);
    size_t blocks = (n + 255) / 256;
    if (blocks > 4096) blocks = 4096;   // grid-stride beyond that: enough to fill any current GPU
    adamw_multi_kernel<<<(unsigned)blocks, 256, 0, cuda_stream()>>>(p, (act_t *)pc, g, m, v, n, table, n_tensors,
                                                                    lr, beta1, beta2, eps, wd, bc1, bc2,
                                                                    grad_scale);
    LAUNCH_CHECK();
}

// ---- sum of squares -------------------------------------------------------------

// Deterministic: the grid size depends only on n; thread (b, t) sums the
// elements b*256 + t + k*G*256 in increasing k in double (each product of
// floats is exact in double); each block reduces its 256 sums in a fixed
// tree into partial[b]; one block then sums the G partials the same way.
// The order differs from the CPU's (per-thread contiguous slices), so only
// rounding in the last bits of a double can differ.
static const int SQ_THREADS = 256, SQ_MAX_BLOCKS = 1024;

// Fixed-shape block reduction (xor butterfly in each warp, then warp totals
// in warp order). blockDim.x == SQ_THREADS. The result is valid in thread 0.
__device__ double block_sum(double v) {
    __shared__ double warp_tot[SQ_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_tot[warp] = v;
    __syncthreads();
    double t = 0.0;
    if (threadIdx.x == 0)
        for (int w = 0; w < SQ_THREADS / 32; w++) t += warp_tot[w];
    return t;
}

__global__ void sumsq_partial_kernel(double *partial, const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = block_sum(s);   // every thread of the block gets here: no early exit above
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// one block: thread t sums partials t, t+256, ... in order, then the block tree
__global__ void sumsq_final_kernel(double *out, const double *partial, int blocks) {
    double s = 0.0;
    for (int b = threadIdx.x; b < blocks; b += blockDim.x) s += partial[b];
    s = block_sum(s);
    if (threadIdx.x == 0) *out = s;
}

double cuda_sumsq(const float *x, size_t n) {
    if (n == 0) return 0.0;
    size_t b = (n + SQ_THREADS - 1) / SQ_THREADS;
    const int blocks = (int)(b < (size_t)SQ_MAX_BLOCKS ? b : (size_t)SQ_MAX_BLOCKS);
    // partials, then the total in the last slot
    double *buf = (double *)cuda_scratch(SCRATCH_REDUCE, (size_t)(blocks + 1) * sizeof(double));
    cudaStream_t s = cuda_stream();
    sumsq_partial_kernel<<<blocks, SQ_THREADS, 0, s>>>(buf, x, n);
    LAUNCH_CHECK();
    sumsq_final_kernel<<<1, SQ_THREADS, 0, s>>>(buf + blocks, buf, blocks);
    LAUNCH_CHECK();
    double total = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&total, buf + blocks, sizeof total, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));   // total is read right below
    return total;
}
