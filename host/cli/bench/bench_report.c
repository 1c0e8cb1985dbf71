// sprec bench: what every mode shares: step statistics, memory, the result
// lines' common fields (head, tail, the ranks' fields), the benchmarked model.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <cblas.h>
#include <omp.h>
#include "bench.h"
#include "base/progress.h"
#include "kernels/errors.h"

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
void device_sync(const Backend *be, const void *dev) {
    float x;
    be->download(&x, dev, sizeof x);
}

// ---- timing, memory, peaks ----------------------------------------------------------

Stats stats_of(double *times, int steps) {
    Stats s = {0, 0, 0};
    for (int i = 0; i < steps; i++) s.mean += times[i] / steps;
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    s.median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    s.min = times[0];
    return s;
}

long host_peak_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

long host_current_bytes(void) {
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
int gpu_peak_bf16(const char *name, double *bf16) {
    static const struct { const char *key; double bf16; } table[] = {
        {"H200", 989.4}, {"H100", 989.4}, {"A100", 312.0}};
    if (!name || strstr(name, "PCIe")) return 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(name, table[i].key)) { *bf16 = table[i].bf16; return 1; }
    return 0;
}

// The activation storage of the run, for the result lines: "fp32" or "bf16".
const char *storage_name(const Backend *be) { return be->act_bytes == 2 ? "bf16" : "fp32"; }

// The fields every mode ends its line with, after its own ones. flops: model
// FLOPs per step (0: gflops and mfu null); tokens: tokens per step.
void print_tail(const Backend *be, const Stats *st, double tokens, double flops, long peak_dev, long extra) {
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
            printf("\"mfu\": %.4f, \"peak_tflops_bf16\": %.1f}\n",   // per GPU: the job's rate over its ranks
                   flops / st->median / dist_world()->world / (bf16 * 1e12), bf16);
        else
            printf("\"mfu\": null, \"peak_tflops_bf16\": null}\n");
    } else {
        printf("\"mfu\": null}\n");
    }
    fflush(stdout);
}

// The engine's own progress lines (the trainer's, ZeRO's) go to stderr: stdout stays JSON lines.
int stdout_aside(void) {
    fflush(stdout);
    const int saved = dup(1);
    dup2(2, 1);
    return saved;
}
void stdout_back(int saved) {
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
}

// ---- ranks (under mpirun / srun: base/dist/dist.h) ----------------------------------------

// This rank's peak memory: the device allocator's peak on a backend that keeps
// one ("device"), else the process's peak resident set ("rss").
static long rank_peak_bytes(const Backend *be, const char **kind) {
    *kind = backend_supports(be, BACKEND_MEM_STATS) ? "device" : "rss";
    if (!backend_supports(be, BACKEND_MEM_STATS)) return host_peak_bytes();
    BackendMemStats ms;
    be->mem_stats(&ms);
    return (long)ms.peak;
}

RankMark rank_mark(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (RankMark){dist_counters(), ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
                                       1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec), now_seconds()};
}

// The fields of a line that ran over the ranks (a collective: every rank calls
// it; only rank 0's stdout is kept), without the braces: ranks, zero, comm_s =
// the seconds a rank waited in collectives per step (the ranks' mean; imbalance
// included), comm_share = the ranks' mean of (a rank's waits / its own timed
// span: each rank's clock, so at most 1), allreduce_bytes_per_step
// = the gradient bytes summed per optimizer step, cpu_s_per_step = the CPU seconds
// of all ranks per step and cores_used = that / step_s (what the machine gave
// the job), and every rank's peak memory. before = rank_mark() when the timed
// part began; it held `steps` steps and `opt_steps` optimizer steps. Returns a
// malloc'd string.
char *rank_fields(const Bench *bn, const RankMark *before, int steps, long opt_steps, double step_s) {
    const Dist *d = dist_world();
    const RankMark now = rank_mark();
    const DistCounters after = now.dist;
    const double waited = after.waited_s - before->dist.waited_s, span = now.wall_s - before->wall_s;
    double x[3] = {waited / steps, (now.cpu_s - before->cpu_s) / steps, span > 0 ? waited / span : 0};
    dist_sum_host(d, x, 3);
    const double comm = x[0] / d->world, cpu = x[1], share = x[2] / d->world;
    const char *kind;
    long *peaks = xcalloc((size_t)d->world, sizeof(long));
    peaks[d->rank] = rank_peak_bytes(bn->be, &kind);
    dist_gather(d, peaks, sizeof(long), d->rank, d->rank + 1, d->world);
    const size_t cap = 512 + 24 * (size_t)d->world;
    char *out = xmalloc(cap);
    size_t k = (size_t)snprintf(out, cap, "\"ranks\": %d, \"zero\": %d, \"comm_s\": %.6f, \"comm_share\": %.4f, "
                                "\"allreduce_bytes_per_step\": %.0f, \"cpu_s_per_step\": %.6f, \"cores_used\": %.3f, "
                                "\"peak_kind\": \"%s\", \"peak_bytes_per_rank\": [",
                                d->world, bn->zero, comm, share,
                                opt_steps > 0 ? (after.summed_bytes - before->dist.summed_bytes) / opt_steps : 0.0,
                                cpu, step_s > 0 ? cpu / step_s : 0, kind);
    for (int r = 0; r < d->world; r++) k += (size_t)snprintf(out + k, cap - k, "%s%ld", r ? ", " : "", peaks[r]);
    snprintf(out + k, cap - k, "]");
    free(peaks);
    return out;
}

double flops_per_token(const ModelConfig *c, int T) {
    const double C = c->dim, QD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    const double layer_w = C * QD + 2 * C * KVD + QD * C + 3 * C * c->ffn_dim;
    return 6 * (layer_w * c->n_layers + (double)c->vocab_size * C) + 6.0 * c->n_layers * T * QD;
}

double linear_params(const ModelConfig *c) {
    const double C = c->dim, QD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    return (C * QD + 2 * C * KVD + QD * C + 3 * C * c->ffn_dim) * c->n_layers + (double)c->vocab_size * C;
}

void print_head(const Bench *b) {
    printf("{\"name\": \"%s\", \"impl\": \"sprec\", \"mode\": \"%s\", \"device\": \"%s\", \"threads\": %d, "
           "\"dim\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"ffn\": %d, \"vocab\": %d, ",
           b->name, b->mode, b->be->name, omp_get_max_threads(), b->c.dim, b->c.n_layers, b->c.n_heads,
           b->c.n_kv_heads, b->c.ffn_dim, b->c.vocab_size);
}

// [B, T] random tokens, full length, mask on the last loss_frac of each row (t >= 1)
void random_batch(Batch *batch, int B, int T, int V, double loss_frac, Rng *r, double *mask_sum) {
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
void bench_train_model(const Bench *bn, Model *m, AdamW *opt) {
    model_create(m, &bn->c, bn->be);
    model_init_random(m, 1, 0.02f);
    const int saved = stdout_aside();   // (ZeRO's line)
    adamw_create_zero(opt, m, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0, bn->zero);
    stdout_back(saved);
}

// The machine's own sgemm rate, measured in the same process right after a
// step's timing: the yardstick the step's GFLOP/s is read against.
void print_sgemm_line(void) {
    printf("{\"name\": \"sgemm_1024\", \"impl\": \"openblas\", \"device\": \"cpu\", \"threads\": %d, "
           "\"tokens_per_s\": null, \"ms_per_step\": null, \"peak_bytes\": null, \"gflops\": %.2f, \"mfu\": null}\n",
           omp_get_max_threads(), sgemm_gflops(1024, 10));
}
