// The CUDA backend's core: error reporting, the one stream, the cuBLASLt handle
// and workspace, backend-owned scratch, memory ops, the small elementwise ops
// (act_from_f32, add, scale, scale_act, dropout) and the registry that fills
// the Backend table.
//
// Storage (kernels/backend.h): act buffers (activations, the compute copy of
// the weights) are bf16 (act_t, act_bytes = 2); gradients, master weights,
// Adam moments and statistics fp32. Every op widens act inputs to fp32,
// computes in fp32 (or double) and rounds each act output once (round to
// nearest even, the bits of bf16_from_f32), as the CPU's bf16 emulation does.
// GEMMs (matmul.cu, logprob.cu) take bf16 operands on tensor cores with fp32
// accumulation; their backward passes also round the fp32 output gradient
// (dout, dlogits) to bf16 for the products, as a bf16 framework does, and add
// into fp32 gradients. No TF32 anywhere (SPREC_CUDA_TF32 is gone).
//
// Ordering model: every op is queued on cuda_stream() and returns without
// waiting, except the ones that hand data to the host (download, sumsq) or
// take it from the host (upload), which synchronise the stream so the host
// buffer may be read / reused as soon as they return. alloc synchronises too,
// so a fresh buffer is zero before anyone can touch it, and free synchronises
// before releasing memory that queued kernels may still use.
//
// Host threads: the backend is driven from one host thread at a time (the
// trainer); the lazily created globals use C++ function-local statics, whose
// initialisation is thread-safe anyway.
#include <cerrno>
#include <climits>
#include <cstring>
#include <unordered_map>
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

// ---- errors -----------------------------------------------------------------

// One line on stderr, exit 1, like kernels/errors.h's fail(): a CUDA error is not
// recoverable here (the stream's state is unknown), so the run ends.
[[noreturn]] void cuda_fail(const char *what, const char *detail, const char *file, int line) {
    fprintf(stderr, "sprec: error: cuda: %s failed at %s:%d: %s\n", what, file, line,
            detail ? detail : "(no detail)");
    exit(1);
}

// ---- memory accounting (mem_stats) --------------------------------------------
// Every cudaMalloc of the backend goes through these counters: alloc/free
// (sizes kept per pointer), the scratch slots and the cuBLASLt workspace. Host
// thread model as above (one at a time), so plain counters suffice.
static size_t mem_current, mem_peak, mem_scratch;

static void mem_add(size_t bytes) {
    mem_current += bytes;
    if (mem_current > mem_peak) mem_peak = mem_current;
}
static void mem_sub(size_t bytes) { mem_current -= bytes < mem_current ? bytes : mem_current; }

static std::unordered_map<void *, size_t> &alloc_sizes(void) {
    static std::unordered_map<void *, size_t> m;
    return m;
}

size_t cuda_scratch_bytes(void) { return mem_scratch; }

// ---- stream, cuBLASLt, scratch --------------------------------------------

// Non-blocking: it never serialises against the legacy default stream, so the
// only ordering is the one we create (all ops on this one stream).
static cudaStream_t make_stream(void) {
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
}

cudaStream_t cuda_stream(void) {
    static cudaStream_t s = make_stream();   // created on first use, after backend_cuda() picked the device
    return s;
}

// 32 MiB: enough for cuBLASLt's split-K / stream-K heuristics on large GEMMs.
static const size_t BLASLT_WORKSPACE_BYTES = (size_t)32 << 20;

struct BlasLt {
    cublasLtHandle_t handle;
    void *workspace;
};

static BlasLt make_blaslt(void) {
    BlasLt b;
    (void)cuda_stream();   // "created once, with the stream": keep the order stream -> handle
    CUBLAS_CHECK(cublasLtCreate(&b.handle));
    CUDA_CHECK(cudaMalloc(&b.workspace, BLASLT_WORKSPACE_BYTES));
    mem_add(BLASLT_WORKSPACE_BYTES);
    return b;
}

static BlasLt &blaslt(void) {
    static BlasLt b = make_blaslt();
    return b;
}

