// Language-model head restricted to the rows that carry a loss: log-probs of
// the targets, computed a chunk of rows at a time so the [n, V] logits never
// exist at once. Both directions gather the chunk's hidden rows into a
// contiguous block and run (threaded) sgemm on it.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "../errors.h"
#include "cpu_ops.h"
#include "../backend.h"   // bf16_from_f32, f32_from_bf16

int cpu_logprob_chunk_rows = 0;

// Rows per chunk for n rows of V logits (at least 1): about 4M logits, but no
// fewer than 256 rows, below which sgemm on [rows, C] x [C, V] loses a third
// of its speed (every chunk re-packs all of w).
static int chunk_rows(int n, int V) {
    int r = cpu_logprob_chunk_rows > 0 ? cpu_logprob_chunk_rows : (4 << 20) / V;
    if (cpu_logprob_chunk_rows <= 0 && r < 256) r = 256;
    if (r > n) r = n;
    return r > 0 ? r : 1;
}

// hc[m,C] = h[rows[idx[i]]] for i < m (idx NULL: identity); h[*,C]
static void gather(float *hc, const float *h, const int *rows, const int *idx, int m, int C) {
    #pragma omp parallel for
    for (int i = 0; i < m; i++)
        memcpy(hc + (size_t)i * C, h + (size_t)rows[idx ? idx[i] : i] * C,
               (size_t)C * sizeof(float));
}

// logsumexp of x[V], with the max subtracted so exp cannot overflow
static float logsumexp(const float *x, int V) {
    float mx = x[0];
    #pragma omp simd reduction(max:mx)
    for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    // vectorized float sums over short blocks, the blocks added in double:
    // accurate for V ~ 10^5 without giving up SIMD
    double sum = 0.0;
    for (int j0 = 0; j0 < V; j0 += 256) {
        int j1 = V - j0 < 256 ? V : j0 + 256;
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (int j = j0; j < j1; j++) s += cpu_expf(x[j] - mx);
        sum += s;
    }
    return mx + (float)log(sum);
}

// logprob[n], lse[n]; h[*,C], w[V,C]; rows[n], targets[n]
void cpu_logprob_fwd(float *logprob, float *lse, const void *h_, const void *w_,
                     const int *rows, const int *targets, int n, int C, int V) {
    const float *h = h_, *w = w_;
    int R = chunk_rows(n, V);
    float *hc = xmalloc((size_t)R * C * sizeof(float));
    float *logits = xmalloc((size_t)R * V * sizeof(float));
    for (int i0 = 0; i0 < n; i0 += R) {
        int m = n - i0 < R ? n - i0 : R;
        gather(hc, h, rows + i0, NULL, m, C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, V, C,
                    1.0f, hc, C, w, C, 0.0f, logits, V);
        #pragma omp parallel for
        for (int i = 0; i < m; i++) {
            const float *x = logits + (size_t)i * V;
            float l = logsumexp(x, V);
            lse[i0 + i] = l;
            logprob[i0 + i] = x[targets[i0 + i]] - l;
        }
    }
    free(hc);
    free(logits);
}

// Loss -sum_i weight[i] * logprob[i]:  dlogits = weight * (softmax - onehot(target)).
// dh[rows[i],:] += dlogits @ w;  dw[V,C] += dlogits^T @ h[rows]  (dh or dw may be NULL).
// h[*,C], w[V,C]; rows[n] (distinct), targets[n], lse[n] from the forward, weight[n].
// split_bf16: dlogits as the CUDA head carries it into its products, two
// bf16 parts hi = bf16(g) and lo = bf16(g - hi) (the bf16 emulation's head;
// hi + lo is exact in fp32, so one product of the sum stands for the two).
static void logprob_bwd(float *dh, float *dw, const float *h, const float *w, const int *rows,
                        const int *targets, const float *lse, const float *weight, int n, int C, int V,
                        int split_bf16) {
    // rows of weight 0 have no gradient: drop them before any product
    int *live = xmalloc((size_t)n * sizeof(int));
    int nl = 0;
    for (int i = 0; i < n; i++)
        if (weight[i] != 0.0f) live[nl++] = i;
    int R = chunk_rows(nl, V);
    float *hc = xmalloc((size_t)R * C * sizeof(float));
    float *g = xmalloc((size_t)R * V * sizeof(float));
    float *dhc = dh ? xmalloc((size_t)R * C * sizeof(float)) : NULL;
    for (int i0 = 0; (dh || dw) && i0 < nl; i0 += R) {
        int m = nl - i0 < R ? nl - i0 : R;
        const int *idx = live + i0;
        gather(hc, h, rows, idx, m, C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, V, C,
                    1.0f, hc, C, w, C, 0.0f, g, V);
        #pragma omp parallel for
        for (int i = 0; i < m; i++) {
            float *x = g + (size_t)i * V, wi = weight[idx[i]], l = lse[idx[i]];
            #pragma omp simd
            for (int j = 0; j < V; j++) x[j] = wi * cpu_expf(x[j] - l);
            x[targets[idx[i]]] -= wi;
            if (split_bf16)
                for (int j = 0; j < V; j++) {
                    const float hi = f32_from_bf16(bf16_from_f32(x[j]));
                    x[j] = hi + f32_from_bf16(bf16_from_f32(x[j] - hi));
                }
        }
        if (dh) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, C, V,
                        1.0f, g, V, w, C, 0.0f, dhc, C);
            // rows are distinct, so the scatter has no collisions
            #pragma omp parallel for
            for (int i = 0; i < m; i++) {
                float *dst = dh + (size_t)rows[idx[i]] * C;
                const float *src = dhc + (size_t)i * C;
                for (int c = 0; c < C; c++) dst[c] += src[c];
            }
        }
        if (dw)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, m,
                        1.0f, g, V, hc, C, 1.0f, dw, C);
    }
    free(live);
    free(hc);
    free(g);
    free(dhc);
}

void cpu_logprob_bwd(float *dh, float *dw, const void *h, const void *w, const int *rows, const int *targets,
                     const float *lse, const float *weight, int n, int C, int V) {
    logprob_bwd(dh, dw, h, w, rows, targets, lse, weight, n, C, V, 0);
}

void cpu_logprob_bwd_bf16_split(float *dh, float *dw, const float *h, const float *w, const int *rows,
                                const int *targets, const float *lse, const float *weight, int n, int C, int V) {
    logprob_bwd(dh, dw, h, w, rows, targets, lse, weight, n, C, V, 1);
}
