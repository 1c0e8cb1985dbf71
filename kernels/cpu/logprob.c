// Language-model head restricted to the rows that carry a loss: log-probs of
// the targets, computed a chunk of rows at a time so the [n, V] logits never
// exist at once. Every entry point runs the same chunk loop (head_chunks):
// gather the chunk's hidden rows into a contiguous block, one (threaded)
// sgemm for its logits, then the log-probs, the gradient, or both.
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

// What one pass of head_chunks does. With logprob set it computes the
// log-probs (and lse) of the rows; with dh or dw set, the gradient of
// -sum_i weight[i] * logprob[i], from the lse it just computed or, without
// logprob, from lse as given. split_bf16: the logit gradient as the CUDA head
// carries it into its products, two bf16 parts hi = bf16(g) and lo = bf16(g -
// hi) (the bf16 emulation's head; hi + lo is exact in fp32, so one product of
// the sum stands for the two).
typedef struct {
    float *logprob, *lse;        // [n] out (logprob NULL: lse is an input)
    float *dh, *dw;              // added into; NULL = not wanted
    const float *h, *w;          // h[*,C], w[V,C]
    const int *rows, *targets;   // [n]
    const float *weight;         // [n], with dh or dw
    int n, C, V, split_bf16;
} Head;

// The chunk's logits g[m,V] become its gradient, in place:
// weight * (softmax - onehot(target)); rows of weight 0 become 0.
static void logit_grad(float *g, const Head *p, const int *idx, int i0, int m) {
    #pragma omp parallel for
    for (int i = 0; i < m; i++) {
        const int r = idx ? idx[i0 + i] : i0 + i;
        float *x = g + (size_t)i * p->V, wi = p->weight[r], l = p->lse[r];
        if (wi == 0.0f) { memset(x, 0, (size_t)p->V * sizeof(float)); continue; }
        #pragma omp simd
        for (int j = 0; j < p->V; j++) x[j] = wi * cpu_expf(x[j] - l);
        x[p->targets[r]] -= wi;
        if (p->split_bf16)
            for (int j = 0; j < p->V; j++) {
                const float hi = f32_from_bf16(bf16_from_f32(x[j]));
                x[j] = hi + f32_from_bf16(bf16_from_f32(x[j] - hi));
            }
    }
}

// The rows idx[0..m_total) of p (idx NULL: all n), a chunk at a time: three
// GEMMs per chunk when both log-probs and gradients are wanted (logits,
// dh, dw), as in the backward alone.
static void head_chunks(const Head *p, const int *idx, int m_total) {
    const int C = p->C, V = p->V, grad = p->dh || p->dw;
    const int R = chunk_rows(m_total, V);
    float *hc = xmalloc((size_t)R * C * sizeof(float));
    float *g = xmalloc((size_t)R * V * sizeof(float));
    float *dhc = p->dh ? xmalloc((size_t)R * C * sizeof(float)) : NULL;
    for (int i0 = 0; i0 < m_total; i0 += R) {
        const int m = m_total - i0 < R ? m_total - i0 : R;
        gather(hc, p->h, idx ? p->rows : p->rows + i0, idx ? idx + i0 : NULL, m, C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, V, C,
                    1.0f, hc, C, p->w, C, 0.0f, g, V);
        if (p->logprob) {
            #pragma omp parallel for
            for (int i = 0; i < m; i++) {
                const int r = idx ? idx[i0 + i] : i0 + i;
                const float *x = g + (size_t)i * V;
                const float l = logsumexp(x, V);
                p->lse[r] = l;
                p->logprob[r] = x[p->targets[r]] - l;
            }
        }
        if (!grad) continue;
        logit_grad(g, p, idx, i0, m);
        if (p->dh) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, C, V,
                        1.0f, g, V, p->w, C, 0.0f, dhc, C);
            // rows are distinct, so the scatter has no collisions
            #pragma omp parallel for
            for (int i = 0; i < m; i++) {
                const int r = idx ? idx[i0 + i] : i0 + i;
                if (p->weight[r] == 0.0f) continue;
                float *dst = p->dh + (size_t)p->rows[r] * C;
                const float *src = dhc + (size_t)i * C;
                for (int c = 0; c < C; c++) dst[c] += src[c];
            }
        }
        if (p->dw)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, m,
                        1.0f, g, V, hc, C, 1.0f, p->dw, C);
    }
    free(hc);
    free(g);
    free(dhc);
}

// logprob[n], lse[n]; h[*,C], w[V,C]; rows[n], targets[n]
void cpu_logprob_fwd(float *logprob, float *lse, const void *h, const void *w,
                     const int *rows, const int *targets, int n, int C, int V) {
    const Head p = {.logprob = logprob, .lse = lse, .h = h, .w = w, .rows = rows, .targets = targets,
                    .n = n, .C = C, .V = V};
    head_chunks(&p, NULL, n);
}

// The backward alone: the chunks recompute their logits (four GEMMs per chunk)
// and only the rows of nonzero weight enter them.
static void logprob_bwd(float *dh, float *dw, const float *h, const float *w, const int *rows,
                        const int *targets, const float *lse, const float *weight, int n, int C, int V,
                        int split_bf16) {
    if (!dh && !dw) return;
    int *live = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    int nl = 0;
    for (int i = 0; i < n; i++)
        if (weight[i] != 0.0f) live[nl++] = i;
    const Head p = {.lse = (float *)lse, .dh = dh, .dw = dw, .h = h, .w = w, .rows = rows, .targets = targets,
                    .weight = weight, .n = n, .C = C, .V = V, .split_bf16 = split_bf16};
    head_chunks(&p, live, nl);
    free(live);
}

void cpu_logprob_bwd(float *dh, float *dw, const void *h, const void *w, const int *rows, const int *targets,
                     const float *lse, const float *weight, int n, int C, int V) {
    logprob_bwd(dh, dw, h, w, rows, targets, lse, weight, n, C, V, 0);
}

void cpu_logprob_bwd_bf16_split(float *dh, float *dw, const float *h, const float *w, const int *rows,
                                const int *targets, const float *lse, const float *weight, int n, int C, int V) {
    logprob_bwd(dh, dw, h, w, rows, targets, lse, weight, n, C, V, 1);
}

// Forward and backward in one pass (the weights are known before the forward:
// SFT): each chunk's logits are computed once, their log-probs taken, then
// turned into the gradient in place: three GEMMs per chunk instead of four.
static void logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const float *h, const float *w,
                            const int *rows, const int *targets, const float *weight, int n, int C, int V,
                            int split_bf16) {
    const Head p = {.logprob = logprob, .lse = lse, .dh = dh, .dw = dw, .h = h, .w = w, .rows = rows,
                    .targets = targets, .weight = weight, .n = n, .C = C, .V = V, .split_bf16 = split_bf16};
    head_chunks(&p, NULL, n);
}

void cpu_logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const void *h, const void *w,
                         const int *rows, const int *targets, const float *weight, int n, int C, int V) {
    logprob_fwd_bwd(logprob, lse, dh, dw, h, w, rows, targets, weight, n, C, V, 0);
}

void cpu_logprob_fwd_bwd_bf16_split(float *logprob, float *lse, float *dh, float *dw, const float *h,
                                    const float *w, const int *rows, const int *targets, const float *weight,
                                    int n, int C, int V) {
    logprob_fwd_bwd(logprob, lse, dh, dw, h, w, rows, targets, weight, n, C, V, 1);
}
