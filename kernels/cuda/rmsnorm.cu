// RMSNorm as in Llama (twin of kernels/cpu/rmsnorm.c):
// out = weight * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps).
//
// Row statistics: one warp per row. The CPU accumulates the sum of squares
// (and the backward's dot product) in double, "so the mean of squares does
// not lose the small terms"; we do the same (products of floats are exact in
// double), so rstd matches the CPU up to the summation order of doubles, i.e.
// almost always bit for bit. The cost is a few double adds per element of a
// memory-bound kernel. Warp reductions use a fixed xor butterfly:
// deterministic. Elementwise parts use _rn intrinsics so nvcc does not fuse
// them into FMAs that the (ISO C, unfused) CPU build does not do.
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

static const int ROWS_PER_BLOCK = 8;   // warps per block, one row each

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;   // every lane holds the same total
}

// ---- forward ------------------------------------------------------------------

// vec4: C % 4 == 0 and all row pointers 16-byte aligned (checked by the host)
template <bool VEC4>
__global__ void rmsnorm_fwd_kernel(float *out, float *rstd, const float *inp, const float *weight,
                                   float eps, int N, int C) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (n >= N) return;   // whole warp leaves together; no block-wide sync here
    const float *x = inp + (size_t)n * C;
    float *y = out + (size_t)n * C;
    double ss = 0.0;
    if (VEC4) {
        const float4 *x4 = (const float4 *)x;
        for (int i = lane; i < C / 4; i += 32) {
            float4 v = x4[i];
            ss += (double)v.x * v.x; ss += (double)v.y * v.y;
            ss += (double)v.z * v.z; ss += (double)v.w * v.w;
        }
    } else {
        for (int c = lane; c < C; c += 32) ss += (double)x[c] * x[c];
    }
    ss = warp_sum(ss);
    const float r = (float)(1.0 / sqrt(ss / C + eps));   // same expression as the CPU, in double
    if (VEC4) {
        const float4 *x4 = (const float4 *)x, *w4 = (const float4 *)weight;
        float4 *y4 = (float4 *)y;
        for (int i = lane; i < C / 4; i += 32) {
            float4 v = x4[i], w = w4[i], o;
            o.x = __fmul_rn(w.x, __fmul_rn(v.x, r));
            o.y = __fmul_rn(w.y, __fmul_rn(v.y, r));
            o.z = __fmul_rn(w.z, __fmul_rn(v.z, r));
            o.w = __fmul_rn(w.w, __fmul_rn(v.w, r));
            y4[i] = o;
        }
    } else {
        for (int c = lane; c < C; c += 32) y[c] = __fmul_rn(weight[c], __fmul_rn(x[c], r));
    }
    if (lane == 0) rstd[n] = r;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

void cuda_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight,
                      float eps, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const unsigned blocks = cdiv(N, ROWS_PER_BLOCK);
    cudaStream_t s = cuda_stream();
    if (C % 4 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight))
        rmsnorm_fwd_kernel<true><<<blocks, 32 * ROWS_PER_BLOCK, 0, s>>>(out, rstd, inp, weight, eps, N, C);
    else
        rmsnorm_fwd_kernel<false><<<blocks, 32 * ROWS_PER_BLOCK, 0, s>>>(out, rstd, inp, weight, eps, N, C);
    LAUNCH_CHECK();
}

// ---- backward: dinp -------------------------------------------------------------

// With y = w x r:  dx_j = r w_j g_j - x_j r^3/C * sum_i g_i w_i x_i.  One warp per row.
__global__ void rmsnorm_bwd_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                        const float *weight, const float *rstd, int N, int C) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (n >= N) return;
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float *dx = dinp + (size_t)n * C;
    const float r = rstd[n];
    double dot = 0.0;
    // CPU term: ((double)g * w) * x, each product rounded once (g*w is exact)
    for (int c = lane; c < C; c += 32) dot += __dmul_rn((double)g[c] * weight[c], (double)x[c]);
    dot = warp_sum(dot);
    // CPU: (float)(dot * r * r * r / C), evaluated in double left to right
    const float k = (float)(__dmul_rn(__dmul_rn(__dmul_rn(dot, (double)r), (double)r), (double)r) / C);
    // CPU: dx += r * w * g - k * x   (unfused, left to right)
    for (int c = lane; c < C; c += 32)
        dx[c] = __fadd_rn(dx[c], __fsub_rn(__fmul_rn(__fmul_rn(r, weight[c]), g[c]),
                                           __fmul_rn(k, x[c])));
}

// ---- backward: dweight (column sums over rows, two deterministic stages) ---------

// Stage 1: block (32, 8) covers 32 columns x one chunk of DW_CHUNK rows. Thread
// (tx, ty) sums rows ty, ty+8, ... of the chunk in order for column tx; the 8
// row-phases are then added in ty order. partial[chunk, c]. The partition
// depends only on N and C, so the result is the same on every run.
static const int DW_COLS = 32, DW_PHASES = 8, DW_CHUNK = 128;

__global__ void rmsnorm_bwd_dw_partial_kernel(float *partial, const float *dout, const float *inp,
                                              const float *rstd, int N, int C) {
    __shared__ float sh[DW_PHASES][DW_COLS + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.y * DW_COLS + tx;
    const int chunk = blockIdx.x;
    const int n0 = chunk * DW_CHUNK;
    const int n1 = min(n0 + DW_CHUNK, N);
    float s = 0.0f;
    if (c < C)
        for (int n = n0 + ty; n < n1; n += DW_PHASES) {
            size_t o = (size_t)n * C + c;
            s = __fadd_rn(s, __fmul_rn(__fmul_rn(dout[o], inp[o]), rstd[n]));   // CPU: g * x * r
        }
    sh[ty][tx] = s;
    __syncthreads();   // reached by every thread: no early return above
    if (ty == 0 && c < C) {
        float t = sh[0][tx];
        for (int p = 1; p < DW_PHASES; p++) t += sh[p][tx];
        partial[(size_t)chunk * C + c] = t;
    }
}

// Stage 2: one thread per column adds the chunk partials in chunk order.
__global__ void rmsnorm_bwd_dw_final_kernel(float *dweight, const float *partial, int chunks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(size_t)k * C + c];
    dweight[c] += s;
}

void cuda_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t s = cuda_stream();
    if (dinp) {
        rmsnorm_bwd_dinp_kernel<<<cdiv(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, s>>>(
            dinp, dout, inp, weight, rstd, N, C);
        LAUNCH_CHECK();
    }
    if (dweight) {
        const int chunks = (int)cdiv(N, DW_CHUNK);
        float *partial = (float *)cuda_scratch(SCRATCH_REDUCE, (size_t)chunks * C * sizeof(float));
        dim3 grid(chunks, cdiv(C, DW_COLS)), block(DW_COLS, DW_PHASES);
        rmsnorm_bwd_dw_partial_kernel<<<grid, block, 0, s>>>(partial, dout, inp, rstd, N, C);
        LAUNCH_CHECK();
        rmsnorm_bwd_dw_final_kernel<<<cdiv(C, 256), 256, 0, s>>>(dweight, partial, chunks, C);
        LAUNCH_CHECK();
    }
}
