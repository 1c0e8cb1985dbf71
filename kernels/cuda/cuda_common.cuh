// Shared by every kernels/cuda/*.cu file: status checks, the stream every op
// runs on, launch helpers. Every CUDA/cuBLAS call and every launch is checked;
// a failure prints file:line and exits (the host never sees a half-done op).
#ifndef SPREC_CUDA_COMMON_CUH
#define SPREC_CUDA_COMMON_CUH

#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublasLt.h>
#include "../backend.h"   // bf16_from_f32

[[noreturn]] void cuda_fail(const char *what, const char *detail, const char *file, int line);

#define CUDA_CHECK(call) do {                                                   \
        cudaError_t err_ = (call);                                              \
        if (err_ != cudaSuccess)                                                \
            cuda_fail(#call, cudaGetErrorString(err_), __FILE__, __LINE__);     \
    } while (0)

#define CUBLAS_CHECK(call) do {                                                 \
        cublasStatus_t st_ = (call);                                            \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                       \
            cuda_fail(#call, cublasGetStatusString(st_), __FILE__, __LINE__);   \
    } while (0)

// After every kernel launch (and cuBLASLt / CUB call): catches bad launch
// configurations at once. With SPREC_CUDA_SYNC=1 it also waits for the stream
// and checks it, so a fault inside a kernel is reported at the launch that
// caused it (file:line) instead of at some later call (debugging; slow).
void cuda_after_launch(const char *file, int line);
#define LAUNCH_CHECK() cuda_after_launch(__FILE__, __LINE__)

// The one stream all ops are queued on (ops are ordered; upload/download sync it).
cudaStream_t cuda_stream(void);
// The cuBLASLt handle and its workspace (created once, with the stream).
cublasLtHandle_t cuda_blaslt(void);
void *cuda_blaslt_workspace(size_t *bytes);
// Scratch owned by the backend, grown on demand and reused between ops (never
// freed while the process runs). slot separates independent users.
void *cuda_scratch(int slot, size_t bytes);
enum { SCRATCH_LOGITS = 0, SCRATCH_REDUCE = 1, SCRATCH_ATTN = 2, SCRATCH_MISC = 3, SCRATCH_SLOTS = 4 };

static inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// Act storage (kernels/backend.h): bf16 on this backend. Every act input is
// widened with act_ld and every act output rounded once with act_st, by
// backend.h's own bf16_from_f32 (round to nearest even; a NaN keeps its sign
// and payload, where __float2bfloat16_rn would store the canonical 0x7fff), so
// the bits equal the CPU emulation's for every input, NaNs included.
typedef __nv_bfloat16 act_t;
#define CUDA_ACT_BYTES 2
__device__ __forceinline__ float act_ld(const act_t *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void act_st(act_t *p, size_t i, float x) { p[i] = __ushort_as_bfloat16(bf16_from_f32(x)); }

#endif
