// Dense layer out = inp @ w^T + bias. The products are OpenBLAS sgemm calls
// (threaded by OpenBLAS itself); w stays in its PyTorch [OC, C] layout.
#include <cblas.h>
#include "cpu_ops.h"

// out[N,OC] = inp[N,C] @ w[OC,C]^T (+ bias[OC], or NULL)
void cpu_matmul_fwd(void *out_, const void *inp_, const void *w_, const void *bias_,
                    int N, int C, int OC) {
    float *out = out_;
    const float *inp = inp_, *w = w_, *bias = bias_;
    if (bias) {
        // seed out with the bias, then let sgemm accumulate onto it (beta = 1)
        #pragma omp parallel for
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] = bias[o];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C,
                1.0f, inp, C, w, C, bias ? 1.0f : 0.0f, out, OC);
}

// dinp[N,C] += dout[N,OC] @ w[OC,C];  dw[OC,C] += dout^T @ inp[N,C];
// dbias[OC] += colsum(dout). Any gradient output may be NULL.
void cpu_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                    const void *inp_, const void *w_, int N, int C, int OC) {
    const float *inp = inp_, *w = w_;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC,
                    1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N,
                    1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (dbias) {
        // A thread owns a slice of 64 columns and sums the rows in order:
        // no shared accumulators, same result on every run.
        #pragma omp parallel for schedule(static)
        for (int o0 = 0; o0 < OC; o0 += 64) {
            int width = OC - o0 < 64 ? OC - o0 : 64;
            float acc[64] = {0};
            for (int n = 0; n < N; n++) {
                const float *row = dout + (size_t)n * OC + o0;
                for (int j = 0; j < width; j++) acc[j] += row[j];
            }
            for (int j = 0; j < width; j++) dbias[o0 + j] += acc[j];
        }
    }
}
