// The one interface every compute backend implements (the fp32 CPU reference,
// its checked and bf16-emulating twins, CUDA), and the registry that picks one.
// Host code reaches the math only through a Backend chosen at run time, so the
// same model/trainer code runs on any device.
//
// Conventions shared by every op:
//  - All pointers are device pointers (plain host memory on the CPU backend).
//  - Row-major. "N" is a number of token rows (B*T), "C" a channel width.
//  - Linear weights are stored as Hugging Face / PyTorch do: W[out, in].
//  - Every *_bwd ADDS into its gradient outputs (inputs' and parameters'), so
//    residual branches and gradient accumulation need no extra copies. Callers
//    zero gradient buffers when they want a fresh gradient. A NULL gradient
//    output means "not needed" and is skipped. (rope_bwd is the one exception:
//    it transforms its buffer in place.)
//  - Sequences are right-padded: row (b, t) is valid iff t < lengths[b], with
//    0 <= lengths[b] <= T. Padded rows of inputs are never read (any garbage,
//    even NaN, is harmless) and padded rows of outputs are written as 0.
//  - Every op is deterministic for a fixed thread count / device: reductions
//    run in a fixed order, never with racing float adds.
//
// Two element types (docs/numerics.md):
//  - "act" (void * below): activations and the compute copy of the weights,
//    in the backend's storage type: act_bytes per element, fp32 (4) on the CPU
//    backend, bf16 (2, round-to-nearest-even) on CUDA and on the CPU's bf16
//    emulation (`--device cpu-bf16`). The host never reads one directly: it
//    moves them with host/model/act.h (converting on the host) or act_from_f32.
//  - fp32 (float *): master weights, every gradient (of parameters and of
//    activations), optimizer moments, statistics (rstd, lse, log-probs,
//    weights of rows), rotary tables. double where noted.
// Ops compute in fp32 (or double) whatever the storage: an act input is
// widened on load and an act output rounded once on store.
#ifndef SPREC_BACKEND_H
#define SPREC_BACKEND_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

// One tensor of the flat buffer adamw_multi steps (table entries live on
// the device). Same layout in C and CUDA C++.
typedef struct {
    size_t offset, numel;        // elements into p, g, m, v (floats) and pc (act)
    int decay;                   // nonzero: apply weight decay
} AdamwTensor;

// dpo_loss's out[]: the objective and TRL's statistics (host/train/dpo.h DpoStats)
enum { DPO_OUT_LOSS, DPO_OUT_REWARDS_CHOSEN, DPO_OUT_REWARDS_REJECTED, DPO_OUT_REWARDS_MARGINS,
       DPO_OUT_REWARDS_ACCURACIES, DPO_OUT_LOGPS_CHOSEN, DPO_OUT_LOGPS_REJECTED, DPO_OUT_COUNT };

// mem_stats's answer (device memory as the backend's allocator sees it; the
// driver's context and other processes are not counted).
typedef struct {
    size_t current;              // bytes held now: alloc / kv_alloc buffers + scratch + library workspace
    size_t peak;                 // the largest `current` since the backend started (never reset)
    size_t scratch;              // part of current: the backend's own grow-only scratch buffers
                                 // (e.g. the log-prob head's chunk buffers)
    size_t total;                // the device's memory
    char device_name[256];       // e.g. "NVIDIA H200" (cudaDeviceProp::name is 256 chars)
} BackendMemStats;

