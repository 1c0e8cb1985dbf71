// The norms: RMSNorm as in Llama (out = weight * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps),
// forward and backward) and LayerNorm as in BERT (forward only: the sentence encoder).
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "../errors.h"
#include "cpu_ops.h"

// One row: y = weight * (x * rstd); returns rstd. One out-of-line copy, so the
// plain and the fused forward reduce in exactly the same compiled order.
__attribute__((noinline)) static float norm_row(float *y, const float *x, const float *weight, float eps, int C) {
    double ss = 0.0;   // double: the mean of squares must not lose the small terms
    #pragma omp simd reduction(+:ss)
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    float r = (float)(1.0 / sqrt(ss / C + eps));
    for (int c = 0; c < C; c++) y[c] = weight[c] * (x[c] * r);
    return r;
}

// out[N,C], rstd[N], inp[N,C], weight[C]
void cpu_rmsnorm_fwd(void *out_, float *rstd, const void *inp_, const void *weight_,
                     float eps, int N, int C) {
    float *out = out_;
    const float *inp = inp_, *weight = weight_;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) rstd[n] = norm_row(out + (size_t)n * C, inp + (size_t)n * C, weight, eps, C);
}

// res[N,C] = a + b, then out[N,C], rstd[N] = rmsnorm(res): row by row, so the
// row is still in cache for the norm (res may alias a or b: each element is
// read before it is written).
void cpu_residual_rmsnorm_fwd(void *res_, void *out_, float *rstd, const void *a_, const void *b_,
                              const void *weight_, float eps, int N, int C) {
    float *res = res_, *out = out_;
    const float *a = a_, *b = b_, *weight = weight_;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * C;
        for (int c = 0; c < C; c++) res[o + c] = a[o + c] + b[o + c];
        rstd[n] = norm_row(out + o, res + o, weight, eps, C);
    }
}

// dinp[N,C] += dL/dx;  dweight[C] += sum_n dout * x * rstd   (either may be NULL)
// dout[N,C], inp[N,C], weight[C], rstd[N] from the forward.
// With y = w x r:  dx_j = r w_j g_j - x_j r^3/C * sum_i g_i w_i x_i.
void cpu_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const void *inp_,
                     const void *weight_, const float *rstd, int N, int C) {
    const float *inp = inp_, *weight = weight_;
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

// LayerNorm: out = (x - mean) * rstd * weight + bias, rstd = 1/sqrt(var + eps),
// var the biased variance (torch.nn.LayerNorm). Mean, variance and the centring in
// double, so a row of large values with a small spread keeps its digits.
// out[N,C], inp[N,C], weight[C], bias[C]; out may alias inp (a row is read
// fully before it is written).
void cpu_layernorm_fwd(void *out_, const void *inp_, const void *weight_, const void *bias_, float eps,
                       int N, int C) {
    float *out = out_;
    const float *inp = inp_, *weight = weight_, *bias = bias_;
    #pragma omp parallel for if ((size_t)N * C >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double sum = 0.0, ss = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        const double mean = sum / C;
        for (int c = 0; c < C; c++) ss += (x[c] - mean) * (x[c] - mean);
        const double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) y[c] = (float)((x[c] - mean) * r) * weight[c] + bias[c];
    }
}
