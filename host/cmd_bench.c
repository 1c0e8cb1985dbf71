// sprec bench: SFT training-step throughput on random weights and tokens, and
// the machine's own sgemm rate measured in the same process, as JSON lines.
// tokens_per_s and ms_per_step come from the median step (as bench/torch_cpu.py).
// Model FLOPs per token (the same formula as bench/torch_cpu.py):
//   6 * (linear weights per layer * layers + V*C)   matmuls, forward + backward
// + 6 * layers * T * NH*D                            causal attention (QK^T, PV)
// The LM head is counted for every token, as a plain PyTorch step computes it;
// sprec evaluates it only on completion positions, which is part of its speed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cblas.h>
#include <omp.h>
#include "commands.h"
#include "dataset.h"
#include "device.h"
#include "optimizer.h"
#include "progress.h"
#include "check.h"
#include "rng.h"

static int opt_int(int argc, char **argv, const char *flag, int dflt) {
    const char *v = cli_flag_value(argc, argv, flag);
    if (!v) return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 1 || x > (1 << 30)) fail("sprec bench: %s must be a positive integer, got '%s'", flag, v);
    return (int)x;
}

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

int cmd_bench(int argc, char **argv) {
    if (cli_has_flag(argc, argv, "--help")) {
        printf("usage: sprec bench [--name NAME] [--dim 256] [--layers 4] [--heads 4] [--kv-heads 4] [--ffn 688]\n"
               "                   [--vocab 8192] [--seq 256] [--batch 8] [--steps 5] [--warmup 2] [--threads N]\n"
               "                   [--loss-frac 0.5] [--device cpu|cuda]\n"
               "Times full SFT steps (forward, backward, AdamW) on random weights and tokens with the loss on\n"
               "the last --loss-frac of each sequence; prints one JSON object per result line.\n");
        return 0;
    }
    const char *name = cli_flag_value(argc, argv, "--name");
    const char *device = cli_flag_value(argc, argv, "--device");
    ModelConfig c = {0};
    c.dim = opt_int(argc, argv, "--dim", 256);
    c.n_layers = opt_int(argc, argv, "--layers", 4);
    c.n_heads = opt_int(argc, argv, "--heads", 4);
    c.n_kv_heads = opt_int(argc, argv, "--kv-heads", c.n_heads);
    c.head_dim = c.dim / c.n_heads;
    c.ffn_dim = opt_int(argc, argv, "--ffn", 688);
    c.vocab_size = opt_int(argc, argv, "--vocab", 8192);
    const int T = opt_int(argc, argv, "--seq", 256), B = opt_int(argc, argv, "--batch", 8);
    const int steps = opt_int(argc, argv, "--steps", 5), warmup = opt_int(argc, argv, "--warmup", 2);
    // the loss covers the last loss_frac of each sequence (a completion); 1 = every position
    const char *lf = cli_flag_value(argc, argv, "--loss-frac");
    const double loss_frac = lf ? atof(lf) : 0.5;
    if (!(loss_frac > 0 && loss_frac <= 1)) fail("sprec bench: --loss-frac must be in (0, 1], got '%s'", lf);
    c.max_seq_len = T;
    c.rope_theta = 10000; c.rms_eps = 1e-5f; c.tie_embeddings = 1;
    set_threads(opt_int(argc, argv, "--threads", omp_get_max_threads()));
    const Backend *be = backend_select(device ? device : "cpu");

    Model m;
    model_create(&m, &c, be);
    model_init_random(&m, 1, 0.02f);
    AdamW opt;
    adamw_create(&opt, &m, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0);
    Batch batch = {.B = B, .T = T};
    batch.tokens = xmalloc((size_t)B * T * sizeof(int));
    batch.mask = xcalloc((size_t)B * T, sizeof(float));
    batch.lengths = xmalloc((size_t)B * sizeof(int));
    Rng r;
    rng_seed(&r, 7);
    double mask_sum = 0;
    for (int b = 0; b < B; b++) {
        batch.lengths[b] = T;
        for (int t = 0; t < T; t++) {
            batch.tokens[b * T + t] = (int)rng_below(&r, (uint64_t)c.vocab_size);
            if (t >= 1 && t >= T - (int)(loss_frac * T)) { batch.mask[b * T + t] = 1; mask_sum += 1; }
        }
    }
    float *w = xmalloc((size_t)B * T * sizeof(float));
    double *times = xmalloc((size_t)steps * sizeof(double)), elapsed = 0, loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_zero_grad(&m);
        int n = model_forward(&m, &batch, 0);
        loss = 0;
        for (int i = 0; i < n; i++) { w[i] = (float)(1.0 / mask_sum); loss -= w[i] * m.head_lp[i]; }
        model_backward(&m, w);
        adamw_step(&opt, &m, 1e-4f);
        if (s >= warmup) { times[s - warmup] = now_seconds() - t0; elapsed += times[s - warmup]; }
    }
    // the median step is the headline (shared machines have outliers); the mean is reported too
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    const double median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    const double C = c.dim, QD = (double)c.n_heads * c.head_dim, KVD = (double)c.n_kv_heads * c.head_dim;
    const double layer_w = C * QD + 2 * C * KVD + QD * C + 3 * C * c.ffn_dim;
    const double flops_tok = 6 * (layer_w * c.n_layers + (double)c.vocab_size * C) + 6.0 * c.n_layers * T * QD;
    const double tokens = (double)B * T;   // per step
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"name\": \"%s\", \"impl\": \"sprec\", \"device\": \"%s\", \"threads\": %d, \"dim\": %d, \"layers\": %d, "
           "\"heads\": %d, \"kv_heads\": %d, \"ffn\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, \"loss_frac\": %.3f, "
           "\"tokens_per_s\": %.1f, \"ms_per_step\": %.2f, \"ms_per_step_mean\": %.2f, \"ms_per_step_min\": %.2f, "
           "\"peak_bytes\": %ld, \"gflops\": %.2f, \"mfu\": null, \"final_loss\": %.6f}\n",
           name ? name : "sft_step", be->name, omp_get_max_threads(), c.dim, c.n_layers, c.n_heads, c.n_kv_heads,
           c.ffn_dim, c.vocab_size, T, B, loss_frac, tokens / median, 1e3 * median, 1e3 * elapsed / steps, 1e3 * times[0],
           ru.ru_maxrss * 1024L, flops_tok * tokens / median / 1e9, loss);
    printf("{\"name\": \"sgemm_1024\", \"impl\": \"openblas\", \"device\": \"cpu\", \"threads\": %d, "
           "\"tokens_per_s\": null, \"ms_per_step\": null, \"peak_bytes\": null, \"gflops\": %.2f, \"mfu\": null}\n",
           omp_get_max_threads(), sgemm_gflops(1024, 10));
    free(w); free(times); batch_free(&batch);
    adamw_free(&opt, &m);
    model_free(&m);
    return 0;
}
