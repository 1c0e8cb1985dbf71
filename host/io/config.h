// Experiment configuration: INI files (inih) with [model] [train] [data] [run]
// sections, every key with a documented default, and --section.key=value
// command-line overrides. Unknown keys and bad values are errors naming file:line.
#ifndef SPREC_CONFIG_H
#define SPREC_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include "model/model.h"

#define CONFIG_PATH_MAX 1024

typedef struct {
    ModelConfig model;
    float init_std;              // model.init_std
    uint64_t init_seed;          // model.seed

    struct {
        char method[8];               // sft | dpo | sprec
        char init[CONFIG_PATH_MAX];   // checkpoint to start from ("" = random init)
        float lr, min_lr;             // peak and final learning rate
        int warmup_steps;
        char schedule[16];            // constant | linear | cosine
        int max_steps;                // optimizer steps; 0 = derive from epochs
        int epochs;
        int batch_size;               // rows per micro-batch
        int grad_accum;               // micro-batches per optimizer step
        float weight_decay, beta1, beta2, eps, grad_clip;   // grad_clip 0 = off
        int decay_norms;              // also decay norm weights and biases
        int zero;                     // ZeRO stage: 0 = replicated optimizer, 1 = moments sharded over ranks
        uint64_t seed;                // data order
        int log_every, ckpt_every;    // steps; ckpt_every 0 = only at the end
    } train;

    struct {
        char train[CONFIG_PATH_MAX];  // tokenized dataset (HDF5, docs/formats.md)
        int shuffle;
        int completion_eos;           // DPO: append the model's EOS token to chosen and rejected completions
        // sprec prepare (docs/recdata.md)
        char source[16];              // goodreads | movielens | synthetic
        char dir[CONFIG_PATH_MAX];    // source folder ("" = data/goodreads or data/movielens-small)
        char dataset[CONFIG_PATH_MAX];   // the prepared recommendation dataset (HDF5)
        char tokenizer[CONFIG_PATH_MAX]; // checkpoint or tokenizer.json ("" = text only)
        uint64_t seed;                // split and synthetic generator
        int train_rows, valid_rows, test_rows;   // train 0 = all the rest
        int history;                  // titles per prompt (movielens, synthetic)
        int synth_items, synth_users, synth_genres;
        float synth_zipf;             // popularity exponent
    } data;

    struct {
        char split[8];                // train | valid | test: the group of data.dataset trained on
        char loss_on[16];             // completion (the file's mask) | all (every position t >= 1)
    } sft;

    struct {                          // DPO trainer (docs/training.md)
        float beta;
        char negatives[16];           // random | popular | self
        int n_pairs;                  // 0 = every train row
        uint64_t seed;                // row sample and random/popular negatives
        int log_every;                // 0 = train.log_every
        int beams;                    // self negatives: beam width (>= 2)
        char weighting[8];            // none | spdpo (several self negatives per prompt, weighted)
        int spdpo_k;                  // spdpo: negatives per prompt
        char spdpo_batch[8];          // spdpo: the batch counts pairs | prompts (each with its k pairs)
        // the DPO trainer's optimisation (-1, schedule "train": [train]'s value); config_stage resolves them
        float lr, min_lr;
        char schedule[16];
        int warmup_steps, max_steps, epochs, batch_size, grad_accum;
    } dpo;

    struct {                          // SPRec self-play loop (docs/training.md)
        int iterations;               // T
        int n;                        // prompts per iteration
        float sft_lr, dpo_lr;
        uint64_t seed;
        int eval_rows;                // 0 = eval.max_rows
        int eval_valid;               // also evaluate the valid split each iteration
        int eval_sft;                 // also evaluate the model after each SFT stage (label sprec-sft)
        // each stage's schedule and batch (batch_size, grad_accum -1: [train]'s); config_stage resolves them
        float sft_min_lr, dpo_min_lr;
        char sft_schedule[16], dpo_schedule[16];
        int sft_warmup_steps, dpo_warmup_steps, sft_epochs, dpo_epochs;
        int sft_batch_size, dpo_batch_size, sft_grad_accum, dpo_grad_accum;
    } sprec;

    struct {
        int enabled;                  // train LoRA adapters (base frozen) instead of all weights
        int rank;
        float alpha, dropout;
        char targets[64];             // "q,k,v,o,gate,up,down" (any subset) or "all"
        uint64_t seed;                // adapter init and dropout masks
    } lora;

    struct {
        char device[16];              // cpu | cpu-checked | cpu-bf16 | cuda (kernels/registry.c)
        char out_dir[CONFIG_PATH_MAX];
        int threads;                  // 0 = OpenMP default
        int tensorboard;              // also write TensorBoard event files (io/tensorboard.h)
    } run;

    struct {                          // ranks (docs/cluster.md)
        float timeout_s;              // watchdog on every collective; 0 = wait forever
        float bucket_mb;              // gradient sums in buckets of this size
        float heartbeat_s;            // a rank silent this long ends the job; 0 = never
        int overlap;                  // gradient sums start during the backward
    } dist;

    struct {                          // sprec eval (docs/eval.md)
        char model[CONFIG_PATH_MAX];  // checkpoint to evaluate
        char split[8];                // test | valid
        char ks[64];                  // "1,5,10"
        int mode;                     // EvalMode (host/rec/evaluate.h): 0 constrained, 1 unconstrained, 2 paper
        char encoder[CONFIG_PATH_MAX];   // paper mode: sentence-encoder checkpoint
        int beams;                    // beam width (at least max K is used)
        int batch;                    // prompts per generate() call
        int max_rows;                 // 0 = every row of the split
        char out_dir[CONFIG_PATH_MAX];   // "" = run.out_dir
        char label[64];               // label of the metrics.jsonl line
    } eval;
} Config;

