// sprec bench --mode logprob, attention: one kernel family alone.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "bench.h"
#include "model/act.h"
#include "base/progress.h"
#include "kernels/errors.h"

// ---- logprob -------------------------------------------------------------------------------

// The memory held before an op: the device allocator's counters (when the
// backend has them) and the process RSS.
typedef struct { BackendMemStats dev; long rss; } MemMark;
static MemMark mem_mark(const Backend *be) {
    MemMark m;
    memset(&m, 0, sizeof m);
    if (backend_supports(be, BACKEND_MEM_STATS)) be->mem_stats(&m.dev);
    m.rss = host_current_bytes();
    return m;
}

// The memory an op needed beyond what was held at `before`: on a device the
// allocator's peak minus its count then (and *scratch = its scratch now), on
// the CPU the peak RSS minus the RSS then.
static long extra_bytes(const Backend *be, const MemMark *before, long *scratch) {
    if (!backend_supports(be, BACKEND_MEM_STATS)) {
        const long extra = host_peak_bytes() - before->rss;
        return extra < 0 ? 0 : extra;
    }
    BackendMemStats ms;
    be->mem_stats(&ms);
    *scratch = (long)ms.scratch;
    return (long)(ms.peak - before->dev.current);
}

// n floats uniform in [-scale, scale], drawn from r in index order (host memory)
static float *uniform_host(size_t n, float scale, Rng *r) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * (float)rng_uniform(r) - 1.0f);
    return x;
}

// The head alone: h[N,C] (N = --tokens), W[V,C], every row scored against a
// random target; forward, then the backward of the mean -log p into dh and dW
// (both zeroed first, like fresh gradients). extra_bytes: the memory the head
// needs beyond its inputs h, W, rows and targets (its outputs and gradients
// included): on CUDA the peak of the backend's counters minus their value
// before, on the CPU the peak RSS minus the RSS before.
void bench_logprob(Bench *bn, int N) {
    const Backend *be = bn->be;
    const int C = bn->c.dim, V = bn->c.vocab_size, steps = bn->steps, warmup = bn->warmup;
    Rng r;
    rng_seed(&r, 7);
    float *hh = uniform_host((size_t)N * C, 1.0f, &r), *wh = uniform_host((size_t)V * C, 1.0f / sqrtf((float)C), &r);
    int *rows_h = xmalloc((size_t)N * sizeof(int)), *tg_h = xmalloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) { rows_h[i] = i; tg_h[i] = (int)rng_below(&r, (uint64_t)V); }
    void *h = act_alloc(be, (size_t)N * C), *w = act_alloc(be, (size_t)V * C);   // act, as in training
    int *rows = be->alloc((size_t)N * sizeof(int)), *tg = be->alloc((size_t)N * sizeof(int));
    act_upload(be, h, hh, (size_t)N * C);
    act_upload(be, w, wh, (size_t)V * C);
    be->upload(rows, rows_h, (size_t)N * sizeof(int));
    be->upload(tg, tg_h, (size_t)N * sizeof(int));
    free(hh); free(wh); free(rows_h); free(tg_h);
    const MemMark mark = mem_mark(be);
    float *lp = be->alloc((size_t)N * sizeof(float)), *lse = be->alloc((size_t)N * sizeof(float));
    float *wt = be->alloc((size_t)N * sizeof(float));
    float *dh = be->alloc((size_t)N * C * sizeof(float)), *dw = be->alloc((size_t)V * C * sizeof(float));
    float *wt_h = xmalloc((size_t)N * sizeof(float));
    for (int i = 0; i < N; i++) wt_h[i] = 1.0f / (float)N;
    be->upload(wt, wt_h, (size_t)N * sizeof(float));
    double *times = xmalloc((size_t)steps * sizeof(double));
    // first the SFT path (logprob_fwd_bwd: each chunk's logits once, three GEMMs), then
    // the DPO path (logprob_fwd, then logprob_bwd recomputing the logits: four GEMMs), as NAME-twopass
    for (int fused = 1; fused >= 0; fused--) {
        for (int s = 0; s < warmup + steps; s++) {
            double t0 = now_seconds();
            be->zero(dh, (size_t)N * C * sizeof(float));
            be->zero(dw, (size_t)V * C * sizeof(float));
            if (fused) {
                be->logprob_fwd_bwd(lp, lse, dh, dw, h, w, rows, tg, wt, N, C, V);
            } else {
                be->logprob_fwd(lp, lse, h, w, rows, tg, N, C, V);
                be->logprob_bwd(dh, dw, h, w, rows, tg, lse, wt, N, C, V);
            }
            device_sync(be, dw);
            if (s >= warmup) times[s - warmup] = now_seconds() - t0;
        }
        be->download(wt_h, lp, (size_t)N * sizeof(float));
        double loss = 0;
        for (int i = 0; i < N; i++) loss -= wt_h[i] / N;
        long scratch = -1, extra = extra_bytes(be, &mark, &scratch);
        const Stats st = stats_of(times, steps);
        char name[300];
        snprintf(name, sizeof name, fused ? "%s" : "%s-twopass", bn->name);
        Bench b2 = *bn;
        b2.name = name;
        print_head(&b2);
        printf("\"final_loss\": %.6f, ", loss);
        if (scratch >= 0) printf("\"scratch_bytes\": %ld, ", scratch);
        print_tail(be, &st, N, 6.0 * N * (double)V * C, -1, extra);
    }
    free(times); free(wt_h);
    be->free(h); be->free(w); be->free(rows); be->free(tg);
    be->free(lp); be->free(lse); be->free(wt); be->free(dh); be->free(dw);
}

