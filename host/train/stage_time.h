// Where an SPRec iteration's time goes: the wall time of each stage with its
// tokens and model FLOPs (bench/README.md, "Stage FLOPs"), logged as one line
// per iteration to OUT/stage_times.jsonl and printed. A separate file, not
// train_log.jsonl or metrics.jsonl: times differ from run to run, and those two
// files are byte-identical between a resumed and an uninterrupted run.
#ifndef SPREC_STAGE_TIME_H
#define SPREC_STAGE_TIME_H

#include <stdio.h>
#include "model/model.h"
#include "rec/recdata.h"

typedef enum { STAGE_NEGATIVES, STAGE_SFT, STAGE_REFERENCE, STAGE_DPO, STAGE_EVAL, N_STAGES } Stage;
extern const char *const STAGE_NAMES[N_STAGES];   // "negatives", "sft", ...: the log's key prefixes

typedef struct {
    double start;                                // the iteration's start (stage_clock_reset)
    double t0, flops0, tokens0;                  // the open stage's start: clock, model work counters
    double seconds[N_STAGES], tokens[N_STAGES], flops[N_STAGES];
    int ran[N_STAGES];                           // 0: skipped (a resumed iteration)
} StageClock;

// Starts an iteration: no stage ran yet, its wall clock starts now.
void stage_clock_reset(StageClock *k);
// Opens a stage: the clock and m's work counters (model.h work_flops) now.
void stage_begin(StageClock *k, const Model *m);
// Closes stage s: its wall time, and the tokens and FLOPs m's forward and
// backward passes did since stage_begin (the SFT, reference and DPO stages).
void stage_end(StageClock *k, Stage s, const Model *m);
// Adds the work of a decoding stage (negatives, evaluation), whose KV-cache
// steps the model's counters do not see, to stage s before its stage_end:
// tokens = the prompts' tokens plus the output tokens, FLOPs = the forward FLOP
// floor 2 * (all linear weights, head included) * (prompt tokens + beams *
// output tokens), over the number of ranks (each decodes its share). The
// prompts are rows[i] of split, i < n (rows NULL: its first n rows, as
// evaluation takes them; n <= 0 or past the end: all); the output tokens those of
// the items out[0..n_out) (NULL: n rows of the catalogue's mean title length).
void stage_add_decode(StageClock *k, Stage s, const Model *m, const RecData *d, int split, const int *rows, int n,
                      const int *out, int n_out, int beams);
// One JSON line {"iteration": t, "<stage>_s": ..., "<stage>_tokens_per_s": ...,
// "<stage>_gflops": ..., ..., "total_s": ..., "wall_s": ...} to f (when not
// NULL) and a one-line summary to stdout; the stages that did not run are left
// out. total_s: the stages' sum; wall_s: since stage_clock_reset (what the
// stages leave out: drawing prompts, the stage checkpoints).
void stage_clock_log(const StageClock *k, FILE *f, int iteration);

#endif
