// sprec bench, split by mode (host/cli/cmd_bench.c parses the flags and
// calls one bench_MODE): the shared setup, the result lines' common fields
// (bench_report.c) and the modes (bench_train.c: sft, forward, dpo;
// bench_kernels.c: logprob, attention; bench_generate.c; bench_iteration.c).
// Every mode prints JSON lines on stdout (bench/README.md, docs/PERFORMANCE.md).
#ifndef SPREC_BENCH_H
#define SPREC_BENCH_H

#include "base/dist/dist.h"
#include "base/rng.h"
#include "model/model.h"
#include "model/optimizer.h"

typedef struct {
    const char *name, *mode;
    ModelConfig c;
    int T, B, steps, warmup;
    int micro, zero;   // sft: rows per micro-batch (the step's share unit over the ranks); ZeRO-1
    double loss_frac;
    const Backend *be;
} Bench;

// the modes
void bench_sft(Bench *bn);
void bench_forward(Bench *bn);
void bench_dpo(Bench *bn);
void bench_logprob(Bench *bn, int N);
void bench_attention(Bench *bn, int NH, int NKV, int D, int ragged);
void bench_generate(Bench *bn, int P, int W, int items, int Lp);
void bench_iteration(Bench *bn, const char *device, int threads, int P, int W, int items, int Lp);

// ---- shared by the modes (bench_report.c; comments at the definitions) ----
typedef struct { double median, mean, min; } Stats;
Stats stats_of(double *times, int steps);   // sorts times
void device_sync(const Backend *be, const void *dev);
long host_peak_bytes(void);
long host_current_bytes(void);
int gpu_peak_bf16(const char *name, double *bf16);
const char *storage_name(const Backend *be);
void print_head(const Bench *b);
void print_tail(const Backend *be, const Stats *st, double tokens, double flops, long peak_dev, long extra);
void print_sgemm_line(void);
int stdout_aside(void);
void stdout_back(int saved);
// Where the timed part began: the communication counters, the CPU seconds
// (user + system, every thread) and the clock of this rank.
typedef struct { DistCounters dist; double cpu_s, wall_s; } RankMark;
RankMark rank_mark(void);
char *rank_fields(const Bench *bn, const RankMark *before, int steps, long opt_steps, double step_s);
double flops_per_token(const ModelConfig *c, int T);
double linear_params(const ModelConfig *c);
void random_batch(Batch *batch, int B, int T, int V, double loss_frac, Rng *r, double *mask_sum);
void bench_train_model(const Bench *bn, Model *m, AdamW *opt);

// ---- the random catalogue (bench_generate.c), also the iteration's world ----
enum { TITLE_MIN = 4, TITLE_MAX = 12 };   // content tokens per title, plus the end token
int make_catalogue(int items, int V, int P, int Lp, int ***seqs_out, int **lens_out, int ***prompts_out);

#endif
