// sprec bench: throughput of the engine's hot paths on random weights and
// tokens, as JSON lines (bench/README.md has the exact definitions; the
// PyTorch twins are bench/torch_cpu.py and bench/torch_cuda.py).
//   --mode sft       full SFT training steps (forward, backward, AdamW) and the
//                    machine's own sgemm rate measured in the same process
//   --mode forward   the forward alone (a reference pass or prefill), then the sgemm rate
//   --mode dpo       full DPO steps (host/train/dpo.h dpo_step on --batch pairs with
//                    precomputed reference log-probs, then AdamW)
//   --mode logprob   the fused linear log-prob head alone: logprob_fwd_bwd (SFT), then
//                    logprob_fwd + logprob_bwd (DPO, NAME-twopass)
//   --mode generate  catalogue-constrained greedy and beam decoding (recommend_topk)
//   --mode attention causal GQA attention alone (attention_fwd + _bwd): the backend's
//                    own kernel, against PyTorch's SDPA backends (cuDNN, flash, efficient)
//   --mode iteration one whole SPRec iteration (the trainer's own, host/train/train_sprec.c)
//                    on a random recommendation world, timed stage by stage (stage_time.h)
// tokens_per_s and ms_per_step come from the median step (as the PyTorch side).
// Model FLOPs per token (the same formula as bench/torch_cpu.py):
//   6 * (linear weights per layer * layers + V*C)   matmuls, forward + backward
// + 6 * layers * T * NH*D                            causal attention (QK^T, PV)
// The LM head is counted for every token, as a plain PyTorch step computes it;
// sprec evaluates it only on completion positions, which is part of its speed.
// On CUDA, mfu = model FLOP/s / the GPU's dense bf16 tensor-core peak (the
// precision of the backend's GEMMs, and what PyTorch's bf16 runs are measured
// against in bench/torch_cuda.py).
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <cblas.h>
#include <omp.h>
#include "model/act.h"
#include "commands.h"
#include "io/dataset.h"
#include "model/device.h"
#include "train/dpo.h"
#include "train/train.h"
#include "train/stage_time.h"
#include "io/config.h"
#include "rec/recdata.h"
#include "rec/prepare/rows.h"
#include "model/optimizer.h"
#include "base/progress.h"
#include "rec/recommend.h"
#include "rec/evaluate.h"
#include "kernels/errors.h"
#include "base/rng.h"
#include "rec/trie.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double sgemm_gflops(int n, int reps) {
    float *a = xmalloc((size_t)n * n * sizeof(float)), *b = xmalloc((size_t)n * n * sizeof(float)),
          *c = xcalloc((size_t)n * n, sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double t = now_seconds();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    t = now_seconds() - t;
    free(a); free(b); free(c);
    return 2.0 * n * (double)n * n * reps / t / 1e9;
}

// Waits for the device's queue: a download synchronises the backend's stream
// (a 4-byte memcpy on the CPU), so a step's time includes all its kernels.
static void device_sync(const Backend *be, const void *dev) {
    float x;
    be->download(&x, dev, sizeof x);
}

// ---- timing, memory, peaks ----------------------------------------------------------

typedef struct { double median, mean, min; } Stats;

static Stats stats_of(double *times, int steps) {
    Stats s = {0, 0, 0};
    for (int i = 0; i < steps; i++) s.mean += times[i] / steps;
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    s.median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    s.min = times[0];
    return s;
}

static long host_peak_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

static long host_current_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

// Dense bf16 peaks (TFLOP/s) of the GPUs we know, by device name; SXM parts
// (PCIe H100s are slower and not listed: their MFU is reported as null).
static int gpu_peak_bf16(const char *name, double *bf16) {
    static const struct { const char *key; double bf16; } table[] = {
        {"H200", 989.4}, {"H100", 989.4}, {"A100", 312.0}};
    if (!name || strstr(name, "PCIe")) return 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(name, table[i].key)) { *bf16 = table[i].bf16; return 1; }
    return 0;
}

// The activation storage of the run, for the result lines: "fp32" or "bf16".
static const char *storage_name(const Backend *be) { return be->act_bytes == 2 ? "bf16" : "fp32"; }