typedef struct Backend {
    const char *name;
    // Bytes of one act element: 4 = fp32, 2 = bf16 (bf16_from_f32 below).
    size_t act_bytes;

    // ---- memory -----------------------------------------------------------
    void *(*alloc)(size_t bytes);                 // zero-filled, 64-byte aligned; exits on failure
    void (*free)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);    // host -> device
    void (*download)(void *dst, const void *src, size_t bytes);  // device -> host
    void (*copy)(void *dst, const void *src, size_t bytes);      // device -> device
    void (*zero)(void *p, size_t bytes);
    // dst[i] = act(src[i]) for i < n: the compute copy of fp32 master weights.
    // dst == src is allowed when act_bytes == 4 (then it does nothing).
    void (*act_from_f32)(void *dst, const float *src, size_t n);

    // ---- dense layers -----------------------------------------------------
    // out[N,OC] = inp[N,C] @ w[OC,C]^T (+ bias[OC] when bias != NULL); all act
    void (*matmul_fwd)(void *out, const void *inp, const void *w, const void *bias,
                       int N, int C, int OC);
    // dinp[N,C] += dout @ w;  dw[OC,C] += dout^T @ inp;  dbias[OC] += colsum(dout)
    // dinp, dw, dbias, dout fp32; inp, w act (a backend may round dout to act
    // for its GEMMs: the products then match an act-precision framework's)
    void (*matmul_bwd)(float *dinp, float *dw, float *dbias, const float *dout,
                       const void *inp, const void *w, int N, int C, int OC);

    // out[N,C] = wte[tokens[n], :]   (act; tokens already range-checked by the host)
    void (*embedding_fwd)(void *out, const int *tokens, const void *wte, int N, int C);
    // dwte[tokens[n], :] += dout[n, :]   (deterministic: no racing adds)
    void (*embedding_bwd)(float *dwte, const float *dout, const int *tokens, int N, int C, int V);

    // out = inp * rstd * weight, rstd[n] = 1/sqrt(mean(inp[n]^2) + eps)
    // (out, inp, weight act; rstd fp32)
    void (*rmsnorm_fwd)(void *out, float *rstd, const void *inp, const void *weight,
                        float eps, int N, int C);
    void (*rmsnorm_bwd)(float *dinp, float *dweight, const float *dout, const void *inp,
                        const void *weight, const float *rstd, int N, int C);
    // The residual add fused with the RMSNorm after it, one pass over the rows:
    // res = a + b (act, rounded once), then out, rstd = rmsnorm_fwd of the
    // stored res; the same values as add followed by rmsnorm_fwd. res may alias
    // a or b. (The backward needs no twin: rmsnorm_bwd adds into the residual's
    // gradient.)
    void (*residual_rmsnorm_fwd)(void *res, void *out, float *rstd, const void *a, const void *b,
                                 const void *weight, float eps, int N, int C);
    // LayerNorm (BERT, torch.nn.LayerNorm): out = (inp - mean) * rstd * weight + bias,
    // rstd = 1/sqrt(var + eps), var the biased variance over the C channels of a
    // row. Forward only (the sentence encoder). out, inp, weight, bias act; out
    // may alias inp.
    void (*layernorm_fwd)(void *out, const void *inp, const void *weight, const void *bias, float eps,
                          int N, int C);

    // Rotary embedding, rotate-half convention, in place on x[B,T,H,D] (D even)
    // with position t for row (b,t). cos/sin are tables [T, D/2]. x is act.
    void (*rope_fwd)(void *x, const float *cos, const float *sin, int B, int T, int H, int D);
    // Inverse rotation of the gradient (fp32), in place (RoPE is orthogonal).
    void (*rope_bwd)(float *dx, const float *cos, const float *sin, int B, int T, int H, int D);

    // Causal grouped-query attention over right-padded sequences.
    // q[B,T,NH,D], k,v[B,T,NKV,D] (NH % NKV == 0, head h reads kv head h/(NH/NKV)),
    // out[B,T,NH,D], lse[B,NH,T] (log-sum-exp of the scaled scores, kept for the
    // backward). Scale 1/sqrt(D). Rows t >= lengths[b] get out = 0, lse = 0.
    // q, k, v, out act; lse and every gradient fp32.
    void (*attention_fwd)(void *out, float *lse, const void *q, const void *k, const void *v,
                          const int *lengths, int B, int T, int NH, int NKV, int D);
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const void *out,
                          const float *lse, const void *q, const void *k, const void *v,
                          const int *lengths, int B, int T, int NH, int NKV, int D);
    // Bidirectional attention (BERT), forward only: query t of sequence b sees
    // every key j < lengths[b], softmax(q k^T / sqrt(D)) v per head; rows
    // t >= lengths[b] get out = 0. q, k, v, out [B,T,NH,D] act.
    void (*attention_bidir_fwd)(void *out, const void *q, const void *k, const void *v,
                                const int *lengths, int B, int T, int NH, int D);

    // out[n] = silu(gate[n]) * up[n] over n elements (act)
    void (*swiglu_fwd)(void *out, const void *gate, const void *up, size_t n);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const void *gate,
                       const void *up, size_t n);
    // out[n] = gelu(inp[n]) = 0.5 x (1 + erf(x / sqrt 2)), the exact form (BERT's
    // "gelu"), over n elements; forward only. act; out may alias inp.
    void (*gelu_fwd)(void *out, const void *inp, size_t n);

    // out[n] = a[n] + b[n]   (act; out may alias a or b)
    void (*add)(void *out, const void *a, const void *b, size_t n);
    // x[n] *= s, in place: scale on fp32, scale_act on act
    void (*scale)(float *x, float s, size_t n);
    void (*scale_act)(void *x, float s, size_t n);
    // Inverted dropout with a stateless mask (LoRA): element i is kept iff
    // dropout_keep(key, i, p) (below), and out[i] = kept ? inp[i] / (1 - p) : 0.
    // The mask is a pure function of (key, i, p), so the backward regenerates
    // it and every backend draws the same mask. dropout_bwd ADDS:
    // dinp[i] += kept ? dout[i] / (1 - p) : 0. 0 <= p < 1. fwd on act, bwd on fp32.
    void (*dropout_fwd)(void *out, const void *inp, size_t n, float p, uint64_t key);
    void (*dropout_bwd)(float *dinp, const float *dout, size_t n, float p, uint64_t key);

    // ---- language-model head: log-probs of chosen rows only ---------------
    // For i < n: r = rows[i] indexes h[*,C]; logits = h[r] @ w[V,C]^T;
    // logprob[i] = logits[targets[i]] - logsumexp(logits); lse[i] kept.
    // Processed in chunks of rows, so no [n x V] tensor ever exists. h, w act;
    // logits, log-sum-exp and everything out fp32.
    void (*logprob_fwd)(float *logprob, float *lse, const void *h, const void *w,
                        const int *rows, const int *targets, int n, int C, int V);
    // Gradient of the loss -sum_i weight[i] * logprob[i]: dh[rows[i]] += ...,
    // dw += ... (dw may be NULL: frozen head). rows must be distinct; lse comes
    // from logprob_fwd on the same h and w. Rows with weight 0 cost nothing.
    void (*logprob_bwd)(float *dh, float *dw, const void *h, const void *w,
                        const int *rows, const int *targets, const float *lse,
                        const float *weight, int n, int C, int V);
    // Both in one pass, for a loss whose weights are known before the forward
    // (SFT): the log-probs and lse of logprob_fwd (the same values, bit for
    // bit) and the gradient of logprob_bwd, each chunk's logits computed once
    // and turned into their gradient in place, so the head costs three GEMMs
    // per chunk instead of four. Rows of weight 0 get their log-prob and add
    // nothing to dh (their h row must be finite: it meets a zero in dw's GEMM).
    void (*logprob_fwd_bwd)(float *logprob, float *lse, float *dh, float *dw, const void *h,
                            const void *w, const int *rows, const int *targets, const float *weight,
                            int n, int C, int V);

    // ---- optimizer --------------------------------------------------------
    // One AdamW step over a whole flat buffer in one launch: for each of the
    // n_tensors entries of table (a DEVICE array, see AdamwTensor), elements
    // offset .. offset+numel-1 of p, g, m, v are stepped with weight decay wd
    // when the entry's decay flag is set and 0 otherwise; elements outside
    // every entry are not touched. Entries must not overlap and must lie
    // within [0, n). g is scaled by grad_scale first (clipping). lr already
    // includes the schedule; bc1/bc2 are the bias corrections 1-beta1^t,
    // 1-beta2^t. As torch.optim.AdamW: decoupled decay first, p *= 1 - lr*wd,
    // then p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps). Elementwise, so the
    // result does not depend on the thread count or the launch shape. pc is
    // the compute copy (act, same layout): each stepped element is also stored
    // as pc[i] = act(p[i]); pc == p is allowed when act_bytes == 4.
    void (*adamw_multi)(float *p, void *pc, const float *g, float *m, float *v, size_t n,
                        const AdamwTensor *table, int n_tensors, float lr, float beta1,
                        float beta2, float eps, float wd, float bc1, float bc2, float grad_scale);
    // Sum of squares of x[0..n), accumulated in double in a fixed order (the
    // global gradient norm is sqrt of it: model_grad_norm).
    double (*sumsq)(const float *x, size_t n);

    // ---- DPO (docs/dpo.md) --------------------------------------------------
    // Segmented sum of head log-probs into sequence log-probs, in double:
    //   seq_lp[s] = sum over i < n with seq[i] == s of (double)mask[i] * (double)lp[i]
    // for s < S, each sum taken in increasing i (so every backend gives the same
    // bits: the products are exact in double). 0 <= seq[i] < S; rows may come in
    // any order. lp, mask [n] float, seq [n] int, seq_lp [S] double.
    void (*seq_logprob)(double *seq_lp, const float *lp, const float *mask, const int *seq,
                        int n, int S);
    // The DPO loss of n pairs and its reweighting, in double:
    //   lp[2n], ref[2n]: policy and reference sequence log-probs, chosen pairs
    //   0..n-1 then rejected n..2n-1; pair_weight[n] or NULL (= 1).
    //   z_i = beta*(lp_c - ref_c) - beta*(lp_r - ref_r)
    //   out[DPO_OUT_COUNT] (double): loss = (1/n) sum_i pw_i * -log sigmoid(z_i)
    //     and the DpoStats means (DPO_OUT_* above), sums taken in pair order;
    //   w[2n] (double): w[i] = -beta * sigmoid(-z_i) * pw_i / n, w[n+i] = -w[i];
    //   tw[r] (float) = (float)(-w[seq[r]] * (double)mask[r]) for r < n_rows:
    //   the per-row weights of logprob_bwd for the loss (seq, mask as in
    //   seq_logprob, 0 <= seq[r] < 2n; tw, seq, mask unused when n_rows == 0).
    // log sigmoid and sigmoid as dpo_log_sigmoid / dpo_sigmoid below. n >= 1.
    void (*dpo_loss)(double *out, double *w, float *tw, const double *lp, const double *ref,
                     const double *pair_weight, double beta, int n, const int *seq,
                     const float *mask, int n_rows);

    // ---- generation: KV-cache decoding (forward only) ----------------------
    // A KV cache is one buffer per layer and per K/V, [R, P, W] with R rows
    // (sequences or beams), P positions and W = NKV*D, in the backend's cache
    // dtype (fp32 on the CPU backends, holding bf16 values on cpu-bf16; bf16 on
    // CUDA), so the host never reads it directly.
    // In the ops below, row b holds start[b] valid positions before the call
    // and n_new[b] (0 <= n_new[b] <= S, start[b] + n_new[b] <= P) new ones
    // arrive in an [R,S,...] block, right-padded as everywhere else.

    // Cache storage for n elements, zero-filled; released with free.
    void *(*kv_alloc)(size_t n);
    // Rotary embedding at explicit positions, in place on x[N,H,D]: row n is
    // rotated by the angle of position pos[n]; cos/sin are tables [P, D/2]
    // and 0 <= pos[n] < P. Same arithmetic as rope_fwd. x is act.
    void (*rope_at_fwd)(void *x, const float *cos, const float *sin, const int *pos,
                        int N, int H, int D);
    // cache[b, start[b] + s, :] = x[b, s, :] for s < n_new[b];  x[R,S,W] act
    void (*kv_write)(void *cache, const void *x, const int *start, const int *n_new,
                     int R, int S, int P, int W);
    // Attention of the new queries q[R,S,NH,D] against the cache (which already
    // holds the new keys/values): query (b, s) sits at position start[b] + s
    // and sees cache positions 0 .. start[b] + s (causal within the new block),
    // GQA as attention_fwd, scale 1/sqrt(D). out[R,S,NH,D]; rows s >= n_new[b]
    // are written as 0. kc, vc: [R,P,NKV,D]. q, out act.
    void (*attention_cached_fwd)(void *out, const void *q, const void *kc, const void *vc,
                                 const int *start, const int *n_new, int R, int S, int P,
                                 int NH, int NKV, int D);
    // Beam reorder: cache[i, 0..len) = old cache[src[i], 0..len) for i < R
    // (src may repeat rows and read rows that are overwritten: it is a gather
    // from the state before the call). cache [>= R, P, W].
    void (*kv_gather)(void *cache, const int *src, int R, int len, int P, int W);
    // out[n, :] = inp[rows[n], :] for n < N;  out[N,C] (act)
    void (*gather_rows)(void *out, const void *inp, const int *rows, int N, int C);

    // ---- generation: choosing tokens without downloading logits -------------
    // Decoding reads a few numbers per row of logits[N,V] (device) instead of
    // the whole row; the host downloads only these. Logits (act) are finite
    // or -INFINITY (never NaN); values out are the act values widened to fp32.
    //
    // lse[n] = log sum_v exp(logits[n,v]) in double, -INFINITY when the whole
    // row is -INFINITY. The CPU backend computes it exactly as host/gen/sampler.c's
    // logsumexp (max m = logits[first argmax], then sum of exp((double)x - m) in
    // index order, m + log(sum)); other backends may sum in another order.
    // For k > 0 also the k largest entries of each row, best first, ties to
    // the lower id, -INFINITY entries never listed (as sampler.c's top_n):
    // top_id[n*k + i], top_val[n*k + i] = logits[n, top_id[n*k + i]]; slots
    // beyond the row's listed entries get id -1 and value -INFINITY. k = 0:
    // lse only (top_id, top_val unused, may be NULL). k is small (a beam's
    // 2W; the CUDA kernel costs one pass over V plus k short rescans per row).
    void (*logits_lse_topk)(double *lse, int *top_id, float *top_val, const void *logits,
                            int N, int V, int k);
    // Chosen columns of each row: out[j] = logits[n, cols[src[n] + j - off[n]]]
    // for off[n] <= j < off[n+1], n < N (off[0] = 0, every column read in
    // [0, V)): row n reads its own slice of cols, starting at src[n]. With
    // src = off the slices are consecutive: a CSR list of ids uploaded for the
    // step. With cols = the catalogue trie's child tokens, kept on the device
    // for a whole generation, and src[n] = the first child edge of row n's node,
    // the constraint costs 2N + 1 uploaded ints per step whatever the number of
    // allowed tokens (host/gen/generate.c, GenOpts.allowed_slice).
    void (*gather_cols)(float *out, const void *logits, const int *off, const int *src, const int *cols,
                        int N, int V);

    // ---- introspection (optional) -----------------------------------------
    // Device memory counters and the device's name, into a host struct; used by
    // `sprec bench`. NULL on backends whose buffers are host memory (CPU: the
    // process's resident set is the measure there).
    void (*mem_stats)(BackendMemStats *out);
} Backend;

