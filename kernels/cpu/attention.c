// Causal grouped-query attention over right-padded sequences, one (batch, q head)
// slice per task, every product an sgemm. q/k/v/out stay in their interleaved
// [B,T,H,D] layout: a head's rows are read in place with leading dimension H*D.
// The causal products are done in blocks of cpu_attention_block rows (or key
// columns), skipping the blocks above the diagonal: half the flops of a full
// L x L product. The backward recomputes P from q, k and the stored lse.
// The bidirectional forward (the sentence encoder's, no backward) is at the end.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <cblas.h>
#include "../errors.h"
#include "cpu_ops.h"

int cpu_attention_block = 64;

static int min_int(int a, int b) { return a < b ? a : b; }

// longest sequence of the batch: sizes the per-thread [L,L] scratch
static size_t max_len(const int *lengths, int B) {
    int m = 0;
    for (int b = 0; b < B; b++) m = lengths[b] > m ? lengths[b] : m;
    return (size_t)m;
}

// s[t, 0..r1) = alpha * x[t] . y[0..r1) for each row block [r0, r1), t < L:
// every entry on or below the diagonal of s[L,L] (and some just above it).
// x[L,D] (row stride ldx), y[L,D] (row stride ldy)
static void causal_scores(float *s, const float *x, int ldx, const float *y, int ldy,
                          float alpha, int L, int D) {
    for (int r0 = 0; r0 < L; r0 += cpu_attention_block) {
        int r1 = min_int(r0 + cpu_attention_block, L);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, D, alpha,
                    x + (size_t)r0 * ldx, ldx, y, ldy, 0.0f, s + (size_t)r0 * L, L);
    }
}

// c = alpha * p @ y + beta * c with p[L,L] lower triangular (zero above the
// diagonal); y[L,D] (row stride ldy), c[L,D] (row stride ldc).
static void causal_rows_gemm(float *c, int ldc, const float *p, const float *y, int ldy,
                             float alpha, float beta, int L, int D) {
    for (int r0 = 0; r0 < L; r0 += cpu_attention_block) {
        int r1 = min_int(r0 + cpu_attention_block, L);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, D, r1, alpha,
                    p + (size_t)r0 * L, L, y, ldy, beta, c + (size_t)r0 * ldc, ldc);
    }
}

// c = alpha * p^T @ y + beta * c with p[L,L] lower triangular: key block
// [j0, j1) only meets query rows t >= j0. y[L,D] (stride ldy), c[L,D] (stride ldc).
static void causal_cols_gemm(float *c, int ldc, const float *p, const float *y, int ldy,
                             float alpha, float beta, int L, int D) {
    for (int j0 = 0; j0 < L; j0 += cpu_attention_block) {
        int j1 = min_int(j0 + cpu_attention_block, L);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j1 - j0, D, L - j0, alpha,
                    p + (size_t)j0 * L + j0, L, y + (size_t)j0 * ldy, ldy,
                    beta, c + (size_t)j0 * ldc, ldc);
    }
}

