// KV-cache decoding ops (forward only; CUDA twin of kernels/cpu/decode.c):
// rotary embedding at explicit positions, writing new K/V rows into the bf16
// cache, attention of a block of new queries against the cache, beam reorder
// of cache rows, and a row gather. All index arrays are device pointers.
//
// Numerics: x, q, out and the gathered rows are act (bf16), and so is the KV
// cache, so writing K/V into the cache is a plain copy (the rounding happened
// when the projection stored k, v). act inputs are widened to fp32 on load,
// all arithmetic is fp32, act outputs are rounded once on store. rope_at uses
// rope_fwd's exact unfused (_rn) arithmetic, so a key rotated here has the same
// bits as the training forward's (and the CPU's, which does not contract).
#include <cmath>
#include "../backend.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"

typedef __nv_bfloat16 bf16;

// Cache storage for n bf16 elements: the backend's own allocator (zero-filled,
// 64-byte aligned), so the backend's free releases it.
void *cuda_kv_alloc(size_t n) { return cuda_alloc(n * sizeof(bf16)); }

// ---------------------------------------------------------------------------
// x[N,H,D] (bf16) in place; row n rotated by the angle of position pos[n];
// cos_tab, sin_tab [P, D/2]. One thread per rotated pair (i, i + D/2): both
// halves are read before either is stored.
static __global__ void rope_at_kernel(bf16 *x, const float *cos_tab, const float *sin_tab,
                                      const int *pos, int N, int H, int half) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * H * half) return;
    int i = (int)(idx % half);
    size_t nh = idx / half;                 // n * H + h
    int n = (int)(nh / H);
    bf16 *x1 = x + nh * 2 * half + i, *x2 = x1 + half;
    size_t tab = (size_t)pos[n] * half + i;
    float c = cos_tab[tab], s = sin_tab[tab], a = act_ld(x1, 0), b = act_ld(x2, 0);
    act_st(x1, 0, __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));   // a*c - b*s, as rope_fwd
    act_st(x2, 0, __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));   // b*c + a*s
}

