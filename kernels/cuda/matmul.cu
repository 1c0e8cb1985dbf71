// Dense layer out = inp @ w^T + bias on cuBLASLt. The weight keeps its
// PyTorch [OC, C] layout. Numerics: bf16 operands (act) on tensor cores with
// fp32 accumulation (CUBLAS_COMPUTE_32F, fp32 alpha/beta); the forward writes
// bf16 (one rounding of the fp32 result, bias included); the backward rounds
// the fp32 dout to bf16 once and accumulates into the fp32 gradients. Besides
// the two backend ops this file exports cuda_gemm_rm, the one GEMM entry point
// of the CUDA backend (logprob.cu uses it too), which caches cuBLASLt
// descriptors and the chosen algorithm per shape/alignment/data types.
#include <cstring>
#include "cuda_common.cuh"
#include "cuda_ops.h"

// ---------------------------------------------------------------------------
// Largest power of two (<= 256) dividing the address. cuBLASLt's heuristic
// assumes 256-byte aligned operands unless told otherwise, and our operands
// are often views into larger buffers (a head's rows, a chunk of a batch).
static uint32_t ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

// ---------------------------------------------------------------------------
// Descriptor/algorithm cache. A training step uses a handful of shapes, each
// many times, so creating descriptors and running the heuristic once per
// shape is worth it. Entries are replaced round-robin when the table is full.
struct GemmKey {
    int ta, tb;                 // row-major view: op(A), op(B) transposed?
    int M, N, K;
    int64_t lda, ldb, ldc;
    int bias_epi;               // 1: BIAS epilogue
    uint32_t al_a, al_b, al_c, al_bias;
    int at, bt, ct;             // cudaDataType_t of A, B and C (= D; the bias is ct too)
};

struct GemmEntry {
    int used;
    GemmKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;   // cuBLASLt (column-major) operands A', B', C
    cublasLtMatmulAlgo_t algo;
    int ok;                              // 0: the heuristic found no algorithm (cached too)
};

enum { GEMM_CACHE = 64 };
static GemmEntry gemm_cache[GEMM_CACHE];
static int gemm_next = 0;

static bool key_eq(const GemmKey &a, const GemmKey &b) {
    return a.ta == b.ta && a.tb == b.tb && a.M == b.M && a.N == b.N && a.K == b.K &&
           a.lda == b.lda && a.ldb == b.ldb && a.ldc == b.ldc && a.bias_epi == b.bias_epi &&
           a.al_a == b.al_a && a.al_b == b.al_b && a.al_c == b.al_c && a.al_bias == b.al_bias &&
           a.at == b.at && a.bt == b.bt && a.ct == b.ct;
}

static void entry_destroy(GemmEntry *e) {
    if (!e->used) return;
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(e->desc));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->la));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->lc));
    e->used = 0;
}

// One heuristic query for e's descriptors with the given operand alignments
// (bytes): true, with e->algo set, when it returns a usable algorithm.
static bool heuristic(GemmEntry *e, uint32_t al_a, uint32_t al_b, uint32_t al_c) {
    size_t ws_bytes = 0;
    (void)cuda_blaslt_workspace(&ws_bytes);
    uint64_t ws = ws_bytes;
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    // A' = B, B' = A (see entry_get)
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_b, sizeof al_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_a, sizeof al_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));

    // several candidates: the first one whose state is SUCCESS is used
    enum { WANT = 4 };
    cublasLtMatmulHeuristicResult_t res[WANT];
    memset(res, 0, sizeof res);
    int found = 0;
    // NOT_SUPPORTED (or no result) is not fatal here: the caller asks again
    // with smaller alignments, or without the bias epilogue.
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(cuda_blaslt(), e->desc, e->la, e->lb, e->lc,
                                                       e->lc, pref, WANT, res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (hs != CUBLAS_STATUS_SUCCESS && hs != CUBLAS_STATUS_NOT_SUPPORTED)
        cuda_fail("cublasLtMatmulAlgoGetHeuristic", cublasGetStatusString(hs), __FILE__, __LINE__);
    if (hs != CUBLAS_STATUS_SUCCESS) return false;
    for (int i = 0; i < found && i < WANT; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) { e->algo = res[i].algo; return true; }
    return false;
}