// out[B,T,NH,D], lse[B,NH,T]; q[B,T,NH,D], k,v[B,T,NKV,D]; lengths[B]
void cpu_attention_fwd(void *out_, float *lse, const void *q_, const void *k_, const void *v_,
                       const int *lengths, int B, int T, int NH, int NKV, int D) {
    float *out = out_;
    const float *q = q_, *k = k_, *v = v_;
    int group = NH / NKV, ldq = NH * D, ldk = NKV * D;
    float scale = 1.0f / sqrtf((float)D);
    // one [L,L] score/probability matrix per thread
    size_t Lmax = max_len(lengths, B), LL = Lmax * Lmax;
    float *scratch = xmalloc((size_t)omp_get_max_threads() * LL * sizeof(float));
    #pragma omp parallel
    {
        float *p = scratch + (size_t)omp_get_thread_num() * LL;
        // dynamic: sequence lengths differ, so the tasks do
        #pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                int L = lengths[b];
                const float *qh = q + (size_t)b * T * ldq + h * D;
                const float *kh = k + (size_t)b * T * ldk + (h / group) * D;
                const float *vh = v + (size_t)b * T * ldk + (h / group) * D;
                float *oh = out + (size_t)b * T * ldq + h * D;
                float *lh = lse + ((size_t)b * NH + h) * T;
                causal_scores(p, qh, ldq, kh, ldk, scale, L, D);
                for (int t = 0; t < L; t++) {
                    float *row = p + (size_t)t * L;
                    float mx = row[0], sum = 0.0f;
                    #pragma omp simd reduction(max:mx)
                    for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
                    #pragma omp simd reduction(+:sum)
                    for (int j = 0; j <= t; j++) { row[j] = cpu_expf(row[j] - mx); sum += row[j]; }
                    float inv = 1.0f / sum;
                    for (int j = 0; j <= t; j++) row[j] *= inv;
                    memset(row + t + 1, 0, (size_t)(L - t - 1) * sizeof(float));
                    lh[t] = mx + logf(sum);
                }
                causal_rows_gemm(oh, ldq, p, vh, ldk, 1.0f, 0.0f, L, D);
                for (int t = L; t < T; t++) {
                    memset(oh + (size_t)t * ldq, 0, (size_t)D * sizeof(float));
                    lh[t] = 0.0f;
                }
            }
    }
    free(scratch);
}

// d[b,t,g,:] += sum over the q heads h of kv head g (in head order) of
// part[b,h,t,:], for the valid rows t < lengths[b]. d[B,T,NKV,D], part[B,NH,T,D]
static void add_head_partials(float *d, const float *part, const int *lengths,
                              int B, int T, int NH, int NKV, int D) {
    int group = NH / NKV;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            if (t >= lengths[b]) continue;
            for (int g = 0; g < NKV; g++) {
                float *dst = d + ((size_t)b * T + t) * NKV * D + (size_t)g * D;
                for (int i = 0; i < D; i++) {
                    float acc = 0.0f;
                    for (int j = 0; j < group; j++)
                        acc += part[(((size_t)b * NH + g * group + j) * T + t) * D + i];
                    dst[i] += acc;
                }
            }
        }
}

