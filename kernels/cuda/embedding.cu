// Token embedding lookup and its scatter-add backward (twin of kernels/cpu/embedding.c).
// The forward copies act (bf16) rows of the compute copy of wte; the backward
// adds fp32 dout rows into the fp32 dwte.
//
// Backward without float atomics. Repeated tokens add into the same dwte row,
// and the CPU adds them in token order n: dwte[t] = ((dwte[t] + d_n0) + d_n1) + ...
// We reproduce exactly that order, so the result is bit-identical to the CPU:
//  1. stable radix sort of (token, n) pairs by token (CUB; stable, so within
//     one token the positions n stay increasing, and the output is unique:
//     deterministic);
//  2. for each run of equal tokens in the sorted order, find its end;
//  3. one thread per (run, channel) starts from dwte[t, c] and adds the run's
//     dout rows in increasing n. Each (t, c) is owned by exactly one thread.
// The simpler "each thread owns channel c and walks all N tokens" would be
// race-free too, but it is a serial read-modify-write chain of N steps per
// thread (the compiler cannot overlap them: two steps may hit the same row),
// i.e. milliseconds for N = 8k; the sort makes the work O(N C) in parallel.
#include <cub/device/device_radix_sort.cuh>
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// ---- forward ------------------------------------------------------------------

// One block per row: the act (bf16) row of wte copied as is (no arithmetic, so
// no rounding). 16 bytes (8 bf16) at a time when rows are 16-byte aligned.
static __global__ void embedding_fwd_kernel(act_t *out, const int *tokens, const act_t *wte, int C) {
    const size_t n = blockIdx.x;
    const act_t *src = wte + (size_t)tokens[n] * C;
    act_t *dst = out + n * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

static __global__ void embedding_fwd_kernel16(uint4 *out, const int *tokens, const uint4 *wte, int C16) {
    const size_t n = blockIdx.x;
    const uint4 *src = wte + (size_t)tokens[n] * C16;
    uint4 *dst = out + n * C16;
    for (int c = threadIdx.x; c < C16; c += blockDim.x) dst[c] = src[c];
}

void cuda_embedding_fwd(void *out, const int *tokens, const void *wte, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t s = cuda_stream();
    const int per16 = 16 / (int)sizeof(act_t);   // elements per 16 bytes
    bool vec = C % per16 == 0 && ((uintptr_t)out % 16) == 0 && ((uintptr_t)wte % 16) == 0;
    if (vec) {
        int C16 = C / per16;
        int threads = C16 >= 256 ? 256 : (C16 + 31) / 32 * 32;
        embedding_fwd_kernel16<<<N, threads, 0, s>>>((uint4 *)out, tokens, (const uint4 *)wte, C16);
    } else {
        int threads = C >= 256 ? 256 : (C + 31) / 32 * 32;
        embedding_fwd_kernel<<<N, threads, 0, s>>>((act_t *)out, tokens, (const act_t *)wte, C);
    }
    LAUNCH_CHECK();
}

// ---- backward -----------------------------------------------------------------

// idx[n] = n: the values carried through the sort
__global__ void iota_kernel(int *idx, int N) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) idx[n] = n;
}

// keys: sorted tokens [N]. For each run start i (i == 0 or keys[i-1] != keys[i])
// run_end[i] = one past its last position. Written by the run's last position
// j, which finds the run start by a binary search (keys are sorted); other
// entries of run_end are left unwritten and never read.
__global__ void run_end_kernel(int *run_end, const unsigned *keys, int N) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    unsigned k = keys[j];
    if (j + 1 < N && keys[j + 1] == k) return;   // not the last of its run
    int lo = 0, hi = j;                          // first position with key k in [0, j]
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (keys[mid] < k) lo = mid + 1; else hi = mid;
    }
    run_end[lo] = j + 1;
}

// grid: (position blocks, channel tiles). Each block strides over sorted
// positions; at a run start, each thread adds the run's dout rows into its
// channel of the token's dwte row in increasing n (the stable sort kept that
// order), starting from the current dwte value: the CPU's exact order.
__global__ void embedding_bwd_kernel(float *dwte, const float *dout, const unsigned *keys,
                                     const int *pos, const int *run_end, int N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;   // no block-wide sync below, so an early exit is fine
    for (int i = blockIdx.x; i < N; i += gridDim.x) {
        unsigned t = keys[i];
        if (i > 0 && keys[i - 1] == t) continue;   // inside a run: its start handles it
        const int end = run_end[i];
        float *dst = dwte + (size_t)t * C + c;
        float acc = *dst;
        // end is known up front, so the loads of the run's rows can be in
        // flight together; the adds stay in order
        #pragma unroll 4
        for (int j = i; j < end; j++) acc += dout[(size_t)pos[j] * C + c];
        *dst = acc;
    }
}

static size_t align256(size_t x) { return (x + 255) / 256 * 256; }

void cuda_embedding_bwd(float *dwte, const float *dout, const int *tokens, int N, int C, int V) {
    if (!dwte || N <= 0 || C <= 0) return;
    cudaStream_t s = cuda_stream();
    // tokens are in [0, V) (range-checked by the host), so sorting the low
    // end_bit bits of them as unsigned keys is a full sort and skips passes
    int end_bit = 1;
    while (end_bit < 32 && ((uint64_t)1 << end_bit) < (uint64_t)(V > 0 ? V : 1)) end_bit++;

    size_t temp_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, (const unsigned *)nullptr,
                                               (unsigned *)nullptr, (const int *)nullptr,
                                               (int *)nullptr, N, 0, end_bit, s));
    // one scratch buffer carved into: sorted keys, positions in/out, run ends, CUB temp
    const size_t ib = align256((size_t)N * sizeof(int));
    char *base = (char *)cuda_scratch(SCRATCH_MISC, 4 * ib + temp_bytes);
    unsigned *keys = (unsigned *)base;
    int *pos_in = (int *)(base + ib);
    int *pos = (int *)(base + 2 * ib);
    int *run_end = (int *)(base + 3 * ib);
    void *temp = base + 4 * ib;

    iota_kernel<<<cdiv(N, 256), 256, 0, s>>>(pos_in, N);
    LAUNCH_CHECK();
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, (const unsigned *)tokens, keys,
                                               (const int *)pos_in, pos, N, 0, end_bit, s));
    LAUNCH_CHECK();
    run_end_kernel<<<cdiv(N, 256), 256, 0, s>>>(run_end, keys, N);
    LAUNCH_CHECK();

    const int threads = C >= 128 ? 128 : (C + 31) / 32 * 32;
    const unsigned pos_blocks = N < 4096 ? (unsigned)N : 4096u;
    dim3 grid(pos_blocks, cdiv(C, threads));
    embedding_bwd_kernel<<<grid, threads, 0, s>>>(dwte, dout, keys, pos, run_end, N, C);
    LAUNCH_CHECK();
}
