// Rotary position embedding, rotate-half convention (Hugging Face Llama), twin
// of kernels/cpu/rope.c: in x[B,T,H,D], the pair (i, i + D/2) of every head at
// position t is rotated by the angle of (t, i); tables cos/sin are [T, D/2].
// One thread per pair: pairs are disjoint, so the in-place update is race-free.
// _rn intrinsics keep the CPU's unfused arithmetic (ISO C: no FMA contraction),
// so results match the CPU bit for bit.
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// dir = +1 rotates by +angle (forward), -1 by -angle (backward: the transpose
// of a rotation). si = dir * s is an exact sign flip, as on the CPU.
__global__ void rope_kernel(float *x, const float *cos_tab, const float *sin_tab,
                            int T, int H, int D, float dir, size_t pairs) {
    const int half = D / 2;
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs;
         p += (size_t)gridDim.x * blockDim.x) {
        // p enumerates (b, t, h, i) with i fastest, so a warp touches
        // consecutive i of one head: coalesced reads of x and of the tables
        const int i = (int)(p % half);
        const size_t bth = p / half;          // (b*T + t)*H + h
        const int t = (int)((bth / H) % T);
        float *x1 = x + bth * D + i, *x2 = x1 + half;
        const float c = cos_tab[(size_t)t * half + i];
        const float si = dir * sin_tab[(size_t)t * half + i];
        const float a = *x1, b = *x2;
        *x1 = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, si));   // a*c - b*si
        *x2 = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, si));   // b*c + a*si
    }
}

static void rope(float *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D,
                 float dir) {
    const size_t pairs = (size_t)B * T * H * (D / 2);
    if (pairs == 0) return;
    size_t blocks = (pairs + 255) / 256;
    if (blocks > 65536) blocks = 65536;   // grid-stride beyond that
    rope_kernel<<<(unsigned)blocks, 256, 0, cuda_stream()>>>(x, cos_tab, sin_tab, T, H, D, dir, pairs);
    LAUNCH_CHECK();
}

void cuda_rope_fwd(float *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D) {
    rope(x, cos_tab, sin_tab, B, T, H, D, 1.0f);
}

// in place on the gradient: rotation by -angle
void cuda_rope_bwd(float *dx, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D) {
    rope(dx, cos_tab, sin_tab, B, T, H, D, -1.0f);
}