// The fields every mode ends its line with, after its own ones. flops: model
// FLOPs per step (0: gflops and mfu null); tokens: tokens per step.
static void print_tail(const Backend *be, const Stats *st, double tokens, double flops, long peak_dev, long extra) {
    long peak = host_peak_bytes();
    double bf16 = 0;
    int have_peak = 0;
    BackendMemStats ms;
    memset(&ms, 0, sizeof ms);
    const int dev = backend_supports(be, BACKEND_MEM_STATS);
    if (dev) {
        be->mem_stats(&ms);
        have_peak = gpu_peak_bf16(ms.device_name, &bf16);
    }
    printf("\"storage\": \"%s\", \"tokens\": %.0f, \"flops_per_step\": %.6g, \"tokens_per_s\": %.1f, "
           "\"ms_per_step\": %.3f, \"ms_per_step_mean\": %.3f, \"ms_per_step_min\": %.3f, \"peak_bytes\": %ld, ",
           storage_name(be), tokens, flops, tokens / st->median, 1e3 * st->median, 1e3 * st->mean, 1e3 * st->min,
           dev ? (peak_dev >= 0 ? peak_dev : (long)ms.peak) : peak);
    if (extra >= 0) printf("\"extra_bytes\": %ld, ", extra);
    if (flops > 0) printf("\"gflops\": %.2f, ", flops / st->median / 1e9);
    else printf("\"gflops\": null, ");
    if (dev) {
        printf("\"host_peak_bytes\": %ld, \"gpu\": \"%s\", ", peak, ms.device_name);
        if (have_peak && flops > 0)
            printf("\"mfu\": %.4f, \"peak_tflops_bf16\": %.1f}\n", flops / st->median / (bf16 * 1e12), bf16);
        else
            printf("\"mfu\": null, \"peak_tflops_bf16\": null}\n");
    } else {
        printf("\"mfu\": null}\n");
    }
    fflush(stdout);
}

// ---- the shared model setup ------------------------------------------------------------

typedef struct {
    const char *name, *mode;
    ModelConfig c;
    int T, B, steps, warmup;
    double loss_frac;
    const Backend *be;
} Bench;

static double flops_per_token(const ModelConfig *c, int T) {
    const double C = c->dim, QD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    const double layer_w = C * QD + 2 * C * KVD + QD * C + 3 * C * c->ffn_dim;
    return 6 * (layer_w * c->n_layers + (double)c->vocab_size * C) + 6.0 * c->n_layers * T * QD;
}

static double linear_params(const ModelConfig *c) {
    const double C = c->dim, QD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    return (C * QD + 2 * C * KVD + QD * C + 3 * C * c->ffn_dim) * c->n_layers + (double)c->vocab_size * C;
}

static void print_head(const Bench *b) {
    printf("{\"name\": \"%s\", \"impl\": \"sprec\", \"mode\": \"%s\", \"device\": \"%s\", \"threads\": %d, "
           "\"dim\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"ffn\": %d, \"vocab\": %d, ",
           b->name, b->mode, b->be->name, omp_get_max_threads(), b->c.dim, b->c.n_layers, b->c.n_heads,
           b->c.n_kv_heads, b->c.ffn_dim, b->c.vocab_size);
}

