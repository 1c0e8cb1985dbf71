// What every trainer (SFT, DPO, SPRec) does first: choose the backend, read
// the [lora] settings, prepare the run folder, and create the policy model from
// the resumed checkpoint, train.init or [model], with LoRA enabled before any
// weights load (so the optimizer created after holds adapter moments only).
// And what every training loop does after each step: train_loop_step.
#ifndef SPREC_TRAIN_RUN_H
#define SPREC_TRAIN_RUN_H

#include <stdio.h>
#include "io/config.h"
#include "model/lora.h"
#include "model/optimizer.h"
#include "io/checkpoint.h"

// The backend of run.device with run.threads OpenMP threads, the test fault
// switch read (base/fault.h: a malformed SPREC_FAULT fails here, before any
// work), and SIGUSR1 caught: from here on it only sets a flag that
// train_signal_stop reads (docs/training.md "Signals").
const Backend *train_start(const Config *cfg);
// The [lora] section as a LoraConfig; targets parsed and validated when enabled.
LoraConfig train_lora_config(const Config *cfg);
// Creates out_dir and locks it for this process (rank 0 only: an advisory
// flock on OUT/.lock, which holds the pid, kept until the process ends; a
// folder another run holds is refused at once, naming that run's pid), writes
// OUT/checkpoint.h5 into ckpt_path, and refuses --resume without a checkpoint
// or a fresh run over an existing one.
void train_prepare_run_dir(const char *out_dir, int resume, char *ckpt_path, size_t cap);
// Creates the model with the config of its source and enables LoRA when
// [lora] enabled. Returns the source checkpoint (NULL = random init follows).
const char *train_create_model(const Config *cfg, const Backend *be, const LoraConfig *lc, const char *ckpt_path,
                               int resume, Model *m);
// A resumed checkpoint must have LoRA adapters exactly when [lora] enabled.
void train_check_resume_lora(const char *ckpt_path, int lora_enabled);
// Fresh run: load the starting checkpoint (a LoRA one with LoRA off is merged
// and all weights train) or initialise randomly, then create the optimizer (a
// ZeRO-1 one takes its shard of the weights as they now are).
void train_load_start(const Config *cfg, const char *source, const char *stage, Model *m, AdamW *opt);
// A fresh AdamW over what m trains, with the [train] hyperparameters.
void train_optimizer(const Config *cfg, Model *m, AdamW *opt);
// The start of the SFT and DPO trainers, in order: the model
// (train_create_model, then the resume LoRA check), a TrainState of `stage`
// whose rng holds the generator seeded with `seed` (the key named seed_key
// decides the run's data order), then either the optimizer and the resumed
// checkpoint into both (which must be a `stage` run with that seed), or the
// starting weights and the optimizer (train_load_start). Returns the source checkpoint as
// train_create_model does.
const char *train_begin(const Config *cfg, const Backend *be, const LoraConfig *lc, const char *ckpt_path,
                        int resume, const char *stage, uint64_t seed, const char *seed_key, Model *m, AdamW *opt,
                        TrainState *st);
// Under several ranks (base/dist.h) rank 0 alone writes the run folder: the
// functions below write nothing on the other ranks (their logs are NULL), which
// still take part in every step.
// The run's settings. Fresh run (resume 0): writes out_dir/config.ini (the
// resolved config, so a run can be repeated). Resume: compares the settings
// that determine the run (config_diff) with that file and refuses a difference
// with one line listing them, unless resume = TRAIN_RESUME_ACCEPT (train.h):
// then config.ini stays as it was and the new settings go to
// out_dir/config-resume-N.ini (the first free N), their differences in its
// first line and on stdout.
void train_record_config(const Config *cfg, int resume);
// Rewrites the log at path (atomically) keeping the lines keep() accepts;
// nothing happens when the file does not exist. Resumes use it to drop the
// lines of work a crash left unfinished.
void train_filter_log(const char *path, int (*keep)(const char *line, size_t len, const void *arg), const void *arg);
// Opens out_dir/NAME for the run's log lines: appended to on resume, else new;
// NULL on ranks other than 0. On resume with keep_step >= 0 (the resumed
// checkpoint's step), the lines of later steps are dropped first (atomically):
// a run killed after a step it did not checkpoint redoes that step, so its line
// is written once. keep_step < 0 leaves the file as it is (SPRec filters its own
// by iteration and stage).
FILE *train_open_log(const Config *cfg, const char *name, int resume, long keep_step);

// run.tensorboard: the log lines again as TensorBoard events in
// out_dir/tensorboard/ (io/tensorboard.h); NULL when off and on ranks other than 0.
typedef struct TrainTb TrainTb;
TrainTb *train_open_tb(const Config *cfg);
// Every number of a one-object JSON line (a log or metrics line) but "step" and
// "iteration", as the scalar PREFIX/KEY at `step`. tb may be NULL (nothing).
void train_tb_json(TrainTb *tb, const char *prefix, long step, const char *json);
void train_tb_close(TrainTb *tb);

// A training loop as its step tail sees it: the SFT and DPO trainers fill
// every field; the SPRec loop's stages (checkpointed per stage, not per step)
// leave ckpt_path NULL and total, stop_at, ckpt_every 0.
typedef struct {
    const char *name;        // "sft", "dpo", "sprec.sft", "sprec.dpo": message prefix and fault site
    FILE *log;               // train_log.jsonl (train_open_log; NULL on ranks other than 0)
    const char *ckpt_path;   // run.out_dir/checkpoint.h5, or NULL: no checkpoint per step
    Model *m;                // what a checkpoint holds ...
    const AdamW *opt;
    const TrainState *st;    // ... st->step = the step just done
    int total;               // the run's last step
    int stop_at;             // --stop-at STEP, 0 = none
    int ckpt_every;          // [train] ckpt_every, 0 = only at the end
    TrainTb *tb;             // train_open_tb: each log line also as TensorBoard scalars NAME/KEY, plus
                             // NAME/steps_per_s and (with tokens) NAME/tokens_per_s; NULL = none
    const long *tokens;      // tokens trained so far (for tokens_per_s), or NULL
} TrainLoop;

// A collective (every rank calls it at the same points): whether any rank has
// got SIGUSR1 so far. When one has, the run stops at this point, after its
// checkpoint, and train_exit_status (train.h) becomes TRAIN_EXIT_RESUMABLE.
int train_signal_stop(void);

// Whether st->step ends the run: total or --stop-at.
int train_loop_last(const TrainLoop *l);
// The end of step st->step: its log line (printf-style, one JSON object; the
// newline is added), a checkpoint every ckpt_every steps and at the last (the
// log flushed first, so it never lags the checkpoint), the fault point `name`
// (docs/testing.md), then SIGUSR1 (with a ckpt_path: train_signal_stop; the
// checkpoint of this step is written if it was not, and one line says so), then
// --stop-at. Returns 1 when the run stops here.
int train_loop_step(const TrainLoop *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// After the loop: closes the log (and tb), switches LoRA dropout off and prints
// where the checkpoint is.
void train_loop_end(const TrainLoop *l);

#endif