// Build descriptors and pick an algorithm for key (bias: the pointer the
// heuristic inspects for alignment when the epilogue is on). Returns the
// entry; entry->ok == 0 when cuBLASLt has no algorithm for it (remembered, so
// a failing epilogue lookup is not repeated on every call).
static GemmEntry *entry_get(const GemmKey &k, const void *bias) {
    for (int i = 0; i < GEMM_CACHE; i++)
        if (gemm_cache[i].used && key_eq(gemm_cache[i].key, k)) return &gemm_cache[i];

    GemmEntry *e = &gemm_cache[gemm_next];
    gemm_next = (gemm_next + 1) % GEMM_CACHE;
    entry_destroy(e);
    e->key = k;

    // Row-major C[M,N] = op(A) op(B) is column-major C^T[N,M] = op(B)^T op(A)^T:
    // cuBLASLt's first operand A' is our B, its second B' is our A.
    //  A' = B: row-major B stored [K,N] (tb = 0) is column-major [N,K] -> op N;
    //          stored [N,K] (tb = 1) is column-major [K,N] -> op T.
    //  B' = A: stored [M,K] (ta = 0) is column-major [K,M] -> op N;
    //          stored [K,M] (ta = 1) is column-major [M,K] -> op T.
    cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint64_t a_rows = k.tb ? (uint64_t)k.K : (uint64_t)k.N, a_cols = k.tb ? (uint64_t)k.N : (uint64_t)k.K;
    uint64_t b_rows = k.ta ? (uint64_t)k.M : (uint64_t)k.K, b_cols = k.ta ? (uint64_t)k.K : (uint64_t)k.M;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e->la, (cudaDataType_t)k.bt, a_rows, a_cols, k.ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e->lb, (cudaDataType_t)k.at, b_rows, b_cols, k.lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e->lc, (cudaDataType_t)k.ct, (uint64_t)k.N, (uint64_t)k.M, k.ldc));

    // fp32 accumulation and fp32 alpha/beta whatever the storage (bf16 x bf16
    // -> bf16 or -> fp32 are both supported with COMPUTE_32F); no TF32: the
    // operands that reach here are bf16 (or fp32 where precision is wanted)
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&e->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (k.bias_epi) {
        // bias[N] runs along the rows of the column-major D (= our columns)
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        cudaDataType_t bt = (cudaDataType_t)k.ct;   // the bias is stored as the output
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }

    e->used = 1;
    e->ok = 0;
    // The alignments we claim are those of the pointers. When the heuristic
    // has nothing for them (possible with views, whose rows may be only 2-byte
    // aligned, and with some epilogues), claim less and ask again:
    // a smaller claim is still true, so whatever algorithm it returns is valid
    // for these operands (perhaps a slower, less vectorised one).
    static const uint32_t caps[] = {256, 16, 8, 4, 2};
    for (uint32_t cap : caps) {
        const uint32_t al_a = k.al_a < cap ? k.al_a : cap, al_b = k.al_b < cap ? k.al_b : cap;
        const uint32_t al_c = k.al_c < cap ? k.al_c : cap;
        if (cap != caps[0] && al_a == k.al_a && al_b == k.al_b && al_c == k.al_c) continue;   // asked already
        if (heuristic(e, al_a, al_b, al_c)) { e->ok = 1; break; }
    }
    return e;
}

// Typed element access: C (and its bias) is fp32 or act (bf16).
static __device__ __forceinline__ float ld(const float *p, size_t i) { return p[i]; }
static __device__ __forceinline__ float ld(const act_t *p, size_t i) { return act_ld(p, i); }
static __device__ __forceinline__ void st(float *p, size_t i, float x) { p[i] = x; }
static __device__ __forceinline__ void st(act_t *p, size_t i, float x) { act_st(p, i, x); }

// C[i, j] = (beta == 0 ? 0 : beta * C[i, j]) + (bias ? bias[j] : 0) over C[M,N]
// (row stride ldc), computed in fp32 and stored once. The K == 0 product.
template <typename T>
static __global__ void fill_rows_kernel(T *C, const T *bias, float beta, int M, int N, int64_t ldc) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    for (int i = blockIdx.y; i < M; i += gridDim.y) {
        size_t at = (size_t)i * ldc + j;
        float v = beta == 0.0f ? 0.0f : beta * ld(C, at);
        st(C, at, v + (bias ? ld(bias, (size_t)j) : 0.0f));
    }
}

