// Causal grouped-query attention over right-padded sequences (CUDA twin of
// kernels/cpu/attention.c), flash style: no [T x T] matrix ever exists. Plain
// fp32 CUDA-core arithmetic on shared-memory tiles of BQ = 32 queries and
// BK = 32 keys, 128 threads per block.
//
// Thread layout inside a tile: thread tid owns tile row tid / 4 (a query in
// the forward and dq kernels, a key in the dk/dv kernel) and one quarter of
// that row's columns: score columns (tid % 4) + 4 * jj, jj < 8, and head-dim
// columns (tid % 4) + 4 * i, i < DMAX / 4. The four threads of a row are
// adjacent lanes of one warp, so row reductions are two xor-shuffles; the
// xor butterfly hands all four lanes bitwise the same result (float addition
// and max are commutative), which keeps their copies of the running max/sum
// identical.
//
// Determinism: every output element is written by exactly one thread, which
// accumulates its terms in a fixed order; there are no atomics. The dk/dv
// kernel is key-tile-major: a block owns one key/value tile of one kv head
// and loops, in order, over the NH/NKV query heads of its group and over the
// query tiles that see its keys.
//
// Padded rows (t >= lengths[b]) are never read: tiles are zero-filled there,
// and masked scores get probability exactly 0 (never 0 * garbage).
//
// Storage: q, k, v and the forward's out are act (bf16); lse, dout and every
// gradient fp32. Tiles are widened to fp32 as they are loaded into shared
// memory (the widening is exact), so the compute loops are the fp32 ones,
// unchanged; the only extra rounding is out's, once, on store. fp32 tiles
// keep the shared-memory layout and bank analysis above as they were (bf16
// tiles would halve the footprint but put a conversion in the inner loops).
// The backward reads the stored (bf16) out for delta = sum dout * out, as a
// bf16 framework's attention backward does. Loads are scalar: rows of a
// tile are D contiguous elements, so a warp's loads are still coalesced.
#include <cmath>
#include "cuda_common.cuh"
#include "cuda_ops.h"

enum { BQ = 32, BK = 32, THREADS = 128 };
// Row stride of the probability tiles: 36 = 4 (mod 32) puts the 8 rows a
// warp touches at once in distinct banks.
enum { PS = BK + 4 };
static_assert(BQ == BK, "query and key tiles must align (causal tile skipping)");
static_assert(THREADS == 4 * BQ, "four threads per tile row");

// Widening loads: act (bf16) or fp32 (dout) sources fill the same fp32 tiles.
static __device__ __forceinline__ float ld_f32(const float *p, size_t i) { return p[i]; }
static __device__ __forceinline__ float ld_f32(const act_t *p, size_t i) { return act_ld(p, i); }

// tile[rr, d] = src[row rr] for rows q0 + rr < L (row stride ld, D elements),
// 0 for rows at or past L; tile rows have stride DP. All threads take part.
template <typename Src>
__device__ __forceinline__ void load_tile(float *tile, const Src *src, size_t ld, int r0,
                                          int L, int D, int DP) {
    for (int idx = threadIdx.x; idx < BQ * D; idx += THREADS) {
        int rr = idx / D, d = idx - rr * D;
        int t = r0 + rr;
        tile[rr * DP + d] = t < L ? ld_f32(src, (size_t)t * ld + d) : 0.0f;
    }
}