// The optimisation of one training stage as it runs: the initial SFT
// ([train]), the DPO trainer ([dpo], -1 = [train]'s), SPRec's SFT and DPO
// stages ([sprec] sft_* / dpo_*, one pass over the iteration's rows each epoch).
typedef enum { TRAIN_STAGE_SFT, TRAIN_STAGE_DPO, TRAIN_STAGE_SPREC_SFT, TRAIN_STAGE_SPREC_DPO } TrainStage;
typedef struct {
    const char *name;                 // "sft", "dpo", "sprec.sft", "sprec.dpo" (log lines, fault sites)
    float lr, min_lr;
    const char *schedule;             // constant | linear | cosine (lr_at)
    int warmup_steps;
    int batch_size, grad_accum;       // rows (pairs) per micro-batch, micro-batches per step
    int epochs, max_steps;            // max_steps 0 = epochs x steps per epoch
} StageOpt;
StageOpt config_stage(const Config *c, TrainStage s);
// Optimizer steps of a stage over `rows` rows (pairs; SPDPO with spdpo_batch =
// prompts: prompts): max_steps, or epochs x ceil(rows / (batch_size x grad_accum)).
int stage_steps(const StageOpt *o, long rows);

void config_defaults(Config *c);
// Parse an INI file into c (on top of whatever c holds). Exits with
// "FILE:LINE: ..." on unknown sections/keys or malformed values.
void config_load(Config *c, const char *path);
// Same for INI text in memory (config_write_settings's, from a checkpoint); name stands for the file in errors.
void config_load_text(Config *c, const char *text, const char *name);
// Apply one "section.key=value" override (without the leading "--").
// Returns 0 if arg does not look like an override (no '.' before '='), 1 if applied;
// exits on an unknown key or a bad value.
int config_override(Config *c, const char *arg);
// Fill in derived values: head_dim = dim / n_heads when head_dim is 0.
// Idempotent; config_validate calls it.
void config_resolve(Config *c);
// Call once after the file and all overrides are applied: resolves derived
// values (config_resolve), then checks every value's range and the cross-field
// constraints (model_config_validate, min_lr <= lr, ...); fails naming `where`.
void config_validate(Config *c, const char *where);
// Write the resolved configuration as an INI file (every key).
void config_write(const Config *c, FILE *f);
// Only the keys that determine a run (those config_diff compares), the record a checkpoint keeps.
void config_write_settings(const Config *c, FILE *f);
// config_write's text (settings_only: config_write_settings's) in memory, malloc'd, its length in *len (NULL: not wanted).
char *config_text(const Config *c, int settings_only, size_t *len);
// Under several ranks: every rank's resolved config (config_write's text) must be
// rank 0's; otherwise one line naming the rank and the first differing key, exit 1.
void config_check_ranks(const Config *c);
// The keys that determine a run (all but logging, paths, threads and sprec
// prepare's keys) whose values differ between was and now: returns how many,
// out = "train.lr = 0.001 (the run: 0.0003), ..." (as much as fits in cap).
int config_diff(const Config *was, const Config *now, char *out, size_t cap);
// Print every key with its default and one-line description (for --help).
void config_print_help(FILE *f);

#endif
