// Dense layer out = inp @ w^T + bias on cuBLASLt (fp32 storage; TF32 tensor
// cores by default, full fp32 with SPREC_CUDA_TF32=0). The weight keeps its
// PyTorch [OC, C] layout. Besides the two backend ops this file exports
// cuda_gemm_rm, the one GEMM entry point of the CUDA backend (logprob.cu uses
// it too), which caches cuBLASLt descriptors and the chosen algorithm per
// shape/alignment.
#include <cstring>
#include "cuda_common.cuh"
#include "cuda_ops.h"

// ---------------------------------------------------------------------------
// compute type: read SPREC_CUDA_TF32 once (any value but "0" keeps TF32)
static cublasComputeType_t compute_type(void) {
    static int tf32 = -1;
    if (tf32 < 0) {
        const char *e = getenv("SPREC_CUDA_TF32");
        tf32 = (e && strcmp(e, "0") == 0) ? 0 : 1;
    }
    return tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

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
    int compute;
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
           a.compute == b.compute;
}

static void entry_destroy(GemmEntry *e) {
    if (!e->used) return;
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(e->desc));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->la));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(e->lc));
    e->used = 0;
}

// Build descriptors and pick an algorithm for key (bias: the pointer the
// heuristic inspects for alignment when the epilogue is on). Returns the
// entry; entry->ok == 0 when cuBLASLt has no algorithm for it (remembered, so
// a failing epilogue lookup is not repeated on every call).
static GemmEntry *entry_get(const GemmKey &k, const float *bias) {
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
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e->la, CUDA_R_32F, a_rows, a_cols, k.ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e->lb, CUDA_R_32F, b_rows, b_cols, k.lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e->lc, CUDA_R_32F, (uint64_t)k.N, (uint64_t)k.M, k.ldc));

    CUBLAS_CHECK(cublasLtMatmulDescCreate(&e->desc, (cublasComputeType_t)k.compute, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (k.bias_epi) {
        // bias[N] runs along the rows of the column-major D (= our columns)
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        cudaDataType_t bt = CUDA_R_32F;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }

    size_t ws_bytes = 0;
    (void)cuda_blaslt_workspace(&ws_bytes);
    uint64_t ws = ws_bytes;
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    // A' = B, B' = A (see above)
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.al_b, sizeof k.al_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.al_a, sizeof k.al_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.al_c, sizeof k.al_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.al_c, sizeof k.al_c));

    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    // NOT_SUPPORTED (or no result) is not fatal here: the caller may retry
    // without the bias epilogue.
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(cuda_blaslt(), e->desc, e->la, e->lb, e->lc,
                                                       e->lc, pref, 1, &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (hs != CUBLAS_STATUS_SUCCESS && hs != CUBLAS_STATUS_NOT_SUPPORTED)
        cuda_fail("cublasLtMatmulAlgoGetHeuristic", cublasGetStatusString(hs), __FILE__, __LINE__);
    e->used = 1;
    e->ok = hs == CUBLAS_STATUS_SUCCESS && found >= 1 && res.state == CUBLAS_STATUS_SUCCESS;
    if (e->ok) e->algo = res.algo;
    return e;
}

// C[i, j] = (beta == 0 ? 0 : beta * C[i, j]) + (bias ? bias[j] : 0) over C[M,N]
// (row stride ldc). Used for K == 0 and for the unaligned-bias fallback
// (beta = 1: adds the bias after the product).
static __global__ void bias_rows_kernel(float *C, const float *bias, float beta, int M, int N, int64_t ldc) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int i = blockIdx.y;
    if (j >= N) return;
    for (; i < M; i += gridDim.y) {
        float *c = C + (size_t)i * ldc + j;
        float v = beta == 0.0f ? 0.0f : beta * *c;
        *c = v + (bias ? bias[j] : 0.0f);
    }
}

static void bias_rows(float *C, const float *bias, float beta, int M, int N, int64_t ldc) {
    dim3 grid(cdiv((size_t)N, 256), (unsigned)(M < 65535 ? M : 65535));
    bias_rows_kernel<<<grid, 256, 0, cuda_stream()>>>(C, bias, beta, M, N, ldc);
    LAUNCH_CHECK();
}

// Row-major GEMM: C[M,N] = op(A)[M,K] @ op(B)[K,N] + beta * C (+ bias[N] added
// to every row when bias != NULL). ta: A is stored [K,M] (else [M,K]); tb: B
// is stored [N,K] (else [K,N]); lda/ldb/ldc are the row strides (elements) of
// the stored matrices. beta == 0 never reads C (it may hold NaN).
void cuda_gemm_rm(bool ta, bool tb, int M, int N, int K, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float *C, int64_t ldc, float beta,
                  const float *bias) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { bias_rows(C, bias, beta, M, N, ldc); return; }
    // The fused BIAS epilogue wants a 16-byte aligned bias vector; otherwise
    // the bias is added by a small kernel after the product.
    bool epi = bias && ptr_align(bias) >= 16;
    GemmKey k;
    memset(&k, 0, sizeof k);   // padding too: keys are compared field by field anyway
    k.ta = ta; k.tb = tb; k.M = M; k.N = N; k.K = K;
    k.lda = lda; k.ldb = ldb; k.ldc = ldc;
    k.bias_epi = epi;
    k.al_a = ptr_align(A); k.al_b = ptr_align(B); k.al_c = ptr_align(C);
    k.al_bias = epi ? ptr_align(bias) : 0;
    k.compute = (int)compute_type();
    GemmEntry *e = entry_get(k, epi ? bias : NULL);
    if (!e->ok && epi) {   // no algorithm with the fused bias: plain product + bias kernel
        epi = false;
        k.bias_epi = 0;
        k.al_bias = 0;
        e = entry_get(k, NULL);
    }
    if (!e->ok) {
        char msg[160];
        snprintf(msg, sizeof msg, "no cuBLASLt algorithm for M=%d N=%d K=%d ta=%d tb=%d",
                 M, N, K, (int)ta, (int)tb);
        cuda_fail("cublasLtMatmulAlgoGetHeuristic", msg, __FILE__, __LINE__);
    }
    if (epi)   // the cached descriptor carries the previous call's bias pointer
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    size_t ws_bytes = 0;
    void *ws = cuda_blaslt_workspace(&ws_bytes);
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasLtMatmul(cuda_blaslt(), e->desc, &alpha, B, e->la, A, e->lb, &beta,
                                C, e->lc, C, e->lc, &e->algo, ws, ws_bytes, cuda_stream()));
    if (bias && !epi) bias_rows(C, bias, 1.0f, M, N, ldc);
}

// ---------------------------------------------------------------------------
// out[N,OC] = inp[N,C] @ w[OC,C]^T (+ bias[OC])
void cuda_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                     int N, int C, int OC) {
    cuda_gemm_rm(false, true, N, OC, C, inp, C, w, C, out, OC, 0.0f, bias);
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
// dbias[OC] += colsum(dout). NULL outputs are skipped.
void cuda_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)   // [N,OC] @ [OC,C]
        cuda_gemm_rm(false, false, N, C, OC, dout, OC, w, C, dinp, C, 1.0f, NULL);
    if (dw)     // dout stored [N,OC] used transposed: [OC,N] @ [N,C]
        cuda_gemm_rm(true, false, OC, C, N, dout, OC, inp, C, dw, C, 1.0f, NULL);
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
