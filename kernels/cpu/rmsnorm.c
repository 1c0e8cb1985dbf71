// RMSNorm as in Llama: out = weight * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps).
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "../../host/check.h"
#include "cpu_ops.h"

// out[N,C], rstd[N], inp[N,C], weight[C]
void cpu_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight,
                     float eps, int N, int C) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0.0;   // double: the mean of squares must not lose the small terms
        #pragma omp simd reduction(+:ss)
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int c = 0; c < C; c++) y[c] = weight[c] * (x[c] * r);
        rstd[n] = r;
    }
}

// dinp[N,C] += dL/dx;  dweight[C] += sum_n dout * x * rstd   (either may be NULL)
// dout[N,C], inp[N,C], weight[C], rstd[N] from the forward.
// With y = w x r:  dx_j = r w_j g_j - x_j r^3/C * sum_i g_i w_i x_i.
void cpu_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, const float *rstd, int N, int C) {
    // dweight sums over rows: one partial per thread over a static row split,
    // added in thread order afterwards, so runs are bit-identical.
    int nt = omp_get_max_threads();
    float *part = dweight ? xcalloc((size_t)nt * C, sizeof(float)) : NULL;
    #pragma omp parallel
    {
        float *pw = part ? part + (size_t)omp_get_thread_num() * C : NULL;
        #pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float r = rstd[n];
            if (dinp) {
                float *dx = dinp + (size_t)n * C;
                double dot = 0.0;
                #pragma omp simd reduction(+:dot)
                for (int c = 0; c < C; c++) dot += (double)g[c] * weight[c] * x[c];
                float k = (float)(dot * r * r * r / C);
                for (int c = 0; c < C; c++) dx[c] += r * weight[c] * g[c] - k * x[c];
            }
            if (pw)
                for (int c = 0; c < C; c++) pw[c] += g[c] * x[c] * r;
        }
    }
    if (part) {
        #pragma omp parallel for
        for (int c = 0; c < C; c++) {
            float s = 0.0f;
            for (int t = 0; t < nt; t++) s += part[(size_t)t * C + c];
            dweight[c] += s;
        }
        free(part);
    }
}
