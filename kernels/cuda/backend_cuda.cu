// The CUDA backend's Backend table: every op of kernels/backend.h, from the
// files of kernels/cuda/ (runtime.cu: memory, stream, scratch; elementwise.cu;
// one file per op family). Filled once, after the device check.
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
#include <cstring>
#include "../backend.h"
#include "cuda_ops.h"
#include "cuda_common.cuh"

static_assert(sizeof(act_t) == CUDA_ACT_BYTES, "act_bytes must describe act_t");
// a new Backend op needs its entry below (the CPU wrappers count the same way)
static_assert(sizeof(Backend) == sizeof(const char *) + sizeof(size_t) + 44 * sizeof(void (*)(void)),
              "kernels/backend.h changed: set the new op in make_backend and update this count");

static Backend make_backend(void) {
    cuda_select_device();
    Backend be;
    memset(&be, 0, sizeof be);
    // not on the GPU yet, left NULL: the sentence encoder's layernorm_fwd, gelu_fwd and
    // attention_bidir_fwd (host/model/encoder.c refuses a backend without them)
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
    be.logprob_fwd_bwd = cuda_logprob_fwd_bwd;
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