// ---- attention -----------------------------------------------------------------------------

// The backend's causal GQA attention alone (the measurement that decides its
// own flash-style kernel vs cuDNN's fused SDPA; bench/torch_cuda.py --mode
// attention is the PyTorch side): q[B,T,NH,D], k,v[B,T,NKV,D] (act, uniform
// in [-1, 1], seed 7), a fixed random dout; a step zeroes dq, dk, dv (as a
// training step's fresh gradients), then attention_fwd + attention_bwd.
// Lengths: every sequence T, or with --ragged T, 3T/4, T/2, T/4, T, ... by row.
// FLOPs (the FlashAttention benchmarks' convention; bench/README.md):
//   fwd  = sum over sequences of 2 * 2 * NH * L*L * D / 2   QK^T and PV, half for causality
//   bwd  = 2.5 * fwd                                        dQ, dK, dV, dP and the recomputed QK^T
//   step = 3.5 * fwd                  (= 7 * B * NH * T^2 * D when every sequence has T tokens)
// tokens = the valid tokens (B * T without --ragged); final_loss = the mean of
// out over valid rows, a checksum of the same inputs across devices.
// extra_bytes: the memory beyond the inputs q, k, v, dout, lengths (out, lse,
// dq, dk, dv and any scratch), measured as in the logprob mode.
void bench_attention(Bench *bn, int NH, int NKV, int D, int ragged) {
    const Backend *be = bn->be;
    const int B = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    const size_t nq = (size_t)B * T * NH * D, nkv = (size_t)B * T * NKV * D;
    Rng r;
    rng_seed(&r, 7);
    float *qh = uniform_host(nq, 1.0f, &r), *kh = uniform_host(nkv, 1.0f, &r), *vh = uniform_host(nkv, 1.0f, &r);
    float *douth = uniform_host(nq, 1.0f, &r);
    int *len_h = xmalloc((size_t)B * sizeof(int));
    double valid = 0, sq = 0;   // valid tokens, sum of L^2
    for (int b = 0; b < B; b++) {
        len_h[b] = ragged ? T - (b % 4) * (T / 4) : T;   // >= 1 for every T >= 1
        valid += len_h[b];
        sq += (double)len_h[b] * len_h[b];
    }
    void *q = act_alloc(be, nq), *k = act_alloc(be, nkv), *v = act_alloc(be, nkv);
    float *dout = be->alloc(nq * sizeof(float));
    int *lengths = be->alloc((size_t)B * sizeof(int));
    act_upload(be, q, qh, nq);
    act_upload(be, k, kh, nkv);
    act_upload(be, v, vh, nkv);
    be->upload(dout, douth, nq * sizeof(float));
    be->upload(lengths, len_h, (size_t)B * sizeof(int));
    free(kh); free(vh); free(douth);
    const MemMark mark = mem_mark(be);
    void *out = act_alloc(be, nq);
    float *lse = be->alloc((size_t)B * NH * T * sizeof(float));
    float *dq = be->alloc(nq * sizeof(float)), *dk = be->alloc(nkv * sizeof(float)),
          *dv = be->alloc(nkv * sizeof(float));
    double *times = xmalloc((size_t)steps * sizeof(double));
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        be->zero(dq, nq * sizeof(float));
        be->zero(dk, nkv * sizeof(float));
        be->zero(dv, nkv * sizeof(float));
        be->attention_fwd(out, lse, q, k, v, lengths, B, T, NH, NKV, D);
        be->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, lengths, B, T, NH, NKV, D);
        device_sync(be, dv);
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    long scratch = -1, extra = extra_bytes(be, &mark, &scratch);
    act_download(be, qh, out, nq);   // the checksum: mean of out over the valid rows
    double sum = 0;
    for (int b = 0; b < B; b++)
        for (size_t i = (size_t)b * T * NH * D; i < ((size_t)b * T + len_h[b]) * NH * D; i++) sum += qh[i];
    const double fwd = 2.0 * NH * D * sq;   // 2 * 2 * NH * L*L * D / 2 per sequence
    const Stats st = stats_of(times, steps);
    printf("{\"name\": \"%s\", \"impl\": \"sprec\", \"mode\": \"attention\", \"device\": \"%s\", \"threads\": %d, "
           "\"batch\": %d, \"seq\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"causal\": 1, "
           "\"ragged\": %d, \"flops_fwd\": %.0f, \"final_loss\": %.6f, ",
           bn->name, be->name, omp_get_max_threads(), B, T, NH, NKV, D, ragged, fwd,
           sum / (valid * NH * D));
    if (scratch >= 0) printf("\"scratch_bytes\": %ld, ", scratch);
    print_tail(be, &st, valid, 3.5 * fwd, -1, extra);
    free(times); free(qh); free(len_h);
    be->free(q); be->free(k); be->free(v); be->free(dout); be->free(lengths);
    be->free(out); be->free(lse); be->free(dq); be->free(dk); be->free(dv);
}