// C[i, j] = P[i, j] + bias[j] over [M,N], P fp32 (row stride ldp) and C
// (row stride ldc) fp32 or bf16, stored once: the bias step when cuBLASLt's
// fused epilogue is not available. P may be C itself when C is fp32.
template <typename T>
static __global__ void add_bias_kernel(T *C, int64_t ldc, const float *P, int64_t ldp, const T *bias,
                                       int M, int N) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    const float b = ld(bias, (size_t)j);
    for (int i = blockIdx.y; i < M; i += gridDim.y)
        st(C, (size_t)i * ldc + j, P[(size_t)i * ldp + j] + b);
}

static dim3 rows_grid(int M, int N) {
    return dim3(cdiv((size_t)N, 256), (unsigned)(M < 65535 ? M : 65535));
}

static void fill_rows(void *C, cudaDataType_t ct, const void *bias, float beta, int M, int N, int64_t ldc) {
    if (ct == CUDA_R_16BF)
        fill_rows_kernel<act_t><<<rows_grid(M, N), 256, 0, cuda_stream()>>>(
            (act_t *)C, (const act_t *)bias, beta, M, N, ldc);
    else
        fill_rows_kernel<float><<<rows_grid(M, N), 256, 0, cuda_stream()>>>(
            (float *)C, (const float *)bias, beta, M, N, ldc);
    LAUNCH_CHECK();
}

static void add_bias(void *C, cudaDataType_t ct, int64_t ldc, const float *P, int64_t ldp, const void *bias,
                     int M, int N) {
    if (ct == CUDA_R_16BF)
        add_bias_kernel<act_t><<<rows_grid(M, N), 256, 0, cuda_stream()>>>(
            (act_t *)C, ldc, P, ldp, (const act_t *)bias, M, N);
    else
        add_bias_kernel<float><<<rows_grid(M, N), 256, 0, cuda_stream()>>>(
            (float *)C, ldc, P, ldp, (const float *)bias, M, N);
    LAUNCH_CHECK();
}

static const char *type_name(cudaDataType_t t) {
    return t == CUDA_R_16BF ? "bf16" : t == CUDA_R_32F ? "fp32" : "?";
}

// The cached entry for k, or a fatal error naming the shape if cuBLASLt has
// no algorithm for it.
static GemmEntry *entry_need(const GemmKey &k, const void *bias) {
    GemmEntry *e = entry_get(k, bias);
    if (!e->ok) {
        char msg[400];
        snprintf(msg, sizeof msg, "no cuBLASLt algorithm for M=%d N=%d K=%d ta=%d tb=%d lda=%lld ldb=%lld "
                 "ldc=%lld A=%s B=%s C=%s%s, operand alignments A=%u B=%u C=%u bytes (also asked with every "
                 "smaller alignment down to 2)", k.M, k.N, k.K, k.ta, k.tb, (long long)k.lda, (long long)k.ldb,
                 (long long)k.ldc, type_name((cudaDataType_t)k.at), type_name((cudaDataType_t)k.bt),
                 type_name((cudaDataType_t)k.ct), k.bias_epi ? " +bias" : "", k.al_a, k.al_b, k.al_c);
        cuda_fail("cublasLtMatmulAlgoGetHeuristic", msg, __FILE__, __LINE__);
    }
    return e;
}

static void gemm_run(GemmEntry *e, const void *A, const void *B, void *C, float beta) {
    size_t ws_bytes = 0;
    void *ws = cuda_blaslt_workspace(&ws_bytes);
    const float alpha = 1.0f;
    // A' = B, B' = A (see entry_get); C and D are the same buffer
    CUBLAS_CHECK(cublasLtMatmul(cuda_blaslt(), e->desc, &alpha, B, e->la, A, e->lb, &beta,
                                C, e->lc, C, e->lc, &e->algo, ws, ws_bytes, cuda_stream()));
    LAUNCH_CHECK();
}

