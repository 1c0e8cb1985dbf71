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
//
// Storage: inp, weight and the forward's out are act (bf16). They are widened
// to fp32 on load (exact) and out is rounded once on store; everything in
// between is the fp32/double arithmetic above, unchanged, so the result is the
// CPU op run on the widened inputs with its output rounded to bf16 (the CPU's
// bf16 emulation). rstd, dout, dinp and dweight are fp32.
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

static const int ROWS_PER_BLOCK = 8;   // warps per block, one row each

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;   // every lane holds the same total
}

// ---- forward ------------------------------------------------------------------

// bf16 -> fp32 of the two halves of a 32-bit word (the element at the lower
// address is the low half): a shift, exact, as act_ld.
static __device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
// two fp32 -> one word of two bf16, each rounded as act_st
static __device__ __forceinline__ uint32_t bf16_pack(float lo, float hi) {
    return (uint32_t)bf16_from_f32(lo) | ((uint32_t)bf16_from_f32(hi) << 16);
}

// y = weight * (x * r) over one row, this lane's share, each element rounded
// once: how both forward kernels end. VEC8: 8 elements per 16-byte move.
template <bool VEC8>
__device__ __forceinline__ void norm_row_store(act_t *y, const act_t *x, const act_t *weight, float r, int lane,
                                               int C) {
    if (VEC8) {
        const uint4 *x8 = (const uint4 *)x, *w8 = (const uint4 *)weight;
        uint4 *y8 = (uint4 *)y;
        for (int i = lane; i < C / 8; i += 32) {
            const uint4 u = x8[i], v = w8[i];
            const uint32_t xw[4] = {u.x, u.y, u.z, u.w}, ww[4] = {v.x, v.y, v.z, v.w};
            uint32_t o[4];
#pragma unroll
            for (int k = 0; k < 4; k++)
                o[k] = bf16_pack(__fmul_rn(bf16_lo(ww[k]), __fmul_rn(bf16_lo(xw[k]), r)),
                                 __fmul_rn(bf16_hi(ww[k]), __fmul_rn(bf16_hi(xw[k]), r)));
            y8[i] = make_uint4(o[0], o[1], o[2], o[3]);
        }
    } else {
        for (int c = lane; c < C; c += 32)
            act_st(y, c, __fmul_rn(act_ld(weight, c), __fmul_rn(act_ld(x, c), r)));
    }
}

// VEC8: C % 8 == 0 and out, inp, weight 16-byte aligned (checked by the host),
// so every row starts on a 16-byte boundary and 8 bf16 move as one uint4.
// Per element the arithmetic is the same as the scalar path; only the order
// in which a lane adds its squares differs (fixed either way: deterministic).
template <bool VEC8>
__global__ void rmsnorm_fwd_kernel(act_t *out, float *rstd, const act_t *inp, const act_t *weight,
                                   float eps, int N, int C) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (n >= N) return;   // whole warp leaves together; no block-wide sync here
    const act_t *x = inp + (size_t)n * C;
    act_t *y = out + (size_t)n * C;
    double ss = 0.0;
    if (VEC8) {
        const uint4 *x8 = (const uint4 *)x;
        for (int i = lane; i < C / 8; i += 32) {
            const uint4 u = x8[i];
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float a = bf16_lo(w[k]), b = bf16_hi(w[k]);
                ss += (double)a * a; ss += (double)b * b;
            }
        }
    } else {
        for (int c = lane; c < C; c += 32) { const float a = act_ld(x, c); ss += (double)a * a; }
    }
    ss = warp_sum(ss);
    const float r = (float)(1.0 / sqrt(ss / C + eps));   // same expression as the CPU, in double
    norm_row_store<VEC8>(y, x, weight, r, lane, C);
    if (lane == 0) rstd[n] = r;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// out, inp, weight act (bf16); rstd fp32
void cuda_rmsnorm_fwd(void *out, float *rstd, const void *inp, const void *weight,
                      float eps, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const unsigned blocks = cdiv(N, ROWS_PER_BLOCK);
    cudaStream_t s = cuda_stream();
    act_t *o = (act_t *)out;
    const act_t *x = (const act_t *)inp, *w = (const act_t *)weight;
    if (C % 8 == 0 && aligned16(out) && aligned16(inp) && aligned16(weight))
        rmsnorm_fwd_kernel<true><<<blocks, 32 * ROWS_PER_BLOCK, 0, s>>>(o, rstd, x, w, eps, N, C);
    else
        rmsnorm_fwd_kernel<false><<<blocks, 32 * ROWS_PER_BLOCK, 0, s>>>(o, rstd, x, w, eps, N, C);
    LAUNCH_CHECK();
}

// ---- the residual add fused with the norm after it ---------------------------------

