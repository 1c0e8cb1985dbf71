// KV-cache decoding ops (forward only): rotary embedding at explicit
// positions, writing new K/V rows into the cache, attention of a block of new
// queries against the cache, beam reorder of cache rows, and a row gather (the
// last position of each sequence before the LM head). The CPU cache is fp32.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "../backend.h"
#include "../errors.h"
#include "cpu_ops.h"

// x[N,H,D] in place; row n rotated by the angle of position pos[n];
// cos_tab, sin_tab [P, D/2]. Same arithmetic as rope.c's forward rotation.
void cpu_rope_at_fwd(void *x_, const float *cos_tab, const float *sin_tab, const int *pos,
                     int N, int H, int D) {
    float *x = x_;
    int half = D / 2;
    #pragma omp parallel for if ((size_t)N * H * D >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *c = cos_tab + (size_t)pos[n] * half, *s = sin_tab + (size_t)pos[n] * half;
        float *row = x + (size_t)n * H * D;
        for (int h = 0; h < H; h++) {
            float *x1 = row + (size_t)h * D, *x2 = x1 + half;
            for (int i = 0; i < half; i++) {
                float a = x1[i], b = x2[i];
                x1[i] = a * c[i] - b * s[i];
                x2[i] = b * c[i] + a * s[i];
            }
        }
    }
}

// cache[R,P,W]: row (b, start[b]+s) <- x[b,s,:] for s < n_new[b];  x[R,S,W]
void cpu_kv_write(void *cache, const void *x_, const int *start, const int *n_new,
                  int R, int S, int P, int W) {
    float *c = cache;
    const float *x = x_;
    for (int b = 0; b < R; b++)
        if (n_new[b] > 0)
            memcpy(c + ((size_t)b * P + start[b]) * W, x + (size_t)b * S * W,
                   (size_t)n_new[b] * W * sizeof(float));
}

// out[R,S,NH,D]; q[R,S,NH,D]; kc, vc [R,P,NKV,D]. One (row, new position,
// head) per task: a decode step has few queries, each against a long cache,
// so a dot product per key beats an sgemm call here.
void cpu_attention_cached_fwd(void *out_, const void *q_, const void *kc, const void *vc,
                              const int *start, const int *n_new, int R, int S, int P,
                              int NH, int NKV, int D) {
    float *out = out_;
    const float *q = q_, *k = kc, *v = vc;
    const int group = NH / NKV, W = NKV * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *scratch = xmalloc((size_t)omp_get_max_threads() * P * sizeof(float));
    #pragma omp parallel
    {
        float *p = scratch + (size_t)omp_get_thread_num() * P;
        #pragma omp for collapse(3) schedule(dynamic)
        for (int b = 0; b < R; b++)
            for (int s = 0; s < S; s++)
                for (int h = 0; h < NH; h++) {
                    float *o = out + (((size_t)b * S + s) * NH + h) * D;
                    if (s >= n_new[b]) { memset(o, 0, (size_t)D * sizeof(float)); continue; }
                    const int L = start[b] + s + 1;   // keys visible to this query
                    const float *qh = q + (((size_t)b * S + s) * NH + h) * D;
                    const float *kh = k + (size_t)b * P * W + (size_t)(h / group) * D;
                    const float *vh = v + (size_t)b * P * W + (size_t)(h / group) * D;
                    float mx = -INFINITY;
                    for (int j = 0; j < L; j++) {
                        const float *kj = kh + (size_t)j * W;
                        float dot = 0.0f;
                        #pragma omp simd reduction(+:dot)
                        for (int i = 0; i < D; i++) dot += qh[i] * kj[i];
                        p[j] = dot * scale;
                        mx = p[j] > mx ? p[j] : mx;
                    }
                    float sum = 0.0f;
                    #pragma omp simd reduction(+:sum)
                    for (int j = 0; j < L; j++) { p[j] = cpu_expf(p[j] - mx); sum += p[j]; }
                    const float inv = 1.0f / sum;
                    memset(o, 0, (size_t)D * sizeof(float));
                    for (int j = 0; j < L; j++) {
                        const float *vj = vh + (size_t)j * W, pj = p[j] * inv;
                        #pragma omp simd
                        for (int i = 0; i < D; i++) o[i] += pj * vj[i];
                    }
                }
    }
    free(scratch);
}

// cache[i, 0..len) = old cache[src[i], 0..len) for i < R. The gather reads
// the state before the call, so the source rows of moved rows are saved
// first; rows that keep their own content (src[i] == i, most beams most
// steps) cost nothing.
void cpu_kv_gather(void *cache, const int *src, int R, int len, int P, int W) {
    float *c = cache;
    const size_t row = (size_t)P * W, used = (size_t)len * W;
    int hi = -1;   // highest source row of a moved row
    for (int i = 0; i < R; i++) if (src[i] != i && src[i] > hi) hi = src[i];
    if (hi < 0) return;
    unsigned char *need = xcalloc((size_t)hi + 1, 1);
    for (int i = 0; i < R; i++) if (src[i] != i) need[src[i]] = 1;
    float *old = xmalloc((size_t)(hi + 1) * used * sizeof(float));
    #pragma omp parallel for schedule(dynamic)
    for (int r = 0; r <= hi; r++)
        if (need[r]) memcpy(old + r * used, c + r * row, used * sizeof(float));
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < R; i++)
        if (src[i] != i) memcpy(c + i * row, old + (size_t)src[i] * used, used * sizeof(float));
    free(old);
    free(need);
}

// out[N,C] = inp[rows[n], :]
void cpu_gather_rows(void *out_, const void *inp_, const int *rows, int N, int C) {
    float *out = out_;
    const float *inp = inp_;
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, inp + (size_t)rows[n] * C, (size_t)C * sizeof(float));
}
