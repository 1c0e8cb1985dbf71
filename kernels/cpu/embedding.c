// Token embedding lookup and its scatter-add backward.
#include <string.h>
#include <omp.h>
#include "cpu_ops.h"

// out[N,C] = wte[tokens[n], :], tokens[N], wte[V,C]
void cpu_embedding_fwd(void *out_, const int *tokens, const void *wte_, int N, int C) {
    float *out = out_;
    const float *wte = wte_;
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
}

// dwte[V,C] += scatter of dout[N,C] by tokens[N]
void cpu_embedding_bwd(float *dwte, const float *dout, const int *tokens, int N, int C, int V) {
    (void)V;   // the host has range-checked the tokens
    if (!dwte) return;   // not needed (backend.h: a NULL gradient output is skipped)
    // Repeated tokens add into the same row, so split the channels, not the
    // tokens: each thread owns a column slice (whole 16-float groups) and adds
    // every token in order. Race-free, and the same result for any thread count.
    #pragma omp parallel
    {
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        int groups = (C + 15) / 16;
        int c0 = groups * tid / nt * 16;
        int c1 = groups * (tid + 1) / nt * 16;
        if (c1 > C) c1 = C;
        for (int n = 0; n < N; n++) {
            float *dst = dwte + (size_t)tokens[n] * C;
            const float *src = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