// ---------------------------------------------------------------------------
// Forward. Block = (query tile, q head h, batch b). Online softmax over the
// key tiles 0 .. the diagonal one; out = (sum p v) / l, lse = m + log l.
template <int DMAX>
static __global__ void __launch_bounds__(THREADS)
attn_fwd_kernel(act_t *out, float *lse, const act_t *q, const act_t *k, const act_t *v,
                const int *lengths, int T, int NH, int NKV, int D, float scale) {
    extern __shared__ float smem[];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
    const int L = lengths[b], g = h / (NH / NKV);
    const size_t ldq = (size_t)NH * D, ldk = (size_t)NKV * D;
    const act_t *qb = q + (size_t)b * T * ldq + (size_t)h * D;
    const act_t *kb = k + (size_t)b * T * ldk + (size_t)g * D;
    const act_t *vb = v + (size_t)b * T * ldk + (size_t)g * D;
    act_t *ob = out + (size_t)b * T * ldq + (size_t)h * D;
    float *lb = lse + ((size_t)b * NH + h) * T;

    if (q0 >= L) {   // the whole tile is padding: zeros (block-uniform exit)
        for (int idx = threadIdx.x; idx < BQ * D; idx += THREADS) {
            int rr = idx / D, d = idx - rr * D;
            if (q0 + rr < T) act_st(ob, (size_t)(q0 + rr) * ldq + d, 0.0f);
        }
        if (threadIdx.x < BQ && q0 + (int)threadIdx.x < T) lb[q0 + threadIdx.x] = 0.0f;
        return;
    }

    const int DP = D + 1;   // odd stride: the rows a warp reads sit in distinct banks
    float *Qs = smem, *Ks = Qs + BQ * DP, *Vs = Ks + BK * DP, *Ps = Vs + BK * DP;
    const int r = threadIdx.x >> 2, c4 = threadIdx.x & 3, t = q0 + r;
    const bool row_ok = t < L;

    load_tile(Qs, qb, ldq, q0, L, D, DP);
    float m = -INFINITY, l = 0.0f, o[DMAX / 4];
#pragma unroll
    for (int i = 0; i < DMAX / 4; i++) o[i] = 0.0f;

    const int kend = min(q0 + BQ, L);   // keys past the last valid query of the tile are never seen
    for (int k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads();   // the previous tile's Ks/Vs/Ps are consumed (and Qs is loaded)
        load_tile(Ks, kb, ldk, k0, L, D, DP);
        load_tile(Vs, vb, ldk, k0, L, D, DP);
        __syncthreads();

        float s[BK / 4];
#pragma unroll
        for (int jj = 0; jj < BK / 4; jj++) s[jj] = 0.0f;
        for (int d = 0; d < D; d++) {
            float qv = Qs[r * DP + d];
#pragma unroll
            for (int jj = 0; jj < BK / 4; jj++) s[jj] += qv * Ks[(c4 + 4 * jj) * DP + d];
        }
        float mt = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < BK / 4; jj++) {
            int j = k0 + c4 + 4 * jj;
            s[jj] = (row_ok && j <= t) ? s[jj] * scale : -INFINITY;
            mt = fmaxf(mt, s[jj]);
        }
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
        const float mn = fmaxf(m, mt);
        const float mu = mn == -INFINITY ? 0.0f : mn;   // fully masked row so far: avoid inf - inf
        const float alpha = expf(m - mu);               // 0 on the first tile (m = -inf)
        float ps = 0.0f;
#pragma unroll
        for (int jj = 0; jj < BK / 4; jj++) {
            float p = expf(s[jj] - mu);                 // masked: exp(-inf) = 0
            Ps[r * PS + c4 + 4 * jj] = p;
            ps += p;
        }
        ps += __shfl_xor_sync(0xffffffffu, ps, 1);
        ps += __shfl_xor_sync(0xffffffffu, ps, 2);
        l = l * alpha + ps;
        m = mn;
#pragma unroll
        for (int i = 0; i < DMAX / 4; i++) o[i] *= alpha;
        __syncthreads();   // Ps rows are read by all four threads of the row
        for (int j = 0; j < BK; j++) {
            float p = Ps[r * PS + j];
#pragma unroll
            for (int i = 0; i < DMAX / 4; i++)
                if (c4 + 4 * i < D) o[i] += p * Vs[j * DP + c4 + 4 * i];
        }
    }

    if (t < T) {
        act_t *orow = ob + (size_t)t * ldq;
        float inv = row_ok ? 1.0f / l : 0.0f;
#pragma unroll
        for (int i = 0; i < DMAX / 4; i++)   // fp32 result, rounded once to bf16
            if (c4 + 4 * i < D) act_st(orow, c4 + 4 * i, row_ok ? o[i] * inv : 0.0f);
        if (c4 == 0) lb[t] = row_ok ? m + logf(l) : 0.0f;
    }
}

// ---------------------------------------------------------------------------
// Backward, step 1: delta[b,h,t] = sum_d dout * out (0 on padded rows), one
// warp per (b, t, h) row, fixed shuffle tree. out is the stored bf16 output.
static __global__ void attn_delta_kernel(float *delta, const float *dout, const act_t *out,
                                         const int *lengths, int B, int T, int NH, int D) {
    size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= (size_t)B * T * NH) return;   // warp-uniform
    int h = (int)(row % NH);
    size_t bt = row / NH;
    int t = (int)(bt % T), b = (int)(bt / T);
    float s = 0.0f;
    if (t < lengths[b]) {
        const float *x = dout + row * D;
        const act_t *y = out + row * D;
        for (int d = lane; d < D; d += 32) s += x[d] * act_ld(y, d);
    }
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) delta[((size_t)b * NH + h) * T + t] = s;
}