// [B, T] random tokens, full length, mask on the last loss_frac of each row (t >= 1)
static void random_batch(Batch *batch, int B, int T, int V, double loss_frac, Rng *r, double *mask_sum) {
    memset(batch, 0, sizeof *batch);
    batch->B = B;
    batch->T = T;
    batch->tokens = xmalloc((size_t)B * T * sizeof(int));
    batch->mask = xcalloc((size_t)B * T, sizeof(float));
    batch->lengths = xmalloc((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        batch->lengths[b] = T;
        for (int t = 0; t < T; t++) {
            batch->tokens[b * T + t] = (int)rng_below(r, (uint64_t)V);
            if (t >= 1 && t >= T - (int)(loss_frac * T)) {
                batch->mask[b * T + t] = 1;
                if (mask_sum) *mask_sum += 1;
            }
        }
    }
}

// The benchmarked model (random weights, seed 1) and its AdamW (no decay, clip 1.0).
static void bench_train_model(const Bench *bn, Model *m, AdamW *opt) {
    model_create(m, &bn->c, bn->be);
    model_init_random(m, 1, 0.02f);
    adamw_create(opt, m, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0);
}

// The machine's own sgemm rate, measured in the same process right after a
// step's timing: the yardstick the step's GFLOP/s is read against.
static void print_sgemm_line(void) {
    printf("{\"name\": \"sgemm_1024\", \"impl\": \"openblas\", \"device\": \"cpu\", \"threads\": %d, "
           "\"tokens_per_s\": null, \"ms_per_step\": null, \"peak_bytes\": null, \"gflops\": %.2f, \"mfu\": null}\n",
           omp_get_max_threads(), sgemm_gflops(1024, 10));
}

// ---- sft ---------------------------------------------------------------------------------

static void bench_sft(Bench *bn) {
    const Backend *be = bn->be;
    const int B = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    ModelConfig c = bn->c;
    Model m;
    AdamW opt;
    bench_train_model(bn, &m, &opt);
    Batch batch;
    Rng r;
    rng_seed(&r, 7);
    double mask_sum = 0;
    random_batch(&batch, B, T, c.vocab_size, bn->loss_frac, &r, &mask_sum);
    // the loss weights, per position, known before the forward (as sft_step)
    float *w = xmalloc((size_t)B * T * sizeof(float));
    for (int i = 0; i < B * T; i++) w[i] = (float)(batch.mask[i] / mask_sum);
    double *times = xmalloc((size_t)steps * sizeof(double)), loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_zero_grad(&m);
        int n = model_forward_with_head_grad(&m, &batch, w);
        loss = 0;
        for (int i = 0; i < n; i++) loss -= w[m.head_pos[i]] * m.head_lp[i];
        model_backward(&m, NULL);
        adamw_step(&opt, &m, 1e-4f);
        device_sync(be, m.params);
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    const Stats st = stats_of(times, steps);
    const double flops_tok = flops_per_token(&c, T);
    const double tokens = (double)B * T;   // per step
    // the CPU line is the contract's original one; a device backend adds its memory and MFU
    char mfu[96] = "null", extra[512] = "";
    long peak = host_peak_bytes();
    if (backend_supports(be, BACKEND_MEM_STATS)) {
        BackendMemStats ms;
        be->mem_stats(&ms);
        double bf16;
        const double rate = flops_tok * tokens / st.median;
        const int have_peak = gpu_peak_bf16(ms.device_name, &bf16);
        if (have_peak) snprintf(mfu, sizeof mfu, "%.4f", rate / (bf16 * 1e12));
        snprintf(extra, sizeof extra, ", \"mode\": \"sft\", \"host_peak_bytes\": %ld, \"gpu\": \"%.200s\", "
                 "\"peak_tflops_bf16\": %s", peak, ms.device_name, have_peak ? "" : "null");
        if (have_peak) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%.1f", bf16);
        peak = (long)ms.peak;
    }
    printf("{\"name\": \"%s\", \"impl\": \"sprec\", \"device\": \"%s\", \"storage\": \"%s\", \"threads\": %d, "
           "\"dim\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"ffn\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, \"loss_frac\": %.3f, "
           "\"tokens_per_s\": %.1f, \"ms_per_step\": %.2f, \"ms_per_step_mean\": %.2f, \"ms_per_step_min\": %.2f, "
           "\"peak_bytes\": %ld, \"gflops\": %.2f, \"mfu\": %s, \"final_loss\": %.6f%s}\n",
           bn->name, be->name, storage_name(be), omp_get_max_threads(), c.dim, c.n_layers, c.n_heads, c.n_kv_heads,
           c.ffn_dim, c.vocab_size, T, B, bn->loss_frac, tokens / st.median, 1e3 * st.median, 1e3 * st.mean,
           1e3 * st.min, peak, flops_tok * tokens / st.median / 1e9, mfu, loss, extra);
    print_sgemm_line();
    free(w); free(times); batch_free(&batch);
    adamw_free(&opt, &m);
    model_free(&m);
}

// ---- forward ------------------------------------------------------------------------------

// The forward alone over --batch sequences of --seq (a reference pass or a
// prefill): model_forward with the head on the last --loss-frac of each.
// FLOPs: the model's own count of that forward (model_forward_flops: the head
// on the scored rows only); then the same run's sgemm line.
static void bench_forward(Bench *bn) {
    const Backend *be = bn->be;
    const int B = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    Model m;
    model_create(&m, &bn->c, be);
    model_init_random(&m, 1, 0.02f);
    Batch batch;
    Rng r;
    rng_seed(&r, 7);
    random_batch(&batch, B, T, bn->c.vocab_size, bn->loss_frac, &r, NULL);
    double *times = xmalloc((size_t)steps * sizeof(double));
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_forward(&m, &batch, 0);   // downloads the log-probs: synchronised
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    const Stats st = stats_of(times, steps);
    print_head(bn);
    printf("\"seq\": %d, \"batch\": %d, \"loss_frac\": %.3f, ", T, B, bn->loss_frac);
    print_tail(be, &st, (double)B * T, m.last_fwd_flops, -1, -1);
    if (!backend_supports(be, BACKEND_MEM_STATS)) print_sgemm_line();
    free(times); batch_free(&batch);
    model_free(&m);
}

// ---- dpo ---------------------------------------------------------------------------------

// --batch pairs: 2*batch sequences of --seq per step (chosen, rejected), the
// completion (mask) on the last --loss-frac of each; reference log-probs are
// computed once before timing by the initial policy (as a DPO epoch's
// reference pass does), so a step is the policy's forward + backward + AdamW.
static void bench_dpo(Bench *bn) {
    const Backend *be = bn->be;
    const int P = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    ModelConfig c = bn->c;
    Model m;
    AdamW opt;
    bench_train_model(bn, &m, &opt);
    Batch chosen, rejected;
    Rng r;
    rng_seed(&r, 7);
    random_batch(&chosen, P, T, c.vocab_size, bn->loss_frac, &r, NULL);
    random_batch(&rejected, P, T, c.vocab_size, bn->loss_frac, &r, NULL);
    double *ref_c = xmalloc((size_t)P * sizeof(double)), *ref_r = xmalloc((size_t)P * sizeof(double));
    dpo_pair_logprobs(&m, &chosen, &rejected, ref_c, ref_r);
    double *times = xmalloc((size_t)steps * sizeof(double)), loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_zero_grad(&m);
        loss = dpo_step(&m, &chosen, &rejected, ref_c, ref_r, NULL, 0.1, NULL);
        adamw_step(&opt, &m, 1e-4f);
        device_sync(be, m.params);
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    const Stats st = stats_of(times, steps);
    const double tokens = 2.0 * P * T;
    print_head(bn);
    printf("\"seq\": %d, \"batch\": %d, \"pairs\": %d, \"loss_frac\": %.3f, \"beta\": 0.1, \"ref\": \"precomputed\", "
           "\"final_loss\": %.6f, ", T, P, P, bn->loss_frac, loss);
    print_tail(be, &st, tokens, flops_per_token(&c, T) * tokens, -1, -1);
    free(times); free(ref_c); free(ref_r);
    batch_free(&chosen); batch_free(&rejected);
    adamw_free(&opt, &m);
    model_free(&m);
}

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
static void bench_logprob(Bench *bn, int N) {
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
static void bench_attention(Bench *bn, int NH, int NKV, int D, int ragged) {
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

// ---- generate ------------------------------------------------------------------------------

enum { TITLE_MIN = 4, TITLE_MAX = 12 };   // content tokens per title, plus the end token

static const int *const *cmp_seqs;
static const int *cmp_lens;
static int cmp_title(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    const int n = cmp_lens[i] < cmp_lens[j] ? cmp_lens[i] : cmp_lens[j];
    int d = memcmp(cmp_seqs[i], cmp_seqs[j], (size_t)n * sizeof(int));
    if (!d) d = (cmp_lens[i] > cmp_lens[j]) - (cmp_lens[i] < cmp_lens[j]);
    return d ? d : (i > j) - (i < j);
}

// Catalogue of `items` random titles: TITLE_MIN..TITLE_MAX tokens from
// 1..V-2 then the end token V-1 (the closing `"\n` of a real title); a
// duplicate of an earlier title is dropped. P prompts of Lp tokens from 1..V-2.
// One splitmix64 stream (rng.h), seed 12345, as bench/torch_cuda.py draws it,
// so both sides build the same catalogue and prompts.
static int make_catalogue(int items, int V, int P, int Lp, int ***seqs_out, int **lens_out, int ***prompts_out) {
    uint64_t s = 12345;
    int **seqs = xmalloc((size_t)items * sizeof(int *)), *lens = xmalloc((size_t)items * sizeof(int));
    for (int i = 0; i < items; i++) {
        lens[i] = TITLE_MIN + (int)(splitmix64(&s) % (TITLE_MAX - TITLE_MIN + 1)) + 1;
        seqs[i] = xmalloc((size_t)lens[i] * sizeof(int));
        for (int k = 0; k < lens[i] - 1; k++) seqs[i][k] = 1 + (int)(splitmix64(&s) % (uint64_t)(V - 2));
        seqs[i][lens[i] - 1] = V - 1;
    }
    int **prompts = xmalloc((size_t)P * sizeof(int *));
    for (int p = 0; p < P; p++) {
        prompts[p] = xmalloc((size_t)Lp * sizeof(int));
        for (int k = 0; k < Lp; k++) prompts[p][k] = 1 + (int)(splitmix64(&s) % (uint64_t)(V - 2));
    }
    // drop later duplicates, keeping generation order
    int *ord = xmalloc((size_t)items * sizeof(int));
    char *dup = xcalloc((size_t)items, 1);
    for (int i = 0; i < items; i++) ord[i] = i;
    cmp_seqs = (const int *const *)seqs;
    cmp_lens = lens;
    qsort(ord, (size_t)items, sizeof(int), cmp_title);
    for (int k = 1; k < items; k++) {
        const int a = ord[k - 1], b = ord[k];
        if (lens[a] == lens[b] && !memcmp(seqs[a], seqs[b], (size_t)lens[a] * sizeof(int)))
            dup[b] = 1, ord[k] = a;   // b > a (ties sort by index); keep comparing with the first copy
    }
    int n = 0;
    for (int i = 0; i < items; i++) {
        if (dup[i]) { free(seqs[i]); continue; }
        seqs[n] = seqs[i];
        lens[n++] = lens[i];
    }
    free(ord); free(dup);
    *seqs_out = seqs;
    *lens_out = lens;
    *prompts_out = prompts;
    return n;
}

// P prompts decoded to one catalogue item each: constrained greedy (beam 1)
// and constrained beam search of width --beams (recommend_topk, K = 1): a
// "step" decodes all P prompts; tokens = the output tokens (the returned
// titles' lengths, end token included), whatever the beam width.
// FLOPs (an estimate, documented in bench/README.md):
//   2 * linear_params * (P * prompt_len + beams * output tokens), attention not counted.
static void bench_generate(Bench *bn, int P, int W, int items, int Lp) {
    const Backend *be = bn->be;
    ModelConfig c = bn->c;
    if (c.vocab_size < 3) fail("sprec bench: --mode generate needs --vocab >= 3");
    c.max_seq_len = Lp + TITLE_MAX + 2 > bn->T ? Lp + TITLE_MAX + 2 : bn->T;
    int **seqs, *lens, **prompts;
    const int n_items = make_catalogue(items, c.vocab_size, P, Lp, &seqs, &lens, &prompts);
    Trie t;
    trie_build(&t, (const int *const *)seqs, lens, n_items, NULL);
    Model m;
    model_create(&m, &c, be);
    model_init_random(&m, 1, 0.02f);
    int *plens = xmalloc((size_t)P * sizeof(int)), *out = xmalloc((size_t)P * sizeof(int));
    float *scores = xmalloc((size_t)P * sizeof(float));
    for (int p = 0; p < P; p++) plens[p] = Lp;
    double *times = xmalloc((size_t)bn->steps * sizeof(double));
    for (int pass = 0; pass < 2; pass++) {
        const int beams = pass ? W : 1;
        if (pass && W == 1) break;
        double out_tokens = 0;
        for (int s = 0; s < bn->warmup + bn->steps; s++) {
            double t0 = now_seconds();
            recommend_topk(&m, &t, (const int *const *)prompts, plens, P, 1, beams, out, scores);
            if (s >= bn->warmup) times[s - bn->warmup] = now_seconds() - t0;
        }
        for (int p = 0; p < P; p++) out_tokens += t.item_len[out[p]];
        const Stats st = stats_of(times, bn->steps);
        const double flops = 2 * linear_params(&c) * ((double)P * Lp + (double)beams * out_tokens);
        char name[300];
        if (beams == 1) snprintf(name, sizeof name, "%s_greedy", bn->name);
        else snprintf(name, sizeof name, "%s_beam%d", bn->name, beams);
        Bench b2 = *bn;
        b2.name = name;
        print_head(&b2);
        printf("\"prompts\": %d, \"prompt_len\": %d, \"beams\": %d, \"items\": %d, \"trie_nodes\": %d, "
               "\"prompts_per_s\": %.2f, ", P, Lp, beams, n_items, t.n_nodes, P / st.median);
        print_tail(be, &st, out_tokens, flops, -1, -1);
    }
    free(times); free(plens); free(out); free(scores);
    for (int i = 0; i < n_items; i++) free(seqs[i]);
    for (int p = 0; p < P; p++) free(prompts[p]);
    free(seqs); free(lens); free(prompts);
    trie_free(&t);
    model_free(&m);
}

// ---- iteration -----------------------------------------------------------------------------

// A random recommendation world: the catalogue and prompts of make_catalogue
// (--items titles, Lp-token prompts); `rows` train rows and as many test rows
// (and one valid row, which the iteration does not evaluate), each a history
// of HIST random items, a random target and the tokens prompt ++ its title.
enum { HIST = 3 };
static void random_world(RecData *d, int items, int V, int rows, int Lp) {
    memset(d, 0, sizeof *d);
    const int n_rows[N_SPLITS] = {rows, 1, rows};
    int **seqs, *lens, **prompts;
    d->n_items = make_catalogue(items, V, 2 * rows + 1, Lp, &seqs, &lens, &prompts);
    d->n_genres = 1;
    d->tokenized = 1;
    snprintf(d->source, sizeof d->source, "synthetic");
    snprintf(d->instruction, sizeof d->instruction, "sprec bench: random tokens");
    d->genre_names = xmalloc(sizeof(char *));
    d->genre_names[0] = xstrdup("random");
    d->titles = xmalloc((size_t)d->n_items * sizeof(char *));
    d->genre_offsets = xmalloc((size_t)(d->n_items + 1) * sizeof(int));
    d->genre_ids = xcalloc((size_t)d->n_items, sizeof(int));
    d->popularity = xcalloc((size_t)d->n_items, sizeof(int));
    d->item_tok_offsets = xmalloc((size_t)(d->n_items + 1) * sizeof(int));
    d->genre_offsets[0] = d->item_tok_offsets[0] = 0;
    for (int i = 0; i < d->n_items; i++) {
        char title[32];
        snprintf(title, sizeof title, "item %d", i);
        d->titles[i] = xstrdup(title);
        d->genre_offsets[i + 1] = i + 1;
        d->item_tok_offsets[i + 1] = d->item_tok_offsets[i] + lens[i];
    }
    d->item_tok = xmalloc((size_t)d->item_tok_offsets[d->n_items] * sizeof(int));
    for (int i = 0; i < d->n_items; i++)
        memcpy(d->item_tok + d->item_tok_offsets[i], seqs[i], (size_t)lens[i] * sizeof(int));
    Rng r;
    rng_seed(&r, 7);
    for (int s = 0, p = 0; s < N_SPLITS; s++) {
        RecSplit *sp = &d->split[s];
        const int n = sp->n = n_rows[s];
        sp->T = Lp + TITLE_MAX + 1;
        sp->hist_offsets = xmalloc((size_t)(n + 1) * sizeof(int));
        sp->hist_items = xmalloc((size_t)n * HIST * sizeof(int));
        sp->target = xmalloc((size_t)n * sizeof(int));
        sp->source_row = xmalloc((size_t)n * sizeof(int));
        sp->prompt = xmalloc((size_t)n * sizeof(char *));
        sp->completion = xmalloc((size_t)n * sizeof(char *));
        sp->tokens = xcalloc((size_t)n * sp->T, sizeof(int));
        sp->mask = xcalloc((size_t)n * sp->T, sizeof(float));
        sp->lengths = xmalloc((size_t)n * sizeof(int));
        sp->prompt_len = xmalloc((size_t)n * sizeof(int));
        sp->hist_offsets[0] = 0;
        for (int k = 0; k < n; k++, p++) {
            sp->hist_offsets[k + 1] = (k + 1) * HIST;
            for (int h = 0; h < HIST; h++) sp->hist_items[k * HIST + h] = (int)rng_below(&r, (uint64_t)d->n_items);
            const int item = sp->target[k] = (int)rng_below(&r, (uint64_t)d->n_items);
            if (s == SPLIT_TRAIN) d->popularity[item]++;
            sp->source_row[k] = p;
            sp->prompt[k] = xstrdup("random prompt");
            sp->completion[k] = xstrdup(d->titles[item]);
            int *tok = sp->tokens + (size_t)k * sp->T;
            memcpy(tok, prompts[p], (size_t)Lp * sizeof(int));
            memcpy(tok + Lp, seqs[item], (size_t)lens[item] * sizeof(int));
            for (int t = Lp; t < Lp + lens[item]; t++) sp->mask[(size_t)k * sp->T + t] = 1;
            sp->prompt_len[k] = Lp;
            sp->lengths[k] = Lp + lens[item];
        }
    }
    for (int i = 0; i < d->n_items; i++) free(seqs[i]);
    for (int p = 0; p < 2 * rows + 1; p++) free(prompts[p]);
    free(seqs); free(lens); free(prompts);
}

// The number after "KEY": in a stage_times.jsonl line (stage_time.h); -1 when absent.
static double json_number(const char *line, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *q = strstr(line, pat);
    return q ? strtod(q + strlen(pat), NULL) : -1;
}

// The bench's scratch folder: the world file and the run folder sprec_train
// writes. Emptied and removed at exit (atexit), a failed run's included.
static char scratch_dir[] = "/tmp/sprec-bench-XXXXXX";
static void remove_scratch(void) {
    char path[4096];
    for (int level = 1; level >= 0; level--) {
        snprintf(path, sizeof path, level ? "%s/run" : "%s", scratch_dir);
        DIR *dd = opendir(path);
        if (!dd) continue;
        for (struct dirent *e; (e = readdir(dd));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char f[4400];
            snprintf(f, sizeof f, "%s/%s", path, e->d_name);
            remove(f);
        }
        closedir(dd);
        rmdir(path);
    }
}

// One whole SPRec iteration, the trainer's own (sprec_train, iteration 1 of 1,
// random weights) on random_world in a scratch folder, its progress on stderr;
// then one line per stage from the stage_times.jsonl line it wrote (seconds,
// tokens and model FLOPs as stage_time.h counts them), and one for the whole
// iteration: its wall time, the stages' sums of tokens and FLOPs, stages_s =
// the stages' seconds and other_s = the rest (drawing the prompts, the pairs
// file and the checkpoints the trainer writes after each stage).
static void bench_iteration(Bench *bn, const char *device, int threads, int P, int W, int items, int Lp) {
    ModelConfig c = bn->c;
    if (c.vocab_size < 3) fail("sprec bench: --mode iteration needs --vocab >= 3");
    if (items < 2) fail("sprec bench: --mode iteration needs --items >= 2 (a negative is another item)");
    c.max_seq_len = Lp + TITLE_MAX + 2 > bn->T ? Lp + TITLE_MAX + 2 : bn->T;
    Config cfg;
    config_defaults(&cfg);   // the shape's fields of the other modes' model; the rest as [model]'s defaults
    ModelConfig *m = &cfg.model;
    m->dim = c.dim; m->n_layers = c.n_layers; m->n_heads = c.n_heads; m->n_kv_heads = c.n_kv_heads;
    m->head_dim = c.head_dim; m->ffn_dim = c.ffn_dim; m->vocab_size = c.vocab_size; m->max_seq_len = c.max_seq_len;
    m->rope_theta = c.rope_theta; m->rms_eps = c.rms_eps; m->tie_embeddings = c.tie_embeddings;
    cfg.init_seed = 1;
    cfg.init_std = 0.02f;
    snprintf(cfg.train.method, sizeof cfg.train.method, "sprec");
    snprintf(cfg.run.device, sizeof cfg.run.device, "%s", device);
    cfg.run.threads = threads;
    cfg.train.batch_size = bn->B;
    cfg.train.grad_accum = 1;
    cfg.sprec.iterations = 1;
    cfg.sprec.n = P;
    cfg.sprec.eval_valid = 0;
    cfg.eval.beams = W;   // the negatives' beams (dpo.beams) and the eval's cut-offs (eval.ks): the defaults
    int ks[16], eval_beams = W;   // max(eval.beams, max K), as the trainer takes it
    char err[128];
    for (int k = 0, n = evaluate_parse_ks(cfg.eval.ks, ks, 16, err, sizeof err); k < n; k++)
        if (ks[k] > eval_beams) eval_beams = ks[k];
    config_validate(&cfg, "sprec bench --mode iteration");
    if (!mkdtemp(scratch_dir)) fail("sprec bench: cannot create a scratch folder in /tmp: %s", strerror(errno));
    atexit(remove_scratch);
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "%s/world.h5", scratch_dir);
    snprintf(cfg.run.out_dir, sizeof cfg.run.out_dir, "%s/run", scratch_dir);
    RecData d;
    random_world(&d, items, c.vocab_size, P, Lp);
    recdata_save(&d, cfg.data.dataset);
    recdata_free(&d);
    fflush(stdout);   // the trainer's own lines go to stderr: stdout stays JSON lines
    const int saved = dup(1);
    dup2(2, 1);
    sprec_train(&cfg, 0, 1);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    char path[4096], line[4096] = "";
    snprintf(path, sizeof path, "%s/stage_times.jsonl", cfg.run.out_dir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) fail("sprec bench: the iteration wrote no %s", path);
    fclose(f);
    double tokens_all = 0, flops_all = 0;
    for (int s = 0; s <= N_STAGES; s++) {   // the stages, then the whole
        const char *stage = s < N_STAGES ? STAGE_NAMES[s] : "iteration";
        char key[64], name[300];
        double sec, tokens, flops;
        if (s < N_STAGES) {
            snprintf(key, sizeof key, "%s_s", stage);
            sec = json_number(line, key);
            snprintf(key, sizeof key, "%s_tokens", stage);
            tokens = json_number(line, key);
            snprintf(key, sizeof key, "%s_gflops", stage);
            flops = json_number(line, key) * 1e9 * sec;
            if (sec < 0 || tokens < 0) fail("sprec bench: %s has no %s stage: %s", path, stage, line);
            tokens_all += tokens;
            flops_all += flops;
        } else {
            sec = json_number(line, "wall_s");
            tokens = tokens_all;
            flops = flops_all;
        }
        if (sec <= 0) sec = 1e-9;
        if (s < N_STAGES) snprintf(name, sizeof name, "%s-%s", bn->name, stage);
        else snprintf(name, sizeof name, "%s", bn->name);
        Bench b2 = *bn;
        b2.name = name;
        print_head(&b2);
        printf("\"stage\": \"%s\", \"prompts\": %d, \"prompt_len\": %d, \"negative_beams\": %d, \"eval_beams\": %d, "
               "\"items\": %d, \"batch\": %d, \"seconds\": %.6f, ", stage, P, Lp, cfg.dpo.beams, eval_beams, items,
               bn->B, sec);
        if (s == N_STAGES) {
            const double stages_s = json_number(line, "total_s");
            printf("\"stages_s\": %.6f, \"other_s\": %.6f, ", stages_s, sec - stages_s);
        }
        const Stats st = {sec, sec, sec};
        print_tail(bn->be, &st, tokens, flops, -1, -1);
    }
}

int cmd_bench(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec bench [--mode sft|dpo|forward|logprob|generate|attention|iteration] [--name NAME] [--device cpu|cpu-bf16|cuda]\n"
               "                   [--threads N]\n"
               "                   [--dim 256] [--layers 4] [--heads 4] [--kv-heads 4] [--ffn 688] [--vocab 8192]\n"
               "                   [--seq 256] [--batch 8] [--steps 5] [--warmup 2] [--loss-frac 0.5]\n"
               "                   [--tokens 8192] (logprob)\n"
               "                   [--prompts 64] [--beams 4] [--items 1000] [--prompt-len 64] (generate, iteration)\n"
               "                   [--head-dim 64] [--ragged] (attention: --batch, --seq, --heads, --kv-heads)\n"
               "Times the engine on random weights and tokens; prints one JSON object per result line.\n"
               "  sft       full SFT steps (forward, backward, AdamW) on --batch sequences of --seq, the loss on\n"
               "            the last --loss-frac of each; then the machine's sgemm rate\n"
               "  forward   the forward alone (a reference pass): --batch sequences of --seq, the head on the last\n"
               "            --loss-frac of each; then the machine's sgemm rate\n"
               "  dpo       full DPO steps on --batch pairs (2 x batch sequences of --seq, completion = the last\n"
               "            --loss-frac), reference log-probs precomputed, beta 0.1, AdamW\n"
               "  logprob   the fused log-prob head alone: --tokens rows of --dim against --vocab, fwd + bwd in\n"
               "            one pass (SFT), then as two passes (DPO; the line NAME-twopass)\n"
               "  generate  catalogue-constrained greedy and --beams beam decoding of --prompts prompts of\n"
               "            --prompt-len tokens over a random trie of --items titles (one line each)\n"
               "  attention causal GQA attention alone: attention_fwd + attention_bwd on q[batch, seq, heads,\n"
               "            head-dim], k, v[batch, seq, kv-heads, head-dim]; --ragged: lengths seq, 3seq/4, seq/2,\n"
               "            seq/4, seq, ... instead of all seq\n"
               "  iteration one whole SPRec iteration (the trainer's: negatives, SFT, reference pass, DPO, eval)\n"
               "            on random weights and a random world of --items titles, --prompts train and test\n"
               "            rows of --prompt-len tokens, micro-batches of --batch, eval beam width max(--beams, 10);\n"
               "            one line per stage and one for the whole (the trainer's progress on stderr)\n"
               "See bench/README.md for the exact definitions of every field.\n");
        return 0;
    }
    Bench bn;
    memset(&bn, 0, sizeof bn);
    ModelConfig *c = &bn.c;
    const char *name = NULL, *device = "cpu";
    int ragged = 0, head_dim = 0, tokens = 8192, prompts = 64, beams = 4, items = 1000, prompt_len = 64;
    int threads = omp_get_max_threads();
    bn.mode = "sft";
    *c = (ModelConfig){.dim = 256, .n_layers = 4, .n_heads = 4, .ffn_dim = 688, .vocab_size = 8192};   // kv-heads: --heads
    // the loss covers the last loss_frac of each sequence (a completion); 1 = every position
    bn.T = 256, bn.B = 8, bn.steps = 5, bn.warmup = 2, bn.loss_frac = 0.5;
    const CliFlag flags[] = {
        ARG_STR("--name", &name), ARG_STR("--mode", &bn.mode), ARG_STR("--device", &device),
        ARG_INT("--dim", &c->dim, 1, CLI_BIG), ARG_INT("--layers", &c->n_layers, 1, CLI_BIG),
        ARG_INT("--heads", &c->n_heads, 1, CLI_BIG), ARG_INT("--kv-heads", &c->n_kv_heads, 1, CLI_BIG),
        ARG_INT("--ffn", &c->ffn_dim, 1, CLI_BIG), ARG_INT("--vocab", &c->vocab_size, 1, CLI_BIG),
        ARG_INT("--seq", &bn.T, 1, CLI_BIG), ARG_INT("--batch", &bn.B, 1, CLI_BIG),
        ARG_INT("--steps", &bn.steps, 1, CLI_BIG), ARG_INT("--warmup", &bn.warmup, 1, CLI_BIG),
        ARG_INT("--threads", &threads, 1, CLI_BIG), ARG_FRACTION("--loss-frac", &bn.loss_frac),
        ARG_INT("--tokens", &tokens, 1, CLI_BIG), ARG_INT("--prompts", &prompts, 1, CLI_BIG),
        ARG_INT("--beams", &beams, 1, CLI_BIG), ARG_INT("--items", &items, 1, CLI_BIG),
        ARG_INT("--prompt-len", &prompt_len, 1, CLI_BIG), ARG_INT("--head-dim", &head_dim, 1, CLI_BIG),
        ARG_SWITCH("--ragged", &ragged), ARG_END};
    cli_parse("bench", argc, argv, flags);
    const int attention = !strcmp(bn.mode, "attention");
    if (strcmp(bn.mode, "sft") && strcmp(bn.mode, "dpo") && strcmp(bn.mode, "logprob") && strcmp(bn.mode, "generate") &&
        strcmp(bn.mode, "forward") && strcmp(bn.mode, "iteration") && !attention)
        fail("sprec bench: --mode must be sft, dpo, forward, logprob, generate, attention or iteration, got '%s'",
             bn.mode);
    if (!attention && (ragged || head_dim))
        fail("sprec bench: --head-dim and --ragged are for --mode attention");
    if (name && (strchr(name, '"') || strchr(name, '\\') || strlen(name) > 200))
        fail("sprec bench: --name must be at most 200 characters without quotes or backslashes");
    bn.name = name ? name : !strcmp(bn.mode, "sft") ? "sft_step" : !strcmp(bn.mode, "dpo") ? "dpo_step" : bn.mode;
    if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
    // attention: the kernels take head dims 1..128 (kernels/cuda/attention.cu); --dim is not used
    if (!head_dim) head_dim = 64;
    if (attention && (c->n_heads % c->n_kv_heads || head_dim > 128))
        fail("sprec bench: --mode attention needs --heads divisible by --kv-heads and --head-dim <= 128");
    if (!attention && (c->dim % c->n_heads || (c->dim / c->n_heads) % 2 || c->n_heads % c->n_kv_heads))
        fail("sprec bench: need --dim divisible by --heads into an even head size, and --heads by --kv-heads");
    c->head_dim = attention ? head_dim : c->dim / c->n_heads;
    c->max_seq_len = bn.T;
    c->rope_theta = 10000; c->rms_eps = 1e-5f; c->tie_embeddings = 1;
    bn.be = device_open(device, threads);
    if (!strcmp(bn.mode, "sft")) bench_sft(&bn);
    else if (!strcmp(bn.mode, "dpo")) bench_dpo(&bn);
    else if (!strcmp(bn.mode, "forward")) bench_forward(&bn);
    else if (!strcmp(bn.mode, "logprob")) bench_logprob(&bn, tokens);
    else if (attention) bench_attention(&bn, c->n_heads, c->n_kv_heads, c->head_dim, ragged);
    else if (!strcmp(bn.mode, "iteration"))
        bench_iteration(&bn, device, threads, prompts, beams, items, prompt_len);
    else bench_generate(&bn, prompts, beams, items, prompt_len);
    return 0;
}