// dq[B,T,NH,D], dk,dv[B,T,NKV,D] += gradients (each may be NULL);
// dout,out[B,T,NH,D], lse[B,NH,T], q[B,T,NH,D], k,v[B,T,NKV,D], lengths[B].
// With P = softmax(S), S = scale Q K^T:  dV = P^T dO;  dP = dO V^T;
// dS = P * (dP - rowsum(dO * O));  dQ = scale dS K;  dK = scale dS^T Q.
void cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const void *out_,
                       const float *lse, const void *q_, const void *k_, const void *v_,
                       const int *lengths, int B, int T, int NH, int NKV, int D) {
    const float *out = out_, *q = q_, *k = k_, *v = v_;
    int group = NH / NKV, ldq = NH * D, ldk = NKV * D;
    float scale = 1.0f / sqrtf((float)D);
    // With GQA several q heads feed one kv head. Rather than racing on dk/dv,
    // each q head writes its own [T,D] partial, summed in head order below.
    float *dkp = NULL, *dvp = NULL;
    if (group > 1) {
        size_t part = (size_t)B * NH * T * D;
        if (dk) dkp = xmalloc(part * sizeof(float));
        if (dv) dvp = xmalloc(part * sizeof(float));
    }
    // per thread: P and dP/dS, [L,L] each
    size_t Lmax = max_len(lengths, B), LL = Lmax * Lmax;
    float *scratch = xmalloc((size_t)omp_get_max_threads() * 2 * LL * sizeof(float));
    #pragma omp parallel
    {
        float *p = scratch + (size_t)omp_get_thread_num() * 2 * LL, *ds = p + LL;
        #pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                int L = lengths[b];
                size_t qoff = (size_t)b * T * ldq + h * D;
                size_t koff = (size_t)b * T * ldk + (h / group) * D;
                const float *qh = q + qoff, *oh = out + qoff, *doh = dout + qoff;
                const float *kh = k + koff, *vh = v + koff;
                const float *lh = lse + ((size_t)b * NH + h) * T;
                // where this head's dk/dv go: straight into the gradient (MHA),
                // or overwrite its partial (GQA)
                size_t poff = ((size_t)b * NH + h) * T * D;
                float *dkh = dkp ? dkp + poff : dk ? dk + koff : NULL;
                float *dvh = dvp ? dvp + poff : dv ? dv + koff : NULL;
                int ldkv = group > 1 ? D : ldk;
                float beta = group > 1 ? 0.0f : 1.0f;

                causal_scores(p, qh, ldq, kh, ldk, scale, L, D);
                for (int t = 0; t < L; t++) {
                    float *row = p + (size_t)t * L;
                    float l = lh[t];
                    #pragma omp simd
                    for (int j = 0; j <= t; j++) row[j] = cpu_expf(row[j] - l);
                    memset(row + t + 1, 0, (size_t)(L - t - 1) * sizeof(float));
                }
                if (dvh) causal_cols_gemm(dvh, ldkv, p, doh, ldq, 1.0f, beta, L, D);
                if (!dq && !dkh) continue;
                causal_scores(ds, doh, ldq, vh, ldk, 1.0f, L, D);
                for (int t = 0; t < L; t++) {
                    const float *pr = p + (size_t)t * L;
                    const float *dor = doh + (size_t)t * ldq, *orow = oh + (size_t)t * ldq;
                    float *row = ds + (size_t)t * L;
                    float delta = 0.0f;
                    for (int d = 0; d < D; d++) delta += dor[d] * orow[d];
                    for (int j = 0; j <= t; j++) row[j] = pr[j] * (row[j] - delta);
                    // above the diagonal dP was not (fully) computed: dS is 0 there
                    memset(row + t + 1, 0, (size_t)(L - t - 1) * sizeof(float));
                }
                if (dq) causal_rows_gemm(dq + qoff, ldq, ds, kh, ldk, scale, 1.0f, L, D);
                if (dkh) causal_cols_gemm(dkh, ldkv, ds, qh, ldq, scale, beta, L, D);
            }
    }
    free(scratch);
    if (dkp) add_head_partials(dk, dkp, lengths, B, T, NH, NKV, D);
    if (dvp) add_head_partials(dv, dvp, lengths, B, T, NH, NKV, D);
    free(dkp);
    free(dvp);
}

// Bidirectional multi-head attention (BERT): query t of sequence b attends to
// every key j < lengths[b] (padding keys masked out, none in the future), scale
// 1/sqrt(D); rows t >= lengths[b] get out = 0. q, k, v, out [B,T,NH,D]; one
// (batch, head) slice per task, two sgemms around a row softmax.
void cpu_attention_bidir_fwd(void *out_, const void *q_, const void *k_, const void *v_,
                             const int *lengths, int B, int T, int NH, int D) {
    float *out = out_;
    const float *q = q_, *k = k_, *v = v_;
    const int ld = NH * D;
    const float scale = 1.0f / sqrtf((float)D);
    size_t Lmax = max_len(lengths, B), LL = Lmax * Lmax;
    float *scratch = xmalloc((size_t)omp_get_max_threads() * (LL ? LL : 1) * sizeof(float));
    #pragma omp parallel
    {
        float *p = scratch + (size_t)omp_get_thread_num() * LL;
        #pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int L = lengths[b];
                const size_t base = (size_t)b * T * ld + (size_t)h * D;
                if (L > 0) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, scale, q + base, ld,
                                k + base, ld, 0.0f, p, L);
                    for (int t = 0; t < L; t++) {
                        float *row = p + (size_t)t * L;
                        float mx = row[0], sum = 0.0f;
                        for (int j = 1; j < L; j++) mx = row[j] > mx ? row[j] : mx;
                        #pragma omp simd reduction(+:sum)
                        for (int j = 0; j < L; j++) { row[j] = cpu_expf(row[j] - mx); sum += row[j]; }
                        const float inv = 1.0f / sum;
                        for (int j = 0; j < L; j++) row[j] *= inv;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, 1.0f, p, L, v + base, ld,
                                0.0f, out + base, ld);
                }
                for (int t = L > 0 ? L : 0; t < T; t++) memset(out + base + (size_t)t * ld, 0, (size_t)D * sizeof(float));
            }
    }
    free(scratch);
}