// Backward, dq. Block = (query tile, q head h, batch b); loops over the key
// tiles up to the diagonal: P = exp(S - lse), dP = dO V^T, dS = P (dP - delta),
// dq += scale * dS K.
template <int DMAX>
static __global__ void __launch_bounds__(THREADS)
attn_dq_kernel(float *dq, const float *dout, const float *lse, const float *delta,
               const act_t *q, const act_t *k, const act_t *v, const int *lengths,
               int T, int NH, int NKV, int D, float scale) {
    extern __shared__ float smem[];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
    const int L = lengths[b], g = h / (NH / NKV);
    if (q0 >= L) return;   // padded rows get no gradient (block-uniform)
    const size_t ldq = (size_t)NH * D, ldk = (size_t)NKV * D;
    const size_t qoff = (size_t)b * T * ldq + (size_t)h * D;
    const act_t *kb = k + (size_t)b * T * ldk + (size_t)g * D;
    const act_t *vb = v + (size_t)b * T * ldk + (size_t)g * D;

    const int DP = D + 1;
    float *Qs = smem, *dOs = Qs + BQ * DP, *Ks = dOs + BQ * DP, *Vs = Ks + BK * DP,
          *dSs = Vs + BK * DP;
    const int r = threadIdx.x >> 2, c4 = threadIdx.x & 3, t = q0 + r;
    const bool row_ok = t < L;
    const size_t stat = ((size_t)b * NH + h) * T + t;
    const float lse_t = row_ok ? lse[stat] : 0.0f;
    const float delta_t = row_ok ? delta[stat] : 0.0f;

    load_tile(Qs, q + qoff, ldq, q0, L, D, DP);
    load_tile(dOs, dout + qoff, ldq, q0, L, D, DP);
    float acc[DMAX / 4];
#pragma unroll
    for (int i = 0; i < DMAX / 4; i++) acc[i] = 0.0f;

    const int kend = min(q0 + BQ, L);
    for (int k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads();
        load_tile(Ks, kb, ldk, k0, L, D, DP);
        load_tile(Vs, vb, ldk, k0, L, D, DP);
        __syncthreads();
        float s[BK / 4], dp[BK / 4];
#pragma unroll
        for (int jj = 0; jj < BK / 4; jj++) { s[jj] = 0.0f; dp[jj] = 0.0f; }
        for (int d = 0; d < D; d++) {
            float qv = Qs[r * DP + d], gv = dOs[r * DP + d];
#pragma unroll
            for (int jj = 0; jj < BK / 4; jj++) {
                int kr = (c4 + 4 * jj) * DP + d;
                s[jj] += qv * Ks[kr];
                dp[jj] += gv * Vs[kr];
            }
        }
#pragma unroll
        for (int jj = 0; jj < BK / 4; jj++) {
            int j = k0 + c4 + 4 * jj;
            float ds = 0.0f;
            if (row_ok && j <= t) {
                float p = expf(__fmul_rn(s[jj], scale) - lse_t);   // as the forward: s * scale rounded, no FMA
                ds = p * (dp[jj] - delta_t);
            }
            dSs[r * PS + c4 + 4 * jj] = ds;
        }
        __syncthreads();
        for (int j = 0; j < BK; j++) {
            float ds = dSs[r * PS + j];
#pragma unroll
            for (int i = 0; i < DMAX / 4; i++)
                if (c4 + 4 * i < D) acc[i] += ds * Ks[j * DP + c4 + 4 * i];
        }
    }
    if (row_ok) {
        float *drow = dq + qoff + (size_t)t * ldq;
#pragma unroll
        for (int i = 0; i < DMAX / 4; i++)
            if (c4 + 4 * i < D) drow[c4 + 4 * i] += scale * acc[i];
    }
}

