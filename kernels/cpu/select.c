// Token selection on the device side of decoding (CPU twins of
// kernels/cuda/select.cu): per row of logits, the log-softmax normaliser and
// the top k entries; and a CSR gather of chosen columns (the catalogue trie's
// allowed children). The host then reads N*k + (allowed) numbers per step
// instead of N*V. The normaliser is computed exactly as host/gen/sampler.c's
// logsumexp, so generation on the CPU backend is bit-identical to choosing
// on downloaded rows.
#include <math.h>
#include "../backend.h"
#include "cpu_ops.h"

// "a ranks before b": larger value, then lower id
static int ranks_before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

// One row: lse, and the k best entries by insertion into a sorted list
// (k is small; most entries fail the comparison with the current k-th).
static void lse_topk_row(double *lse, int *ti, float *tv, const float *x, int V, int k) {
    int best = 0;
    for (int v = 1; v < V; v++) if (x[v] > x[best]) best = v;
    const float mx = x[best];
    if (mx == -INFINITY) {
        *lse = -INFINITY;
    } else {
        double s = 0.0;
        for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
        *lse = mx + log(s);
    }
    if (k <= 0) return;
    int n = 0;
    for (int v = 0; v < V; v++) {
        const float xv = x[v];
        if (xv == -INFINITY) continue;
        if (n == k && !ranks_before(xv, v, tv[k - 1], ti[k - 1])) continue;
        int i = n < k ? n++ : k - 1;   // the slot freed at the end of the list
        while (i > 0 && ranks_before(xv, v, tv[i - 1], ti[i - 1])) { tv[i] = tv[i - 1]; ti[i] = ti[i - 1]; i--; }
        tv[i] = xv; ti[i] = v;
    }
    for (int i = n; i < k; i++) { ti[i] = -1; tv[i] = -INFINITY; }
}

void cpu_logits_lse_topk(double *lse, int *top_id, float *top_val, const void *logits_, int N, int V, int k) {
    const float *logits = logits_;
    #pragma omp parallel for schedule(dynamic) if ((size_t)N * V >= CPU_PAR_MIN)
    for (int n = 0; n < N; n++)
        lse_topk_row(lse + n, k > 0 ? top_id + (size_t)n * k : NULL, k > 0 ? top_val + (size_t)n * k : NULL,
                     logits + (size_t)n * V, V, k);
}

void cpu_gather_cols(float *out, const void *logits_, const int *off, const int *src, const int *cols, int N, int V) {
    const float *logits = logits_;
    for (int n = 0; n < N; n++) {
        const int *c = cols + src[n];   // row n's slice
        for (int j = off[n]; j < off[n + 1]; j++) out[j] = logits[(size_t)n * V + c[j - off[n]]];
    }
}