void cuda_rope_at_fwd(void *x, const float *cos_tab, const float *sin_tab, const int *pos,
                      int N, int H, int D) {
    if (D % 2) cuda_fail("rope_at_fwd", "head dim must be even", __FILE__, __LINE__);
    size_t pairs = (size_t)N * H * (D / 2);
    if (pairs == 0) return;
    rope_at_kernel<<<cdiv(pairs, 256), 256, 0, cuda_stream()>>>((bf16 *)x, cos_tab, sin_tab, pos, N, H,
                                                                D / 2);
    LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------
// cache[b, start[b] + s, :] = x[b, s, :] for s < n_new[b]: both bf16, so a
// plain copy of W elements, moved as `words` Words each (W elements = words
// Words). One block per (b, s) row of x.
template <typename Word>
static __global__ void kv_write_kernel(Word *cache, const Word *x, const int *start,
                                       const int *n_new, int S, int P, int words) {
    int row = blockIdx.x, b = row / S, s = row - b * S;
    if (s >= n_new[b]) return;
    Word *dst = cache + ((size_t)b * P + start[b] + s) * words;
    const Word *src = x + (size_t)row * words;
    for (int w = threadIdx.x; w < words; w += blockDim.x) dst[w] = src[w];
}

void cuda_kv_write(void *cache, const void *x, const int *start, const int *n_new,
                   int R, int S, int P, int W) {
    if (R <= 0 || S <= 0 || W <= 0) return;
    // 4-byte words when every row starts 4-byte aligned (W even, both bases
    // aligned: x may be a slice of a larger buffer), else bf16 elements
    const unsigned blocks = (unsigned)R * S;
    if (W % 2 == 0 && ((uintptr_t)cache & 3) == 0 && ((uintptr_t)x & 3) == 0)
        kv_write_kernel<uint32_t><<<blocks, 256, 0, cuda_stream()>>>(
            (uint32_t *)cache, (const uint32_t *)x, start, n_new, S, P, W / 2);
    else
        kv_write_kernel<uint16_t><<<blocks, 256, 0, cuda_stream()>>>(
            (uint16_t *)cache, (const uint16_t *)x, start, n_new, S, P, W);
    LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------
// Attention of new queries against the cache. One block (4 warps) per
// (row b, new position s, q head h); query (b, s) sees positions
// 0 .. start[b] + s. Warp w takes positions w, w + 4, ...: the lanes split the
// head dim in bf16 pairs (lane owns pairs lane and lane + 32, so D <= 128),
// a fixed xor-shuffle tree gives every lane the same score, and each warp
// keeps its own online softmax (max, sum, weighted V). The four warp states
// are merged in warp order at the end: deterministic.
enum { DEC_WARPS = 4 };

static __global__ void __launch_bounds__(DEC_WARPS * 32)
attn_cached_kernel(bf16 *out, const bf16 *q, const bf16 *kc, const bf16 *vc,
                   const int *start, const int *n_new, int S, int P, int NH, int NKV, int D,
                   float scale) {
    __shared__ float sm_m[DEC_WARPS], sm_l[DEC_WARPS], sm_o[DEC_WARPS][128];
    const int h = blockIdx.x % NH;
    const size_t bs = blockIdx.x / NH;      // b * S + s
    const int s = (int)(bs % S), b = (int)(bs / S);
    bf16 *o = out + (bs * NH + h) * D;
    if (s >= n_new[b]) {   // padded query: zeros (block-uniform exit)
        for (int d = threadIdx.x; d < D; d += blockDim.x) act_st(o, d, 0.0f);
        return;
    }
    const int L = start[b] + s + 1;         // visible positions
    const int g = h / (NH / NKV), W = NKV * D, half = D / 2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    // this lane's query pairs, widened; pairs past D/2 stay 0. The scale is
    // applied to the finished dot product, as attention_fwd does.
    // Scalar loads: q may be a slice of a larger buffer (no alignment promise).
    const bf16 *qh = q + (bs * NH + h) * D;
    float2 qv[2];
#pragma unroll
    for (int u = 0; u < 2; u++) {
        int pi = lane + 32 * u;
        qv[u] = pi < half ? make_float2(act_ld(qh, 2 * pi), act_ld(qh, 2 * pi + 1)) : make_float2(0.0f, 0.0f);
    }
    const bf16 *kb = kc + (size_t)b * P * W + (size_t)g * D;
    const bf16 *vb = vc + (size_t)b * P * W + (size_t)g * D;

    float m = -INFINITY, l = 0.0f;
    float2 acc[2] = {make_float2(0.0f, 0.0f), make_float2(0.0f, 0.0f)};
    for (int j = warp; j < L; j += DEC_WARPS) {
        // pairs start at even element offsets (D and W even), so 4-byte loads are aligned
        const __nv_bfloat162 *kr = (const __nv_bfloat162 *)(kb + (size_t)j * W);
        const __nv_bfloat162 *vr = (const __nv_bfloat162 *)(vb + (size_t)j * W);
        float dot = 0.0f;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            int pi = lane + 32 * u;
            if (pi < half) {
                float2 kf = __bfloat1622float2(kr[pi]);
                dot += qv[u].x * kf.x + qv[u].y * kf.y;
            }
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        dot *= scale;
        const float mn = fmaxf(m, dot);
        const float corr = expf(m - mn);    // 0 for the warp's first position
        const float p = expf(dot - mn);
        l = l * corr + p;
        m = mn;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            int pi = lane + 32 * u;
            if (pi < half) {
                float2 vf = __bfloat1622float2(vr[pi]);
                acc[u].x = acc[u].x * corr + p * vf.x;
                acc[u].y = acc[u].y * corr + p * vf.y;
            }
        }
    }
    // publish this warp's state (a warp that saw no position has m = -inf, l = 0)
#pragma unroll
    for (int u = 0; u < 2; u++) {
        int pi = lane + 32 * u;
        if (pi < half) { sm_o[warp][2 * pi] = acc[u].x; sm_o[warp][2 * pi + 1] = acc[u].y; }
    }
    if (lane == 0) { sm_m[warp] = m; sm_l[warp] = l; }
    __syncthreads();
    // merge in warp order; warp 0 always saw position 0, so M is finite
    float M = sm_m[0];
    for (int w = 1; w < DEC_WARPS; w++) M = fmaxf(M, sm_m[w]);
    float f[DEC_WARPS], tot = 0.0f;
    for (int w = 0; w < DEC_WARPS; w++) { f[w] = expf(sm_m[w] - M); tot += sm_l[w] * f[w]; }
    const float inv = 1.0f / tot;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc_d = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++)
            if (sm_l[w] > 0.0f) acc_d += sm_o[w][d] * f[w];   // skip never-written rows
        act_st(o, d, acc_d * inv);   // fp32 result, rounded once
    }
}