// res = bf16(a + b), then the forward above on the stored res: one warp per
// row, the same lane split and summation order as rmsnorm_fwd_kernel<VEC8>
// (so out and rstd are bit for bit those of add + rmsnorm_fwd), the row read
// once from a and b and written once to res and out (the second pass re-reads
// res from cache: each lane reads only elements it wrote). Each element is
// read before the same lane writes it, so res may alias a or b.
template <bool VEC8>
__global__ void residual_rmsnorm_fwd_kernel(act_t *res, act_t *out, float *rstd, const act_t *a,
                                            const act_t *b, const act_t *weight, float eps, int N, int C) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (n >= N) return;
    const size_t o = (size_t)n * C;
    double ss = 0.0;
    if (VEC8) {
        const uint4 *a8 = (const uint4 *)(a + o), *b8 = (const uint4 *)(b + o);
        uint4 *r8 = (uint4 *)(res + o);
        for (int i = lane; i < C / 8; i += 32) {
            const uint4 u = a8[i], v = b8[i];
            const uint32_t aw[4] = {u.x, u.y, u.z, u.w}, bw[4] = {v.x, v.y, v.z, v.w};
            uint32_t rw[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                rw[k] = bf16_pack(__fadd_rn(bf16_lo(aw[k]), bf16_lo(bw[k])), __fadd_rn(bf16_hi(aw[k]), bf16_hi(bw[k])));
                const float x0 = bf16_lo(rw[k]), x1 = bf16_hi(rw[k]);   // the stored values
                ss += (double)x0 * x0; ss += (double)x1 * x1;
            }
            r8[i] = make_uint4(rw[0], rw[1], rw[2], rw[3]);
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            const act_t r = __ushort_as_bfloat16(bf16_from_f32(__fadd_rn(act_ld(a, o + c), act_ld(b, o + c))));
            res[o + c] = r;
            const float x = __bfloat162float(r);
            ss += (double)x * x;
        }
    }
    ss = warp_sum(ss);
    const float r = (float)(1.0 / sqrt(ss / C + eps));
    norm_row_store<VEC8>(out + o, res + o, weight, r, lane, C);
    if (lane == 0) rstd[n] = r;
}

void cuda_residual_rmsnorm_fwd(void *res, void *out, float *rstd, const void *a, const void *b,
                               const void *weight, float eps, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const unsigned blocks = cdiv(N, ROWS_PER_BLOCK);
    act_t *rs = (act_t *)res, *o = (act_t *)out;
    const act_t *x = (const act_t *)a, *y = (const act_t *)b, *w = (const act_t *)weight;
    if (C % 8 == 0 && aligned16(res) && aligned16(out) && aligned16(a) && aligned16(b) && aligned16(weight))
        residual_rmsnorm_fwd_kernel<true><<<blocks, 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(rs, o, rstd, x, y, w,
                                                                                             eps, N, C);
    else
        residual_rmsnorm_fwd_kernel<false><<<blocks, 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(rs, o, rstd, x, y, w,
                                                                                              eps, N, C);
    LAUNCH_CHECK();
}

// ---- backward: dinp -------------------------------------------------------------

// With y = w x r:  dx_j = r w_j g_j - x_j r^3/C * sum_i g_i w_i x_i.  One warp per row.
// Scalar bf16 loads: this kernel's traffic is dominated by the fp32 dout and
// dinp, and x / weight are read twice (the second time from cache).
__global__ void rmsnorm_bwd_dinp_kernel(float *dinp, const float *dout, const act_t *inp,
                                        const act_t *weight, const float *rstd, int N, int C) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (n >= N) return;
    const act_t *x = inp + (size_t)n * C;
    const float *g = dout + (size_t)n * C;
    float *dx = dinp + (size_t)n * C;
    const float r = rstd[n];
    double dot = 0.0;
    // CPU term: ((double)g * w) * x, each product rounded once (g*w is exact)
    for (int c = lane; c < C; c += 32)
        dot += __dmul_rn((double)g[c] * act_ld(weight, c), (double)act_ld(x, c));
    dot = warp_sum(dot);
    // CPU: (float)(dot * r * r * r / C), evaluated in double left to right
    const float k = (float)(__dmul_rn(__dmul_rn(__dmul_rn(dot, (double)r), (double)r), (double)r) / C);
    // CPU: dx += r * w * g - k * x   (unfused, left to right)
    for (int c = lane; c < C; c += 32)
        dx[c] = __fadd_rn(dx[c], __fsub_rn(__fmul_rn(__fmul_rn(r, act_ld(weight, c)), g[c]),
                                           __fmul_rn(k, act_ld(x, c))));
}

// ---- backward: dweight (column sums over rows, two deterministic stages) ---------

// Stage 1: block (32, 8) covers 32 columns x one chunk of DW_CHUNK rows. Thread
// (tx, ty) sums rows ty, ty+8, ... of the chunk in order for column tx; the 8
// row-phases are then added in ty order. partial[chunk, c]. The partition
// depends only on N and C, so the result is the same on every run.
static const int DW_COLS = 32, DW_PHASES = 8, DW_CHUNK = 128;

__global__ void rmsnorm_bwd_dw_partial_kernel(float *partial, const float *dout, const act_t *inp,
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
            s = __fadd_rn(s, __fmul_rn(__fmul_rn(dout[o], act_ld(inp, o)), rstd[n]));   // CPU: g * x * r
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

// dinp, dweight, dout, rstd fp32; inp, weight act (bf16)
void cuda_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const void *inp,
                      const void *weight, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t s = cuda_stream();
    const act_t *x = (const act_t *)inp, *w = (const act_t *)weight;
    if (dinp) {
        rmsnorm_bwd_dinp_kernel<<<cdiv(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, s>>>(
            dinp, dout, x, w, rstd, N, C);
        LAUNCH_CHECK();
    }
    if (dweight) {
        const int chunks = (int)cdiv(N, DW_CHUNK);
        float *partial = (float *)cuda_scratch(SCRATCH_REDUCE, (size_t)chunks * C * sizeof(float));
        dim3 grid(chunks, cdiv(C, DW_COLS)), block(DW_COLS, DW_PHASES);
        rmsnorm_bwd_dw_partial_kernel<<<grid, block, 0, s>>>(partial, dout, x, rstd, N, C);
        LAUNCH_CHECK();
        rmsnorm_bwd_dw_final_kernel<<<cdiv(C, 256), 256, 0, s>>>(dweight, partial, chunks, C);
        LAUNCH_CHECK();
    }
}