// Backward, dk and dv. Block = (key tile, kv head g, batch b); thread row =
// one key. For each q head of the group in order, for each query tile from
// the diagonal one to the end of the sequence: P^T, dP^T = V dO^T,
// dS^T = P^T (dP^T - delta); dv += P^T dO, dk += scale * dS^T Q.
template <int DMAX>
static __global__ void __launch_bounds__(THREADS)
attn_dkv_kernel(float *dk, float *dv, const float *dout, const float *lse, const float *delta,
                const act_t *q, const act_t *k, const act_t *v, const int *lengths,
                int T, int NH, int NKV, int D, float scale) {
    extern __shared__ float smem[];
    const int b = blockIdx.z, g = blockIdx.y, j0 = blockIdx.x * BK;
    const int L = lengths[b], group = NH / NKV;
    if (j0 >= L) return;   // padded keys get no gradient (block-uniform)
    const size_t ldq = (size_t)NH * D, ldk = (size_t)NKV * D;
    const size_t koff = (size_t)b * T * ldk + (size_t)g * D;

    const int DP = D + 1;
    float *Ks = smem, *Vs = Ks + BK * DP, *Qs = Vs + BK * DP, *dOs = Qs + BQ * DP,
          *Pt = dOs + BQ * DP, *dSt = Pt + BK * PS, *lse_s = dSt + BK * PS, *delta_s = lse_s + BQ;
    const int c = threadIdx.x >> 2, r4 = threadIdx.x & 3, j = j0 + c;

    load_tile(Ks, k + koff, ldk, j0, L, D, DP);
    load_tile(Vs, v + koff, ldk, j0, L, D, DP);
    float adk[DMAX / 4], adv[DMAX / 4];
#pragma unroll
    for (int i = 0; i < DMAX / 4; i++) { adk[i] = 0.0f; adv[i] = 0.0f; }

    for (int hh = 0; hh < group; hh++) {
        const int h = g * group + hh;
        const size_t qoff = (size_t)b * T * ldq + (size_t)h * D;
        const float *lh = lse + ((size_t)b * NH + h) * T, *dh = delta + ((size_t)b * NH + h) * T;
        // query tiles before j0's tile cannot see these keys (BQ == BK, aligned)
        for (int q0 = j0; q0 < L; q0 += BQ) {
            __syncthreads();   // previous tile's Qs/dOs/Pt/dSt consumed (and Ks/Vs loaded)
            load_tile(Qs, q + qoff, ldq, q0, L, D, DP);
            load_tile(dOs, dout + qoff, ldq, q0, L, D, DP);
            if (threadIdx.x < BQ) {
                int t = q0 + threadIdx.x;
                lse_s[threadIdx.x] = t < L ? lh[t] : 0.0f;
                delta_s[threadIdx.x] = t < L ? dh[t] : 0.0f;
            }
            __syncthreads();
            float s[BQ / 4], dp[BQ / 4];
#pragma unroll
            for (int ii = 0; ii < BQ / 4; ii++) { s[ii] = 0.0f; dp[ii] = 0.0f; }
            for (int d = 0; d < D; d++) {
                float kv = Ks[c * DP + d], vv = Vs[c * DP + d];
#pragma unroll
                for (int ii = 0; ii < BQ / 4; ii++) {
                    int qr = (r4 + 4 * ii) * DP + d;
                    s[ii] += kv * Qs[qr];
                    dp[ii] += vv * dOs[qr];
                }
            }
#pragma unroll
            for (int ii = 0; ii < BQ / 4; ii++) {
                int rq = r4 + 4 * ii, t = q0 + rq;
                float p = 0.0f, ds = 0.0f;
                if (t < L && j <= t) {   // (j <= t < L implies the key is valid too)
                    p = expf(__fmul_rn(s[ii], scale) - lse_s[rq]);   // (no FMA: as the forward)
                    ds = p * (dp[ii] - delta_s[rq]);
                }
                Pt[c * PS + rq] = p;
                dSt[c * PS + rq] = ds;
            }
            __syncthreads();
            for (int rq = 0; rq < BQ; rq++) {
                float p = Pt[c * PS + rq], ds = dSt[c * PS + rq];
#pragma unroll
                for (int i = 0; i < DMAX / 4; i++)
                    if (r4 + 4 * i < D) {
                        adv[i] += p * dOs[rq * DP + r4 + 4 * i];
                        adk[i] += ds * Qs[rq * DP + r4 + 4 * i];
                    }
            }
        }
    }
    if (j < L) {
        size_t off = koff + (size_t)j * ldk;
#pragma unroll
        for (int i = 0; i < DMAX / 4; i++)
            if (r4 + 4 * i < D) {
                if (dk) dk[off + r4 + 4 * i] += scale * adk[i];
                if (dv) dv[off + r4 + 4 * i] += adv[i];
            }
    }
}

// ---------------------------------------------------------------------------
// host side

static size_t fwd_smem(int D) { return (size_t)(3 * BQ * (D + 1) + BQ * PS) * sizeof(float); }
static size_t dq_smem(int D) { return (size_t)(4 * BQ * (D + 1) + BQ * PS) * sizeof(float); }
static size_t dkv_smem(int D) { return (size_t)(4 * BQ * (D + 1) + 2 * BK * PS + 2 * BQ) * sizeof(float); }

// Kernels using more than 48 KiB of dynamic shared memory must opt in.
template <typename K>
static void allow_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