void cuda_attention_cached_fwd(void *out, const void *q, const void *kc, const void *vc,
                               const int *start, const int *n_new, int R, int S, int P,
                               int NH, int NKV, int D) {
    if (R <= 0 || S <= 0 || NH <= 0) return;
    if (D < 2 || D > 128 || D % 2 != 0)
        cuda_fail("attention_cached_fwd", "head dim must be even and at most 128", __FILE__, __LINE__);
    if (NKV < 1 || NH % NKV != 0)
        cuda_fail("attention_cached_fwd", "NH must be a multiple of NKV", __FILE__, __LINE__);
    size_t blocks = (size_t)R * S * NH;
    if (blocks > 0x7fffffff) cuda_fail("attention_cached_fwd", "rows x new positions x heads exceeds the grid", __FILE__, __LINE__);
    attn_cached_kernel<<<(unsigned)blocks, DEC_WARPS * 32, 0, cuda_stream()>>>(
        (bf16 *)out, (const bf16 *)q, (const bf16 *)kc, (const bf16 *)vc, start, n_new, S, P, NH, NKV, D,
        1.0f / sqrtf((float)D));
    LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------
// Beam reorder: cache[i, 0..len) = old cache[src[i], 0..len) for i < R. A
// gather from the state before the call: first every moved row's source is
// copied to scratch row i, then scratch row i goes to cache row i. Rows with
// src[i] == i are skipped by both passes. Copies use 4-byte words when the row
// sizes allow (W even, always true for even head dims), else bf16 elements.
template <typename Word>
static __global__ void kv_stage_kernel(Word *scratch, const Word *cache, const int *src,
                                       size_t used, size_t row) {
    int i = blockIdx.y, from = src[i];
    if (from == i) return;
    const Word *s = cache + (size_t)from * row;
    Word *d = scratch + (size_t)i * used;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < used; e += (size_t)gridDim.x * blockDim.x)
        d[e] = s[e];
}

template <typename Word>
static __global__ void kv_commit_kernel(Word *cache, const Word *scratch, const int *src,
                                        size_t used, size_t row) {
    int i = blockIdx.y;
    if (src[i] == i) return;
    const Word *s = scratch + (size_t)i * used;
    Word *d = cache + (size_t)i * row;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < used; e += (size_t)gridDim.x * blockDim.x)
        d[e] = s[e];
}

template <typename Word>
static void kv_gather_words(void *cache, const int *src, int R, size_t used, size_t row) {
    Word *scratch = (Word *)cuda_scratch(SCRATCH_MISC, (size_t)R * used * sizeof(Word));
    unsigned bx = cdiv(used, 256);
    if (bx > 1024) bx = 1024;   // grid-stride loop covers the rest
    dim3 grid(bx, (unsigned)R);
    kv_stage_kernel<Word><<<grid, 256, 0, cuda_stream()>>>(scratch, (const Word *)cache, src, used, row);
    LAUNCH_CHECK();
    kv_commit_kernel<Word><<<grid, 256, 0, cuda_stream()>>>((Word *)cache, scratch, src, used, row);
    LAUNCH_CHECK();
}

void cuda_kv_gather(void *cache, const int *src, int R, int len, int P, int W) {
    if (R <= 0 || len <= 0 || W <= 0) return;
    if (R > 65535) cuda_fail("kv_gather", "too many rows", __FILE__, __LINE__);
    size_t used = (size_t)len * W, row = (size_t)P * W;   // bf16 elements
    if (W % 2 == 0) kv_gather_words<uint32_t>(cache, src, R, used / 2, row / 2);
    else kv_gather_words<uint16_t>(cache, src, R, used, row);
}

// ---------------------------------------------------------------------------
// out[n, :] = inp[rows[n], :] for n < N (act rows: a bit copy, no conversion);
// one block per row, `words` Words per row (4-byte words when C is even and
// both bases are 4-byte aligned, else bf16 elements)
template <typename Word>
static __global__ void gather_rows_kernel(Word *out, const Word *inp, const int *rows, int words) {
    int n = blockIdx.x;
    const Word *s = inp + (size_t)rows[n] * words;
    Word *d = out + (size_t)n * words;
    for (int c = threadIdx.x; c < words; c += blockDim.x) d[c] = s[c];
}

void cuda_gather_rows(void *out, const void *inp, const int *rows, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (C % 2 == 0 && ((uintptr_t)out & 3) == 0 && ((uintptr_t)inp & 3) == 0)
        gather_rows_kernel<uint32_t><<<N, 256, 0, cuda_stream()>>>((uint32_t *)out, (const uint32_t *)inp,
                                                                   rows, C / 2);
    else
        gather_rows_kernel<uint16_t><<<N, 256, 0, cuda_stream()>>>((uint16_t *)out, (const uint16_t *)inp,
                                                                   rows, C);
    LAUNCH_CHECK();
}
