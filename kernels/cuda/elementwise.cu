// The CUDA backend's small elementwise ops: act_from_f32 (the bf16 compute
// copy), add, scale, scale_act, dropout forward/backward. CPU twins:
// kernels/cpu/backend_cpu.c.
#include "cuda_ops.h"
#include "cuda_common.cuh"

// ---- elementwise ops ------------------------------------------------------------

// Grid-stride launches: at most this many blocks, each thread loops. Enough
// blocks to fill any current GPU many times over.
static const int EW_THREADS = 256;
static unsigned ew_blocks(size_t n) {
    size_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 65536 ? b : 65536);
}

// The CPU twins are C compiled in ISO mode (-std=c11), where GCC does not fuse
// a*b+c into an FMA. nvcc would, so where a product meets a sum we use the
// _rn intrinsics (never contracted) to get the same IEEE results bit for bit.

// dst[i] = bf16(src[i]): the compute copy of fp32 master weights (dst != src:
// the two widths would overlap in place)
static __global__ void act_from_f32_kernel(act_t *dst, const float *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        act_st(dst, i, src[i]);
}

void cuda_act_from_f32(void *dst, const float *src, size_t n) {
    if (n == 0) return;
    act_from_f32_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream()>>>((act_t *)dst, src, n);
    LAUNCH_CHECK();
}

// widened, added in fp32, rounded once (the emulation's bf16(float(a) + float(b)))
static __global__ void add_kernel(act_t *out, const act_t *a, const act_t *b, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        act_st(out, i, act_ld(a, i) + act_ld(b, i));   // elementwise: out aliasing a or b is safe
}

void cuda_add(void *out, const void *a, const void *b, size_t n) {
    if (n == 0) return;
    add_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream()>>>((act_t *)out, (const act_t *)a,
                                                              (const act_t *)b, n);
    LAUNCH_CHECK();
}

__global__ void scale_kernel(float *x, float s, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void cuda_scale(float *x, float s, size_t n) {
    if (n == 0) return;
    scale_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream()>>>(x, s, n);
    LAUNCH_CHECK();
}

static __global__ void scale_act_kernel(act_t *x, float s, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        act_st(x, i, act_ld(x, i) * s);
}

void cuda_scale_act(void *x, float s, size_t n) {
    if (n == 0) return;
    scale_act_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream()>>>((act_t *)x, s, n);
    LAUNCH_CHECK();
}

// Device twin of dropout_keep() in kernels/backend.h: the same splitmix64
// finaliser in 64-bit unsigned arithmetic (wraps identically), the top 24 bits
// converted exactly to float ((z >> 40) < 2^24) and scaled by 2^-24 (exact),
// compared with p in float. So every element gets the same keep bit as on CPU.
__device__ __forceinline__ bool dropout_keep_dev(uint64_t key, uint64_t i, float p) {
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return __fmul_rn((float)(z >> 40), 0x1.0p-24f) >= p;
}

// k = 1 / (1 - p), computed on the host exactly as the CPU does
// (act in and out: the product is formed in fp32 and rounded once)
static __global__ void dropout_fwd_kernel(act_t *out, const act_t *inp, size_t n, float p, float k,
                                          uint64_t key) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        act_st(out, i, dropout_keep_dev(key, i, p) ? __fmul_rn(act_ld(inp, i), k) : 0.0f);
}

__global__ void dropout_bwd_kernel(float *dinp, const float *dout, size_t n, float p, float k,
                                   uint64_t key) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        if (dropout_keep_dev(key, i, p)) dinp[i] = __fadd_rn(dinp[i], __fmul_rn(dout[i], k));
}

void cuda_dropout_fwd(void *out, const void *inp, size_t n, float p, uint64_t key) {
    if (n == 0) return;
    const float k = 1.0f / (1.0f - p);
    dropout_fwd_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream()>>>((act_t *)out, (const act_t *)inp,
                                                                      n, p, k, key);
    LAUNCH_CHECK();
}

void cuda_dropout_bwd(float *dinp, const float *dout, size_t n, float p, uint64_t key) {
    if (n == 0 || !dinp) return;
    const float k = 1.0f / (1.0f - p);
    dropout_bwd_kernel<<<ew_blocks(n), EW_THREADS, 0, cuda_stream()>>>(dinp, dout, n, p, k, key);
    LAUNCH_CHECK();
}