static bool gemm_type_ok(cudaDataType_t t) { return t == CUDA_R_16BF || t == CUDA_R_32F; }

// Row-major GEMM: C[M,N] = op(A)[M,K] @ op(B)[K,N] + beta * C (+ bias[N] added
// to every row when bias != NULL). ta: A is stored [K,M] (else [M,K]); tb: B
// is stored [N,K] (else [K,N]); lda/ldb/ldc are the row strides (elements) of
// the stored matrices; at/bt/ct their element types (CUDA_R_16BF = act, or
// CUDA_R_32F). The bias has C's type and needs beta == 0. Accumulation and
// the bias add are fp32; C is rounded once. beta == 0 never reads C (it may
// hold NaN).
void cuda_gemm_rm(bool ta, bool tb, int M, int N, int K,
                  const void *A, cudaDataType_t at, int64_t lda,
                  const void *B, cudaDataType_t bt, int64_t ldb,
                  void *C, cudaDataType_t ct, int64_t ldc, float beta, const void *bias) {
    if (M <= 0 || N <= 0) return;
    if (!gemm_type_ok(at) || !gemm_type_ok(bt) || !gemm_type_ok(ct))
        cuda_fail("cuda_gemm_rm", "operand type is neither bf16 nor fp32", __FILE__, __LINE__);
    if (bias && beta != 0.0f)
        cuda_fail("cuda_gemm_rm", "a bias needs beta == 0", __FILE__, __LINE__);
    if (K <= 0) { fill_rows(C, ct, bias, beta, M, N, ldc); return; }
    // The fused BIAS epilogue wants a 16-byte aligned bias vector: an
    // unaligned one (a view) is copied to aligned scratch first (N elements).
    if (bias && ptr_align(bias) < 16) {
        const size_t bytes = (size_t)N * (ct == CUDA_R_16BF ? sizeof(act_t) : sizeof(float));
        void *aligned = cuda_scratch(SCRATCH_REDUCE, bytes);
        CUDA_CHECK(cudaMemcpyAsync(aligned, bias, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
        bias = aligned;
    }
    bool epi = bias != NULL;
    GemmKey k;
    memset(&k, 0, sizeof k);   // padding too: keys are compared field by field anyway
    k.ta = ta; k.tb = tb; k.M = M; k.N = N; k.K = K;
    k.lda = lda; k.ldb = ldb; k.ldc = ldc;
    k.bias_epi = epi;
    k.al_a = ptr_align(A); k.al_b = ptr_align(B); k.al_c = ptr_align(C);
    k.al_bias = epi ? ptr_align(bias) : 0;
    k.at = (int)at; k.bt = (int)bt; k.ct = (int)ct;
    GemmEntry *e = entry_get(k, epi ? bias : NULL);
    if (e->ok && epi) {
        // the cached descriptor carries the previous call's bias pointer
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        gemm_run(e, A, B, C, beta);
        return;
    }
    if (!bias) { gemm_run(entry_need(k, NULL), A, B, C, beta); return; }

    // A bias without the fused epilogue (cuBLASLt has no algorithm with it):
    // the product in fp32 (C itself when C is fp32, else a scratch block),
    // then one kernel adds the bias and stores, so a bf16 C is still rounded
    // once, as the epilogue would.
    k.bias_epi = 0;
    k.al_bias = 0;
    float *P = (float *)C;
    int64_t ldp = ldc;
    if (ct != CUDA_R_32F) {
        P = (float *)cuda_scratch(SCRATCH_MISC, (size_t)M * N * sizeof(float));
        ldp = N;
        k.ct = (int)CUDA_R_32F;
        k.ldc = ldp;
        k.al_c = ptr_align(P);
    }
    gemm_run(entry_need(k, NULL), A, B, P, 0.0f);
    add_bias(C, ct, ldc, P, ldp, bias, M, N);
}

// ---------------------------------------------------------------------------
// out[N,OC] = inp[N,C] @ w[OC,C]^T (+ bias[OC]); all act
void cuda_matmul_fwd(void *out, const void *inp, const void *w, const void *bias,
                     int N, int C, int OC) {
    cuda_gemm_rm(false, true, N, OC, C, inp, CUDA_R_16BF, C, w, CUDA_R_16BF, C, out, CUDA_R_16BF, OC,
                 0.0f, bias);
}

// Column sums of dout[N,OC], deterministic. Stage 1: block (column tile of 32,
// row chunk of DB_ROWS) -> thread (tx, ty) sums rows ty, ty+8, ... of column
// tx in order; the 8 partials are added in ty order; the chunk's sum goes to
// part[chunk, col] (or straight into dbias when there is one chunk).
// Stage 2: dbias[col] += sum over chunks in chunk order. The chunking depends
// only on N, so the result is the same on every run.
enum { DB_ROWS = 1024 };

static __global__ void colsum_partial_kernel(float *part, float *dbias, const float *dout, int N, int OC) {
    __shared__ float acc[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int col = blockIdx.x * 32 + tx;
    int r0 = blockIdx.y * DB_ROWS, r1 = min(r0 + DB_ROWS, N);
    float s = 0.0f;
    if (col < OC)
        for (int r = r0 + ty; r < r1; r += 8) s += dout[(size_t)r * OC + col];
    acc[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && col < OC) {
        float t = 0.0f;
        for (int i = 0; i < 8; i++) t += acc[i][tx];
        if (gridDim.y == 1) dbias[col] += t;
        else part[(size_t)blockIdx.y * OC + col] = t;
    }
}

static __global__ void colsum_final_kernel(float *dbias, const float *part, int chunks, int OC) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= OC) return;
    float t = 0.0f;
    for (int c = 0; c < chunks; c++) t += part[(size_t)c * OC + col];
    dbias[col] += t;
}

// dinp[N,C] += dout[N,OC] @ w[OC,C];  dw[OC,C] += dout^T @ inp[N,C];
// dbias[OC] += colsum(dout). NULL outputs are skipped. dout, dinp, dw, dbias
// fp32; inp, w act. The GEMMs take dout rounded once to bf16 (the contract
// allows it: the products then match a bf16 framework's) and accumulate in
// fp32 into the fp32 gradients (beta = 1); dbias sums the fp32 dout.
void cuda_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                     const void *inp, const void *w, int N, int C, int OC) {
    if ((dinp || dw) && N > 0 && OC > 0) {
        // The bf16 copy of dout shares the log-prob head's scratch slot: the
        // two ops never overlap (each finishes queuing before the next asks
        // for the slot), and the head's chunk buffer (~128 MiB once the head
        // has run) usually holds a layer's dout already, so no extra memory.
        act_t *dout16 = (act_t *)cuda_scratch(SCRATCH_LOGITS, (size_t)N * OC * sizeof(act_t));
        cuda_act_from_f32(dout16, dout, (size_t)N * OC);
        if (dinp)   // [N,OC] @ [OC,C]
            cuda_gemm_rm(false, false, N, C, OC, dout16, CUDA_R_16BF, OC, w, CUDA_R_16BF, C,
                         dinp, CUDA_R_32F, C, 1.0f, NULL);
        if (dw)     // dout stored [N,OC] used transposed: [OC,N] @ [N,C]
            cuda_gemm_rm(true, false, OC, C, N, dout16, CUDA_R_16BF, OC, inp, CUDA_R_16BF, C,
                         dw, CUDA_R_32F, C, 1.0f, NULL);
    }
    if (dbias && N > 0 && OC > 0) {
        unsigned chunks = cdiv((size_t)N, DB_ROWS);
        if (chunks > 65535) cuda_fail("matmul_bwd", "too many rows for the bias reduction", __FILE__, __LINE__);
        float *part = chunks > 1 ? (float *)cuda_scratch(SCRATCH_REDUCE, (size_t)chunks * OC * sizeof(float)) : NULL;
        dim3 grid(cdiv((size_t)OC, 32), chunks), block(32, 8);
        colsum_partial_kernel<<<grid, block, 0, cuda_stream()>>>(part, dbias, dout, N, OC);
        LAUNCH_CHECK();
        if (chunks > 1) {
            colsum_final_kernel<<<cdiv((size_t)OC, 256), 256, 0, cuda_stream()>>>(dbias, part, (int)chunks, OC);
            LAUNCH_CHECK();
        }
    }
}
