// Rotary position embedding, rotate-half convention (Hugging Face Llama), twin
// of kernels/cpu/rope.c: in x[B,T,H,D], the pair (i, i + D/2) of every head at
// position t is rotated by the angle of (t, i); tables cos/sin are [T, D/2].
// One thread per pair: pairs are disjoint, so the in-place update is race-free.
//
// Numerics: the forward runs on act storage (bf16): both halves of a pair are
// widened to fp32, rotated in fp32 and each rounded once to bf16 on store,
// exactly what the CPU's bf16 emulation does around the fp32 op. The backward
// rotates the fp32 gradient. _rn intrinsics keep the CPU's unfused arithmetic
// (ISO C: no FMA contraction), so the fp32 results match the CPU bit for bit.
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// One load/store pair per storage type, so one kernel body serves both.
static __device__ __forceinline__ float rope_ld(const float *p) { return *p; }
static __device__ __forceinline__ float rope_ld(const act_t *p) { return act_ld(p, 0); }
static __device__ __forceinline__ void rope_st(float *p, float x) { *p = x; }
static __device__ __forceinline__ void rope_st(act_t *p, float x) { act_st(p, 0, x); }

// dir = +1 rotates by +angle (forward), -1 by -angle (backward: the transpose
// of a rotation). si = dir * s is an exact sign flip, as on the CPU.
template <typename X>
__global__ void rope_kernel(X *x, const float *cos_tab, const float *sin_tab,
                            int T, int H, int D, float dir, size_t pairs) {
    const int half = D / 2;
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs;
         p += (size_t)gridDim.x * blockDim.x) {
        // p enumerates (b, t, h, i) with i fastest, so a warp touches
        // consecutive i of one head: coalesced reads of x and of the tables
        const int i = (int)(p % half);
        const size_t bth = p / half;          // (b*T + t)*H + h
        const int t = (int)((bth / H) % T);
        X *x1 = x + bth * D + i, *x2 = x1 + half;
        const float c = cos_tab[(size_t)t * half + i];
        const float si = dir * sin_tab[(size_t)t * half + i];
        const float a = rope_ld(x1), b = rope_ld(x2);                 // both read before either store
        rope_st(x1, __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, si)));   // a*c - b*si
        rope_st(x2, __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, si)));   // b*c + a*si
    }
}

template <typename X>
static void rope(X *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D,
                 float dir) {
    const size_t pairs = (size_t)B * T * H * (D / 2);
    if (pairs == 0) return;
    size_t blocks = (pairs + 255) / 256;
    if (blocks > 65536) blocks = 65536;   // grid-stride beyond that
    rope_kernel<X><<<(unsigned)blocks, 256, 0, cuda_stream()>>>(x, cos_tab, sin_tab, T, H, D, dir, pairs);
    LAUNCH_CHECK();
}

// x is act (bf16)
void cuda_rope_fwd(void *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D) {
    rope((act_t *)x, cos_tab, sin_tab, B, T, H, D, 1.0f);
}

// in place on the fp32 gradient: rotation by -angle
void cuda_rope_bwd(float *dx, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D) {
    rope(dx, cos_tab, sin_tab, B, T, H, D, -1.0f);
}
