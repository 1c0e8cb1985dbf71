// Internal to the CUDA backend: the op entry points backend_cuda.cu puts in the
// Backend table (same signatures and contracts as kernels/backend.h and their
// CPU twins in kernels/cpu/cpu_ops.h). One file per op family:
//   backend_cuda.cu  the Backend table     runtime.cu  errors, device, stream, cuBLASLt, scratch, memory
//   elementwise.cu  act_from_f32, add, scale, dropout
//   embedding.cu rmsnorm.cu rope.cu swiglu.cu adamw.cu (adamw_multi + sumsq) dpo.cu
//   matmul.cu (cuBLASLt)  logprob.cu (fused linear log-prob)  attention.cu  decode.cu
//   select.cu (decoding's top-k / log-softmax normaliser / allowed-column gather)
// Numerics: act buffers (activations, the compute copy of the weights, decode
// logits) are bf16; gradients, master weights, Adam moments and statistics
// fp32; GEMMs take bf16 operands on tensor cores with fp32 accumulation;
// KV cache bf16. The void * act arguments below point at act_t (bf16).
#ifndef SPREC_CUDA_OPS_H
#define SPREC_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "../backend.h"   // AdamwTensor

#ifdef __cplusplus
extern "C" {
#endif

// runtime.cu: the device check and selection (SPREC_CUDA_DEVICE), device memory and transfers
void cuda_select_device(void);
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_upload(void *dst, const void *src, size_t bytes);
void cuda_download(void *dst, const void *src, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);
void cuda_zero(void *p, size_t bytes);
void cuda_act_from_f32(void *dst, const float *src, size_t n);
void cuda_matmul_fwd(void *out, const void *inp, const void *w, const void *bias,
                     int N, int C, int OC);
void cuda_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                     const void *inp, const void *w, int N, int C, int OC);
void cuda_embedding_fwd(void *out, const int *tokens, const void *wte, int N, int C);
void cuda_embedding_bwd(float *dwte, const float *dout, const int *tokens, int N, int C, int V);
void cuda_rmsnorm_fwd(void *out, float *rstd, const void *inp, const void *weight,
                      float eps, int N, int C);
void cuda_residual_rmsnorm_fwd(void *res, void *out, float *rstd, const void *a, const void *b,
                               const void *weight, float eps, int N, int C);
void cuda_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const void *inp,
                      const void *weight, const float *rstd, int N, int C);
void cuda_rope_fwd(void *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D);
void cuda_rope_bwd(float *dx, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D);
void cuda_attention_fwd(void *out, float *lse, const void *q, const void *k, const void *v,
                        const int *lengths, int B, int T, int NH, int NKV, int D);
void cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const void *out,
                        const float *lse, const void *q, const void *k, const void *v,
                        const int *lengths, int B, int T, int NH, int NKV, int D);
void cuda_swiglu_fwd(void *out, const void *gate, const void *up, size_t n);
void cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const void *gate,
                     const void *up, size_t n);
void cuda_add(void *out, const void *a, const void *b, size_t n);
void cuda_scale(float *x, float s, size_t n);
void cuda_scale_act(void *x, float s, size_t n);
void cuda_dropout_fwd(void *out, const void *inp, size_t n, float p, uint64_t key);
void cuda_dropout_bwd(float *dinp, const float *dout, size_t n, float p, uint64_t key);
void cuda_logprob_fwd(float *logprob, float *lse, const void *h, const void *w,
                      const int *rows, const int *targets, int n, int C, int V);
void cuda_logprob_bwd(float *dh, float *dw, const void *h, const void *w,
                      const int *rows, const int *targets, const float *lse,
                      const float *weight, int n, int C, int V);
void cuda_logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const void *h, const void *w,
                          const int *rows, const int *targets, const float *weight, int n, int C, int V);
void cuda_adamw_multi(float *p, void *pc, const float *g, float *m, float *v, size_t n,
                      const AdamwTensor *table, int n_tensors, float lr, float beta1, float beta2,
                      float eps, float wd, float bc1, float bc2, float grad_scale);
double cuda_sumsq(const float *x, size_t n);
void cuda_seq_logprob(double *seq_lp, const float *lp, const float *mask, const int *seq, int n, int S);
void cuda_dpo_loss(double *out, double *w, float *tw, const double *lp, const double *ref,
                   const double *pair_weight, double beta, int n, const int *seq, const float *mask,
                   int n_rows);
void *cuda_kv_alloc(size_t n);
void cuda_rope_at_fwd(void *x, const float *cos_tab, const float *sin_tab, const int *pos,
                      int N, int H, int D);
void cuda_kv_write(void *cache, const void *x, const int *start, const int *n_new,
                   int R, int S, int P, int W);
void cuda_attention_cached_fwd(void *out, const void *q, const void *kc, const void *vc,
                               const int *start, const int *n_new, int R, int S, int P,
                               int NH, int NKV, int D);
void cuda_kv_gather(void *cache, const int *src, int R, int len, int P, int W);
void cuda_gather_rows(void *out, const void *inp, const int *rows, int N, int C);
// select.cu: token selection without the [N x V] download
void cuda_logits_lse_topk(double *lse, int *top_id, float *top_val, const void *logits, int N, int V, int k);
void cuda_gather_cols(float *out, const void *logits, const int *off, const int *src, const int *cols, int N, int V);
// runtime.cu: device memory counters (alloc/free, scratch, cuBLASLt workspace) and the device name
void cuda_mem_stats(BackendMemStats *out);
// of which scratch: the bytes the grow-only scratch slots hold now
size_t cuda_scratch_bytes(void);

#ifdef __cplusplus
}

// matmul.cu: the backend's one GEMM entry (logprob.cu uses it too): row-major
// C[M,N] = op(A)[M,K] @ op(B)[K,N] + beta * C (+ bias[N] when bias != NULL,
// then beta must be 0); ta: A stored [K,M]; tb: B stored [N,K]; lda/ldb/ldc
// row strides in elements; element types CUDA_R_16BF (act) or CUDA_R_32F;
// fp32 accumulation, C rounded once. (C++ only: it takes cudaDataType_t.)
#include <library_types.h>
void cuda_gemm_rm(bool ta, bool tb, int M, int N, int K,
                  const void *A, cudaDataType_t at, int64_t lda,
                  const void *B, cudaDataType_t bt, int64_t ldb,
                  void *C, cudaDataType_t ct, int64_t ldc, float beta, const void *bias);
#endif
#endif