cublasLtHandle_t cuda_blaslt(void) { return blaslt().handle; }

void *cuda_blaslt_workspace(size_t *bytes) {
    if (bytes) *bytes = BLASLT_WORKSPACE_BYTES;
    return blaslt().workspace;
}

// Grow-only device buffers, one per slot. A pointer returned for a slot stays
// valid until the next call for the same slot asks for more bytes (then the
// old buffer is released after the stream drains, since queued kernels may
// still read it). So an op asks once per slot and carves that one buffer.
void *cuda_scratch(int slot, size_t bytes) {
    static void *buf[SCRATCH_SLOTS];
    static size_t cap[SCRATCH_SLOTS];
    if (slot < 0 || slot >= SCRATCH_SLOTS) {
        char d[64];
        snprintf(d, sizeof d, "slot %d out of range", slot);
        cuda_fail("cuda_scratch", d, __FILE__, __LINE__);
    }
    if (bytes > cap[slot] || !buf[slot]) {
        // grow by at least 1/4 (and to at least 1 MiB) so slowly growing
        // requests do not reallocate (and drain the stream) every time
        size_t want = bytes + bytes / 4;
        if (want < ((size_t)1 << 20)) want = (size_t)1 << 20;
        want = (want + 255) / 256 * 256;
        if (buf[slot]) {
            CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
            CUDA_CHECK(cudaFree(buf[slot]));
            mem_sub(cap[slot]);
            mem_scratch -= cap[slot];
            buf[slot] = NULL;
            cap[slot] = 0;
        }
        cudaError_t err = cudaMalloc(&buf[slot], want);
        if (err != cudaSuccess) {
            fprintf(stderr, "sprec: error: cuda: out of device memory allocating %zu bytes of scratch (%s)\n",
                    want, cudaGetErrorString(err));
            exit(1);
        }
        cap[slot] = want;
        mem_add(want);
        mem_scratch += want;
    }
    return buf[slot];
}

// ---- memory ------------------------------------------------------------------

// Zero-filled; cudaMalloc aligns to at least 256 bytes (> the 64 the contract asks).
static void *cuda_alloc(size_t bytes) {
    size_t padded = (bytes + 63) / 64 * 64;
    if (padded == 0) padded = 64;   // never hand out NULL: callers treat NULL as "absent"
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, padded);
    if (err != cudaSuccess) {
        fprintf(stderr, "sprec: error: cuda: out of device memory allocating %zu bytes (%s)\n",
                bytes, cudaGetErrorString(err));
        exit(1);
    }
    alloc_sizes()[p] = padded;
    mem_add(padded);
    cudaStream_t s = cuda_stream();
    CUDA_CHECK(cudaMemsetAsync(p, 0, padded, s));
    // the caller may hand p to another stream or to the host API (cudaMemcpy)
    // at once: make sure the zeroing is done first
    CUDA_CHECK(cudaStreamSynchronize(s));
    return p;
}

static void cuda_free(void *p) {
    if (!p) return;
    // kernels still queued on the stream may read or write p
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    CUDA_CHECK(cudaFree(p));
    auto &sizes = alloc_sizes();
    auto it = sizes.find(p);
    if (it != sizes.end()) {
        mem_sub(it->second);
        sizes.erase(it);
    }
}

void cuda_mem_stats(BackendMemStats *out) {
    memset(out, 0, sizeof *out);
    out->current = mem_current;
    out->peak = mem_peak;
    out->scratch = mem_scratch;
    int dev = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
        out->total = prop.totalGlobalMem;
        memcpy(out->device_name, prop.name, sizeof out->device_name - 1);   // NUL-terminated by the memset
    }
}

static void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    cudaStream_t s = cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));   // the host may reuse src as soon as we return
}

static void cuda_download(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    cudaStream_t s = cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));   // the host reads dst as soon as we return
}

static void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0 || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
}

static void cuda_zero(void *p, size_t bytes) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream()));
}

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

// ---- registry -----------------------------------------------------------------