// The dropout mask every backend uses: a splitmix64 finaliser of key + i,
// top 24 bits as a uniform in [0, 1); element i is kept iff that is >= p.
static inline int dropout_keep(uint64_t key, uint64_t i, float p) {
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)(z >> 40) * 0x1.0p-24f >= p;
}

#ifdef __CUDACC__
#define SPREC_HOST_DEVICE __host__ __device__
#else
#define SPREC_HOST_DEVICE
#endif

// bf16 as every part of sprec stores it: the top 16 bits of the fp32, rounded
// to nearest, ties to even; NaN stays a (quiet) NaN, infinities stay infinite,
// finite values past the bf16 range round to infinity (as PyTorch's .bfloat16()).
static inline SPREC_HOST_DEVICE uint16_t bf16_from_f32(float x) {
    union { float f; uint32_t u; } v;
    v.f = x;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x0040u);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}
static inline SPREC_HOST_DEVICE float f32_from_bf16(uint16_t h) {
    union { float f; uint32_t u; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

// The DPO pair arithmetic every backend uses (double; device code too under nvcc).
// log sigmoid(x) = -log(1 + exp(-x)) = min(x, 0) - log1p(exp(-|x|)): finite for every finite x
static inline SPREC_HOST_DEVICE double dpo_log_sigmoid(double x) {
    return (x < 0 ? x : 0.0) - log1p(exp(-fabs(x)));
}
// sigmoid(x) in [0, 1] without overflow on either side
static inline SPREC_HOST_DEVICE double dpo_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

// ---- the backends and their registry (kernels/registry.c) -------------------
// C linkage: backend_cuda is defined in CUDA C++ (kernels/cuda/backend_cuda.cu).
#ifdef __cplusplus
extern "C" {
#endif
// The fp32 reference (kernels/cpu/backend_cpu.c); `--device cpu`.
const Backend *backend_cpu(void);
// The CPU ops with bf16 act storage (kernels/cpu/bf16_emulated.c): every act
// input widened, the fp32 op run, every act output rounded, exactly as the
// CUDA backend stores; `--device cpu-bf16`, the GPU's numerics on any machine.
const Backend *backend_cpu_bf16(void);
// The CPU ops behind a wall that makes the host's device-memory mistakes fail
// at once, as on a GPU (kernels/cpu/checked.c); `--device cpu-checked`.
const Backend *backend_cpu_checked(void);
// backend_cuda: NULL when sprec was built without nvcc (kernels/cpu/no_cuda.c);
// when built with it but no GPU is usable, it exits with a one-line message.
const Backend *backend_cuda(void);

// Every backend by the name --device / run.device gives it, in the order the
// error messages list them.
typedef struct {
    const char *name;
    const Backend *(*get)(void);   // the backend; NULL when it is not in this build
    const char *about;             // one line: what it is for
} BackendEntry;
extern const BackendEntry BACKENDS[];
extern const int N_BACKENDS;

// The backend called name. Exits with a one-line error listing the names when
// there is none, or saying why when it is not in this build (cuda without nvcc).
const Backend *backend_select(const char *name);

// What a backend can do beyond the training ops every backend has: each
// capability is a group of ops, all present or all absent (NULL).
typedef enum {
    BACKEND_KV_DECODE,     // KV-cache decoding: kv_alloc, rope_at_fwd, kv_write, attention_cached_fwd,
                           // kv_gather, gather_rows
    BACKEND_DEVICE_PICK,   // choosing tokens without downloading logits: logits_lse_topk, gather_cols
    BACKEND_MEM_STATS,     // device memory counters: mem_stats (the CPU backends use the process RSS)
} BackendCapability;
int backend_supports(const Backend *be, BackendCapability cap);
#ifdef __cplusplus
}
#endif

#endif
