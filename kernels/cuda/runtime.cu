// The CUDA backend's runtime: error reporting, device selection, the one
// stream, the cuBLASLt handle and workspace, backend-owned scratch, device
// memory (alloc, free, transfers) and its counters. Every op file builds on
// this one; it calls no op. Ordering and thread model: backend_cuda.cu.
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

// SPREC_CUDA_SYNC=1: synchronise and check after every launch (read once)
static bool sync_each_launch(void) {
    static const bool on = [] {
        const char *e = getenv("SPREC_CUDA_SYNC");
        return e && *e && strcmp(e, "0") != 0;
    }();
    return on;
}

void cuda_after_launch(const char *file, int line) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) cuda_fail("kernel launch", cudaGetErrorString(err), file, line);
    if (!sync_each_launch()) return;
    err = cudaStreamSynchronize(cuda_stream());
    if (err != cudaSuccess)
        cuda_fail("the work launched here (SPREC_CUDA_SYNC=1)", cudaGetErrorString(err), file, line);
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

// The same stream for C callers: the NCCL gradient sum (host/base/dist/dist_mpi.c) waits for events on it.
extern "C" void *cuda_compute_stream(void) { return (void *)cuda_stream(); }

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
void *cuda_alloc(size_t bytes) {
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

void cuda_free(void *p) {
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

void cuda_upload(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    cudaStream_t s = cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));   // the host may reuse src as soon as we return
}

void cuda_download(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    cudaStream_t s = cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));   // the host reads dst as soon as we return
}

void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0 || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
}

void cuda_zero(void *p, size_t bytes) {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream()));
}

// ---- device selection -----------------------------------------------------------

[[noreturn]] static void no_gpu(const char *why) {
    fprintf(stderr, "sprec: error: device 'cuda': no usable GPU (%s)\n", why);
    exit(1);
}

// Checks that a GPU is usable and selects it (SPREC_CUDA_DEVICE, default 0).
// Prints nothing on success.
void cuda_select_device(void) {
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