[[noreturn]] static void no_gpu(const char *why) {
    fprintf(stderr, "sprec: error: device 'cuda': no usable GPU (%s)\n", why);
    exit(1);
}

// Checks that a GPU is usable and selects it (SPREC_CUDA_DEVICE, default 0).
// Prints nothing on success.
static void select_device(void) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) no_gpu(cudaGetErrorString(err));
    if (count <= 0) no_gpu("no CUDA device found");
    int dev = 0;
    const char *env = getenv("SPREC_CUDA_DEVICE");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        long v = strtol(env, &end, 10);
        if (errno || *end || v < 0 || v >= count) {
            fprintf(stderr, "sprec: error: device 'cuda': SPREC_CUDA_DEVICE='%s' is not a device "
                    "index in 0..%d\n", env, count - 1);
            exit(1);
        }
        dev = (int)v;
    }
    err = cudaSetDevice(dev);
    if (err != cudaSuccess) no_gpu(cudaGetErrorString(err));
    // cudaFree(0) creates the context now, so a broken driver/device is
    // reported here as "no usable GPU" rather than at the first op
    err = cudaFree(0);
    if (err != cudaSuccess) no_gpu(cudaGetErrorString(err));
}

static_assert(sizeof(act_t) == CUDA_ACT_BYTES, "act_bytes must describe act_t");
// a new Backend op needs its entry below (the CPU wrappers count the same way)
static_assert(sizeof(Backend) == sizeof(const char *) + sizeof(size_t) + 40 * sizeof(void (*)(void)),
              "kernels/backend.h changed: set the new op in make_backend and update this count");

static Backend make_backend(void) {
    select_device();
    Backend be;
    memset(&be, 0, sizeof be);
    be.name = "cuda";
    be.act_bytes = CUDA_ACT_BYTES;
    be.alloc = cuda_alloc;
    be.free = cuda_free;
    be.upload = cuda_upload;
    be.download = cuda_download;
    be.copy = cuda_copy;
    be.zero = cuda_zero;
    be.act_from_f32 = cuda_act_from_f32;
    be.matmul_fwd = cuda_matmul_fwd;
    be.matmul_bwd = cuda_matmul_bwd;
    be.embedding_fwd = cuda_embedding_fwd;
    be.embedding_bwd = cuda_embedding_bwd;
    be.rmsnorm_fwd = cuda_rmsnorm_fwd;
    be.rmsnorm_bwd = cuda_rmsnorm_bwd;
    be.residual_rmsnorm_fwd = cuda_residual_rmsnorm_fwd;
    be.rope_fwd = cuda_rope_fwd;
    be.rope_bwd = cuda_rope_bwd;
    be.attention_fwd = cuda_attention_fwd;
    be.attention_bwd = cuda_attention_bwd;
    be.swiglu_fwd = cuda_swiglu_fwd;
    be.swiglu_bwd = cuda_swiglu_bwd;
    be.add = cuda_add;
    be.scale = cuda_scale;
    be.scale_act = cuda_scale_act;
    be.dropout_fwd = cuda_dropout_fwd;
    be.dropout_bwd = cuda_dropout_bwd;
    be.logprob_fwd = cuda_logprob_fwd;
    be.logprob_bwd = cuda_logprob_bwd;
    be.adamw_multi = cuda_adamw_multi;
    be.sumsq = cuda_sumsq;
    be.seq_logprob = cuda_seq_logprob;
    be.dpo_loss = cuda_dpo_loss;
    be.kv_alloc = cuda_kv_alloc;
    be.rope_at_fwd = cuda_rope_at_fwd;
    be.kv_write = cuda_kv_write;
    be.attention_cached_fwd = cuda_attention_cached_fwd;
    be.kv_gather = cuda_kv_gather;
    be.gather_rows = cuda_gather_rows;
    be.logits_lse_topk = cuda_logits_lse_topk;
    be.gather_cols = cuda_gather_cols;
    be.mem_stats = cuda_mem_stats;
    return be;
}

extern "C" const Backend *backend_cuda(void) {
    static const Backend be = make_backend();   // first call: GPU check + device selection
    return &be;
}
