// SwiGLU gating of the Llama MLP (twin of kernels/cpu/swiglu.c):
// out = silu(gate) * up, silu(g) = g * sigmoid(g), sigmoid(g) = 1 / (1 + e^-g).
// e^x is cpu_expf() from kernels/cpu/cpu_ops.h ported instruction for
// instruction (same constants, same range reduction, same unfused IEEE float
// ops via _rn intrinsics, which nvcc never contracts into FMAs), so the
// results are bit-identical to the CPU's. Elementwise, grid-stride.
//
// Numerics: gate, up and the forward's out are act (bf16): inputs widened to
// fp32 on load, the fp32 formula unchanged, out rounded once on store (what
// the CPU's bf16 emulation does around the fp32 op). Gradients are fp32.
// Loads are scalar bf16 (a warp still reads 64 contiguous bytes): n and the
// pointers' alignment are arbitrary, and the kernels are memory-bound either way.
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// See cpu_expf: e^x = 2^n e^r, n = round(x / ln2) by the 1.5*2^23 trick,
// |r| <= ln2/2, e^r by the Cephes degree-6 polynomial. x < -87 -> 0,
// x > 88 -> +inf, NaN stays NaN.
__device__ __forceinline__ float sprec_expf(float x) {
    const float xc = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float v = __fadd_rn(__fmul_rn(xc, 1.44269504f), 12582912.0f);
    const float n = __fsub_rn(v, 12582912.0f);
    const float r = __fsub_rn(__fsub_rn(xc, __fmul_rn(n, 0.693359375f)), __fmul_rn(n, -2.12194440e-4f));
    float p = 1.9875691500e-4f;
    p = __fadd_rn(__fmul_rn(p, r), 1.3981999507e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.3334519073e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665795894e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666665459e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 5.0000001201e-1f);
    // CPU: p * r * r + r + 1.0f, left to right
    const float er = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(p, r), r), r), 1.0f);
    const unsigned sbits = (__float_as_uint(v) - 0x4B400000u + 127u) << 23;   // 2^n as float bits
    const float y = __fmul_rn(er, __uint_as_float(sbits));
    return x < -87.0f ? 0.0f : x > 88.0f ? __int_as_float(0x7f800000) : y;
}

__device__ __forceinline__ float sigmoid_dev(float g) {
    return __fdiv_rn(1.0f, __fadd_rn(1.0f, sprec_expf(-g)));
}

__global__ void swiglu_fwd_kernel(act_t *out, const act_t *gate, const act_t *up, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = act_ld(gate, i);
        act_st(out, i, __fmul_rn(__fmul_rn(g, sigmoid_dev(g)), act_ld(up, i)));   // CPU: gate * sigmoid * up
    }
}

// dgate += dout * up * silu'(g), silu'(g) = s (1 + g (1 - s));  dup += dout * g * s
// (gate, up act; dgate, dup, dout fp32)
__global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout, const act_t *gate,
                                  const act_t *up, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = act_ld(gate, i), s = sigmoid_dev(g), d = dout[i];
        if (dgate) {
            const float dsilu = __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, s)));
            dgate[i] = __fadd_rn(dgate[i], __fmul_rn(__fmul_rn(__fmul_rn(d, act_ld(up, i)), s), dsilu));
        }
        if (dup) dup[i] = __fadd_rn(dup[i], __fmul_rn(__fmul_rn(d, g), s));
    }
}

static unsigned ew_blocks(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 65536 ? b : 65536);   // grid-stride beyond that
}

void cuda_swiglu_fwd(void *out, const void *gate, const void *up, size_t n) {
    if (n == 0) return;
    swiglu_fwd_kernel<<<ew_blocks(n), 256, 0, cuda_stream()>>>((act_t *)out, (const act_t *)gate,
                                                               (const act_t *)up, n);
    LAUNCH_CHECK();
}

void cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const void *gate,
                     const void *up, size_t n) {
    if (n == 0 || (!dgate && !dup)) return;
    swiglu_bwd_kernel<<<ew_blocks(n), 256, 0, cuda_stream()>>>(dgate, dup, dout, (const act_t *)gate,
                                                               (const act_t *)up, n);
    LAUNCH_CHECK();
}