static void check_dims(int B, int NH, int NKV, int D) {
    if (D < 1 || D > 128) cuda_fail("attention", "head dim must be in 1..128", __FILE__, __LINE__);
    if (B > 65535) cuda_fail("attention", "batch must be at most 65535 sequences (the grid's z)", __FILE__, __LINE__);
    if (NKV < 1 || NH % NKV != 0) cuda_fail("attention", "NH must be a multiple of NKV", __FILE__, __LINE__);
}

template <int DMAX>
static void fwd_launch(act_t *out, float *lse, const act_t *q, const act_t *k, const act_t *v,
                       const int *lengths, int B, int T, int NH, int NKV, int D) {
    size_t sm = fwd_smem(D);
    allow_smem(attn_fwd_kernel<DMAX>, sm);
    dim3 grid(cdiv((size_t)T, BQ), NH, B);
    attn_fwd_kernel<DMAX><<<grid, THREADS, sm, cuda_stream()>>>(out, lse, q, k, v, lengths, T, NH,
                                                               NKV, D, 1.0f / sqrtf((float)D));
    LAUNCH_CHECK();
}

// out[B,T,NH,D], lse[B,NH,T]; q[B,T,NH,D], k,v[B,T,NKV,D]; lengths[B] (device).
// out, q, k, v act (bf16); lse fp32.
void cuda_attention_fwd(void *out, float *lse, const void *q, const void *k, const void *v,
                        const int *lengths, int B, int T, int NH, int NKV, int D) {
    if (B <= 0 || T <= 0 || NH <= 0) return;
    check_dims(B, NH, NKV, D);
    act_t *o = (act_t *)out;
    const act_t *qa = (const act_t *)q, *ka = (const act_t *)k, *va = (const act_t *)v;
    if (D <= 64) fwd_launch<64>(o, lse, qa, ka, va, lengths, B, T, NH, NKV, D);
    else fwd_launch<128>(o, lse, qa, ka, va, lengths, B, T, NH, NKV, D);
}

template <int DMAX>
static void bwd_launch(float *dq, float *dk, float *dv, const float *dout, const float *lse,
                       const float *delta, const act_t *q, const act_t *k, const act_t *v,
                       const int *lengths, int B, int T, int NH, int NKV, int D) {
    const float scale = 1.0f / sqrtf((float)D);
    if (dq) {
        size_t sm = dq_smem(D);
        allow_smem(attn_dq_kernel<DMAX>, sm);
        dim3 grid(cdiv((size_t)T, BQ), NH, B);
        attn_dq_kernel<DMAX><<<grid, THREADS, sm, cuda_stream()>>>(dq, dout, lse, delta, q, k, v,
                                                                  lengths, T, NH, NKV, D, scale);
        LAUNCH_CHECK();
    }
    if (dk || dv) {
        size_t sm = dkv_smem(D);
        allow_smem(attn_dkv_kernel<DMAX>, sm);
        dim3 grid(cdiv((size_t)T, BK), NKV, B);
        attn_dkv_kernel<DMAX><<<grid, THREADS, sm, cuda_stream()>>>(dk, dv, dout, lse, delta, q, k, v,
                                                                   lengths, T, NH, NKV, D, scale);
        LAUNCH_CHECK();
    }
}

// dq[B,T,NH,D], dk,dv[B,T,NKV,D] += gradients (each may be NULL). Scratch:
// delta [B,NH,T] floats in SCRATCH_ATTN. out, q, k, v act (bf16); dout, lse fp32.
void cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const void *out,
                        const float *lse, const void *q, const void *k, const void *v,
                        const int *lengths, int B, int T, int NH, int NKV, int D) {
    if (B <= 0 || T <= 0 || NH <= 0 || (!dq && !dk && !dv)) return;
    check_dims(B, NH, NKV, D);
    const act_t *qa = (const act_t *)q, *ka = (const act_t *)k, *va = (const act_t *)v;
    size_t rows = (size_t)B * T * NH;
    float *delta = (float *)cuda_scratch(SCRATCH_ATTN, rows * sizeof(float));
    attn_delta_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(delta, dout, (const act_t *)out,
                                                                 lengths, B, T, NH, D);
    LAUNCH_CHECK();
    if (D <= 64) bwd_launch<64>(dq, dk, dv, dout, lse, delta, qa, ka, va, lengths, B, T, NH, NKV, D);
    else bwd_launch<128>(dq, dk, dv, dout, lse, delta, qa, ka, va, lengths, B, T, NH, NKV, D);
}
