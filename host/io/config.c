// INI configuration. One table (KEYS) lists every key with its type, place in
// Config, default and description; defaults, parsing, overrides, writing, help
// and validation are all loops over it, so a new key is one line.
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <ini.h>
#include "config.h"
#include "model/lora.h"
#include "base/dist/dist.h"
#include "kernels/errors.h"

typedef enum { K_INT, K_U64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_ENUM_INT } KeyType;

typedef struct {
    const char *section, *key;
    KeyType type;
    size_t off, size;        // where the value lives in Config; size = capacity for strings
    const char *def;         // default, as written in an INI file
    const char *choices;     // enums: "a|b|c"; K_ENUM stores the text, K_ENUM_INT the index
    double lo, hi;           // inclusive range for numbers
    const char *help;
} Key;

#define FIELD(f) offsetof(Config, f), sizeof(((Config *)0)->f)
#define KINT(s, k, f, d, lo, h)        { s, k, K_INT, FIELD(f), d, NULL, lo, INT_MAX, h }
#define KFLT(s, k, f, d, lo, hi, h)    { s, k, K_FLOAT, FIELD(f), d, NULL, lo, hi, h }
#define KU64(s, k, f, d, h)            { s, k, K_U64, FIELD(f), d, NULL, 0, 0, h }
#define KBOOL(s, k, f, d, h)           { s, k, K_BOOL, FIELD(f), d, NULL, 0, 0, h }
#define KSTR(s, k, f, d, h)            { s, k, K_STR, FIELD(f), d, NULL, 0, 0, h }
#define KENUM(s, k, f, d, ch, h)       { s, k, K_ENUM, FIELD(f), d, ch, 0, 0, h }
#define KENUMI(s, k, f, d, ch, h)      { s, k, K_ENUM_INT, FIELD(f), d, ch, 0, 0, h }

static const Key KEYS[] = {
    KINT("model", "vocab_size", model.vocab_size, "256", 1, "vocabulary size (rows of the embedding)"),
    KINT("model", "dim", model.dim, "64", 1, "model width (hidden size)"),
    KINT("model", "n_layers", model.n_layers, "2", 1, "number of transformer blocks"),
    KINT("model", "n_heads", model.n_heads, "4", 1, "attention (query) heads"),
    KINT("model", "n_kv_heads", model.n_kv_heads, "2", 1, "key/value heads (grouped-query attention); divides n_heads"),
    KINT("model", "head_dim", model.head_dim, "0", 0, "width of one head; 0 = dim / n_heads"),
    KINT("model", "ffn_dim", model.ffn_dim, "172", 1, "hidden width of the SwiGLU MLP"),
    KINT("model", "max_seq_len", model.max_seq_len, "256", 1, "longest sequence (context length)"),
    KFLT("model", "rope_theta", model.rope_theta, "10000", 0, HUGE_VAL, "RoPE base frequency"),
    KFLT("model", "rms_eps", model.rms_eps, "1e-5", 0, HUGE_VAL, "RMSNorm epsilon"),
    KBOOL("model", "tie_embeddings", model.tie_embeddings, "true", "LM head shares the embedding matrix"),
    KBOOL("model", "qkv_bias", model.qkv_bias, "false", "q/k/v projections have biases (Qwen2-style)"),
    KENUMI("model", "rope_scaling", model.rope_scaling, "none", "none|llama3", "RoPE frequency scaling"),
    KFLT("model", "rope_factor", model.rope_factor, "8", 0, HUGE_VAL, "llama3 scaling: factor"),
    KFLT("model", "rope_low_freq_factor", model.rope_low_freq_factor, "1", 0, HUGE_VAL, "llama3 scaling: low_freq_factor"),
    KFLT("model", "rope_high_freq_factor", model.rope_high_freq_factor, "4", 0, HUGE_VAL, "llama3 scaling: high_freq_factor"),
    KINT("model", "rope_original_max_pos", model.rope_original_max_pos, "8192", 1,
         "llama3 scaling: original_max_position_embeddings"),
    KFLT("model", "init_std", init_std, "0.02", 0, HUGE_VAL, "random init: std of matrices and embeddings"),
    KU64("model", "seed", init_seed, "1234", "random init: seed"),

    KENUM("train", "method", train.method, "sft", "sft|dpo|sprec", "sprec train: sft = supervised fine-tuning; dpo = DPO on [dpo] pairs; sprec = the self-play loop ([sprec])"),
    KSTR("train", "init", train.init, "", "checkpoint to start from; empty = random init from [model]"),
    KFLT("train", "lr", train.lr, "3e-4", 0, HUGE_VAL, "peak learning rate"),
    KFLT("train", "min_lr", train.min_lr, "0", 0, HUGE_VAL, "learning rate at the end of the decay"),
    KINT("train", "warmup_steps", train.warmup_steps, "0", 0, "linear warm-up steps from 0 to lr"),
    KENUM("train", "schedule", train.schedule, "linear", "linear|constant|cosine", "decay from lr to min_lr after warm-up"),
    KINT("train", "max_steps", train.max_steps, "0", 0, "optimizer steps; 0 = epochs x steps per epoch"),
    KINT("train", "epochs", train.epochs, "1", 1, "passes over the data (when max_steps = 0)"),
    KINT("train", "batch_size", train.batch_size, "8", 1, "sequences per micro-batch"),
    KINT("train", "grad_accum", train.grad_accum, "1", 1, "micro-batches per optimizer step"),
    KFLT("train", "weight_decay", train.weight_decay, "0", 0, HUGE_VAL, "AdamW decoupled weight decay"),
    KFLT("train", "beta1", train.beta1, "0.9", 0, 1, "AdamW beta1 (below 1)"),
    KFLT("train", "beta2", train.beta2, "0.999", 0, 1, "AdamW beta2 (below 1)"),
    KFLT("train", "eps", train.eps, "1e-8", 0, HUGE_VAL, "AdamW epsilon (above 0)"),
    KFLT("train", "grad_clip", train.grad_clip, "1.0", 0, HUGE_VAL, "clip the global gradient norm to this; 0 = off"),
    KBOOL("train", "decay_norms", train.decay_norms, "false", "also apply weight decay to norm weights and biases"),
    KENUMI("train", "zero", train.zero, "0", "0|1", "ZeRO stage: 1 = the AdamW moments (and fp32 "
           "master weights where the compute copy is bf16) sharded across ranks (docs/SCALING.md)"),
    KU64("train", "seed", train.seed, "1234", "seed of the data order"),
    KINT("train", "log_every", train.log_every, "10", 1, "log every N optimizer steps"),
    KINT("train", "ckpt_every", train.ckpt_every, "0", 0, "checkpoint every N steps; 0 = only at the end"),

    KSTR("data", "train", data.train, "", "token file to train on (HDF5, docs/formats.md); empty = [data] dataset at [sft] split"),
    KBOOL("data", "shuffle", data.shuffle, "true", "shuffle the data order every epoch"),
    KBOOL("data", "completion_eos", data.completion_eos, "false",
          "DPO (trainer and SPRec stage): append the model's EOS token to chosen and rejected completions (the reference code)"),
    KENUM("data", "source", data.source, "synthetic", "synthetic|goodreads|movielens", "sprec prepare: where the rows come from"),
    KSTR("data", "dir", data.dir, "", "sprec prepare: source folder; empty = data/goodreads or data/movielens-small"),
    KSTR("data", "dataset", data.dataset, "data/synthetic.h5", "recommendation dataset written by sprec prepare (docs/recdata.md)"),
    KSTR("data", "tokenizer", data.tokenizer, "", "sprec prepare: checkpoint (.h5), tokenizer.json or .gguf; empty = text only"),
    KU64("data", "seed", data.seed, "42", "sprec prepare: seed of the split and of the synthetic generator"),
    KINT("data", "train_rows", data.train_rows, "0", 0, "sprec prepare: train rows; 0 = all rows not in valid/test"),
    KINT("data", "valid_rows", data.valid_rows, "500", 0, "sprec prepare: valid rows (goodreads, synthetic)"),
    KINT("data", "test_rows", data.test_rows, "500", 0, "sprec prepare: test rows (goodreads, synthetic)"),
    KINT("data", "history", data.history, "10", 1, "sprec prepare: titles per prompt (movielens, synthetic)"),
    KINT("data", "synth_items", data.synth_items, "200", 2, "synthetic: catalogue size"),
    KINT("data", "synth_users", data.synth_users, "2000", 1, "synthetic: users (one row each)"),
    KINT("data", "synth_genres", data.synth_genres, "6", 1, "synthetic: genres (at most 12)"),
    KFLT("data", "synth_zipf", data.synth_zipf, "1.0", 0, HUGE_VAL, "synthetic: Zipf exponent of item popularity"),

    KENUM("sft", "split", sft.split, "train", "train|valid|test", "split of data.dataset trained on (when data.train is empty)"),
    KENUM("sft", "loss_on", sft.loss_on, "completion", "completion|all",
          "completion = the dataset's mask; all = every position after the first (the reference code)"),

    KFLT("dpo", "beta", dpo.beta, "0.1", 0, HUGE_VAL, "DPO: strength of the implicit KL penalty (above 0)"),
    KENUM("dpo", "negatives", dpo.negatives, "random", "random|popular|self",
          "DPO: rejected item = uniform catalogue item | drawn by popularity | the starting model's recommendation"),
    KINT("dpo", "n_pairs", dpo.n_pairs, "0", 0, "DPO: pairs = this many seeded train rows; 0 = every train row"),
    KU64("dpo", "seed", dpo.seed, "1234", "DPO: seed of the row sample and of the random/popular negatives"),
    KINT("dpo", "log_every", dpo.log_every, "0", 0, "DPO: print the reward statistics every N steps; 0 = train.log_every"),
    KINT("dpo", "beams", dpo.beams, "2", 1, "self negatives: 1 = constrained greedy (a width-2 beam only for the rows where it is the chosen item); >= 2 = the best item of a beam of this width"),
    KENUM("dpo", "weighting", dpo.weighting, "none", "none|spdpo",
          "none = one negative per prompt; spdpo = the spdpo_k best self-generated items per prompt, each pair weighted by "
          "its normalised generation probability (method.md section 3; needs negatives = self, or method = sprec)"),
    KINT("dpo", "spdpo_k", dpo.spdpo_k, "3", 1, "dpo.weighting = spdpo: negatives per prompt"),
    KENUM("dpo", "spdpo_batch", dpo.spdpo_batch, "pairs", "pairs|prompts",
          "dpo.weighting = spdpo: what a batch counts: pairs (k times the steps of one negative) | prompts (each with its k pairs)"),
    KFLT("dpo", "lr", dpo.lr, "-1", -1, HUGE_VAL, "DPO trainer: peak learning rate; -1 = [train] lr"),
    KFLT("dpo", "min_lr", dpo.min_lr, "-1", -1, HUGE_VAL, "DPO trainer: learning rate at the end of the decay; -1 = [train] min_lr"),
    KENUM("dpo", "schedule", dpo.schedule, "train", "train|linear|constant|cosine", "DPO trainer: decay after warm-up; train = [train] schedule"),
    KINT("dpo", "warmup_steps", dpo.warmup_steps, "-1", -1, "DPO trainer: linear warm-up steps; -1 = [train] warmup_steps"),
    KINT("dpo", "max_steps", dpo.max_steps, "-1", -1, "DPO trainer: optimizer steps, 0 = epochs x steps per epoch; -1 = [train] max_steps"),
    KINT("dpo", "epochs", dpo.epochs, "-1", -1, "DPO trainer: passes over the pairs; -1 = [train] epochs"),
    KINT("dpo", "batch_size", dpo.batch_size, "-1", -1, "DPO trainer: pairs per micro-batch; -1 = [train] batch_size"),
    KINT("dpo", "grad_accum", dpo.grad_accum, "-1", -1, "DPO trainer: micro-batches per optimizer step; -1 = [train] grad_accum"),

    KINT("sprec", "iterations", sprec.iterations, "5", 1, "SPRec: self-play iterations T"),
    KINT("sprec", "n", sprec.n, "2048", 1, "SPRec: train prompts drawn per iteration (at most the train rows)"),
    KFLT("sprec", "sft_lr", sprec.sft_lr, "2e-5", 0, HUGE_VAL, "SPRec: peak learning rate of each iteration's SFT stage"),
    KFLT("sprec", "dpo_lr", sprec.dpo_lr, "2e-5", 0, HUGE_VAL, "SPRec: peak learning rate of each iteration's DPO stage"),
    KU64("sprec", "seed", sprec.seed, "1234", "SPRec: seed of the prompts drawn (mixed with the iteration number)"),
    KINT("sprec", "eval_rows", sprec.eval_rows, "0", 0, "SPRec: test (and valid) rows evaluated after each iteration; 0 = eval.max_rows"),
    KBOOL("sprec", "eval_valid", sprec.eval_valid, "true", "SPRec: also evaluate the valid split each iteration (run folder metrics-valid.jsonl)"),
    KBOOL("sprec", "eval_sft", sprec.eval_sft, "false", "SPRec: also evaluate the model after each SFT stage (metrics label sprec-sft)"),
    KENUM("sprec", "sft_schedule", sprec.sft_schedule, "constant", "constant|linear|cosine", "SPRec SFT stage: decay after warm-up"),
    KINT("sprec", "sft_warmup_steps", sprec.sft_warmup_steps, "0", 0, "SPRec SFT stage: linear warm-up steps"),
    KFLT("sprec", "sft_min_lr", sprec.sft_min_lr, "0", 0, HUGE_VAL, "SPRec SFT stage: learning rate at the end of the decay"),
    KINT("sprec", "sft_epochs", sprec.sft_epochs, "1", 1, "SPRec SFT stage: passes over the iteration's n positives"),
    KINT("sprec", "sft_batch_size", sprec.sft_batch_size, "-1", -1, "SPRec SFT stage: rows per micro-batch; -1 = [train] batch_size"),
    KINT("sprec", "sft_grad_accum", sprec.sft_grad_accum, "-1", -1, "SPRec SFT stage: micro-batches per step; -1 = [train] grad_accum"),
    KENUM("sprec", "dpo_schedule", sprec.dpo_schedule, "constant", "constant|linear|cosine", "SPRec DPO stage: decay after warm-up"),
    KINT("sprec", "dpo_warmup_steps", sprec.dpo_warmup_steps, "0", 0, "SPRec DPO stage: linear warm-up steps"),
    KFLT("sprec", "dpo_min_lr", sprec.dpo_min_lr, "0", 0, HUGE_VAL, "SPRec DPO stage: learning rate at the end of the decay"),
    KINT("sprec", "dpo_epochs", sprec.dpo_epochs, "1", 1, "SPRec DPO stage: passes over the iteration's pairs"),
    KINT("sprec", "dpo_batch_size", sprec.dpo_batch_size, "-1", -1, "SPRec DPO stage: pairs per micro-batch; -1 = [train] batch_size"),
    KINT("sprec", "dpo_grad_accum", sprec.dpo_grad_accum, "-1", -1, "SPRec DPO stage: micro-batches per step; -1 = [train] grad_accum"),

    KBOOL("lora", "enabled", lora.enabled, "false", "train LoRA adapters on a frozen base (false = full fine-tuning)"),
    KINT("lora", "rank", lora.rank, "16", 1, "adapter rank r"),
    KFLT("lora", "alpha", lora.alpha, "32", 0, HUGE_VAL, "scaling numerator: the adapter output is scaled by alpha / rank"),
    KFLT("lora", "dropout", lora.dropout, "0.05", 0, 1, "dropout on the adapter input while training (below 1)"),
    KSTR("lora", "targets", lora.targets, "q,k,v,o,gate,up,down", "adapted linear layers: any of q,k,v,o,gate,up,down, or all"),
    KU64("lora", "seed", lora.seed, "1234", "seed of the adapter initialisation and the dropout masks"),

    KENUM("run", "device", run.device, "cpu", "cpu|cpu-checked|cpu-bf16|cuda", "compute backend"),
    KSTR("run", "out_dir", run.out_dir, "runs/default", "run folder: logs, checkpoints, resolved config"),
    KINT("run", "threads", run.threads, "0", 0, "CPU threads; 0 = all cores (OpenMP default)"),
    KBOOL("run", "tensorboard", run.tensorboard, "false", "also write the train log and metrics as TensorBoard events (OUT/tensorboard/)"),

    KFLT("dist", "timeout_s", dist.timeout_s, "1800", 0, HUGE_VAL, "ranks: a collective that waits longer for a rank ends the job (0 = wait forever)"),
    KFLT("dist", "bucket_mb", dist.bucket_mb, "4", 0.001, HUGE_VAL, "ranks: gradient sums in pipelined buckets of this many MB"),
    KFLT("dist", "heartbeat_s", dist.heartbeat_s, "30", 0, HUGE_VAL, "ranks: a rank that sends no heartbeat this long (stopped, dead) ends the job (0 = never; else >= 1)"),
    KBOOL("dist", "overlap", dist.overlap, "true", "ranks: gradient sums start during the backward, bucket by bucket (false = after it)"),

    KSTR("eval", "model", eval.model, "", "sprec eval: checkpoint to evaluate (or --model)"),
    KENUM("eval", "split", eval.split, "test", "test|valid", "sprec eval: split whose rows are ranked"),
    KSTR("eval", "ks", eval.ks, "1,5,10", "sprec eval: cut-offs K, comma-separated"),
    KENUMI("eval", "mode", eval.mode, "constrained", "constrained|unconstrained|paper",
           "sprec eval: beam search over the catalogue trie, or greedy text grounded by L2 distance "
           "(unconstrained: the model's hidden states; paper: the sentence encoder [eval] encoder)"),
    KSTR("eval", "encoder", eval.encoder, "", "eval.mode = paper: the sentence-encoder checkpoint (sprec import)"),
    KINT("eval", "beams", eval.beams, "10", 1, "sprec eval: beam width (max(beams, max K) is used)"),
    KINT("eval", "batch", eval.batch, "16", 1, "sprec eval: prompts per batch (progress granularity)"),
    KINT("eval", "max_rows", eval.max_rows, "0", 0, "sprec eval: first N rows of the split only; 0 = all"),
    KSTR("eval", "out_dir", eval.out_dir, "", "sprec eval: output folder; empty = [run] out_dir"),
    KSTR("eval", "label", eval.label, "eval", "sprec eval: label of the metrics.jsonl line"),
};
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))
static const char *SECTIONS[] = {"model", "train", "data", "sft", "dpo", "sprec", "lora", "run", "eval", "dist"};
#define N_SECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

// ---- lookup ---------------------------------------------------------------

static int section_known(const char *s) {
    for (int i = 0; i < N_SECTIONS; i++) if (strcmp(SECTIONS[i], s) == 0) return 1;
    return 0;
}

static const Key *find_key(const char *section, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

// Edit distance (typos), on short strings only.
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

static int close_enough(const char *typo, const char *known, int *best) {
    int d = edit_distance(typo, known);
    int limit = strlen(known) <= 4 ? 1 : 2;
    if (d <= limit && d < *best) { *best = d; return 1; }
    return 0;
}

// "unknown section [trian] (did you mean [train]?)"
static void unknown_section_msg(char *buf, size_t cap, const char *section) {
    const char *hint = NULL;
    int best = 99;
    for (int i = 0; i < N_SECTIONS; i++) if (close_enough(section, SECTIONS[i], &best)) hint = SECTIONS[i];
    if (hint) snprintf(buf, cap, "unknown section [%s] (did you mean [%s]?)", section, hint);
    else snprintf(buf, cap, "unknown section [%s] (sections: [model] [train] [data] [sft] [dpo] [sprec] [lora] [run] [eval] [dist])", section);
}

// "unknown key 'lrr' in [train] (did you mean 'lr'?)", or the section the key belongs to.
static void unknown_key_msg(char *buf, size_t cap, const char *section, const char *key) {
    const Key *hint = NULL;
    int best = 99;
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(KEYS[i].key, key) == 0) {
            snprintf(buf, cap, "unknown key '%s' in [%s] (it belongs in [%s])", key, section, KEYS[i].section);
            return;
        }
        if (strcmp(KEYS[i].section, section) == 0 && close_enough(key, KEYS[i].key, &best)) hint = &KEYS[i];
    }
    if (hint) snprintf(buf, cap, "unknown key '%s' in [%s] (did you mean '%s'?)", key, section, hint->key);
    else snprintf(buf, cap, "unknown key '%s' in [%s] (keys: docs/config.md)", key, section);
}

// ---- values ---------------------------------------------------------------

static int choice_index(const char *choices, const char *v) {
    size_t n = strlen(v);
    int i = 0;
    for (const char *p = choices; ; i++) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return i;
        if (!e) return -1;
        p = e + 1;
    }
}

static size_t longest_choice(const char *choices) {
    size_t most = 0;
    for (const char *p = choices; p; p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL)
        if (strcspn(p, "|") > most) most = strcspn(p, "|");
    return most;
}

static void choice_name(const char *choices, int idx, char *buf, size_t cap) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) { p = strchr(p, '|'); if (p) p++; }
    size_t len = p ? strcspn(p, "|") : 0;
    snprintf(buf, cap, "%.*s", (int)len, p ? p : "");
}

static void range_msg(char *err, size_t cap, const Key *k) {
    int isint = k->type == K_INT;
    if (k->hi == HUGE_VAL || (isint && k->hi == INT_MAX)) snprintf(err, cap, "must be >= %g", k->lo);
    else snprintf(err, cap, "must be between %g and %g", k->lo, k->hi);
}

static int parse_bool(const char *v, int *out) {
    static const char *yes[] = {"true", "yes", "1", "on"}, *no[] = {"false", "no", "0", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 1; }
        if (strcasecmp(v, no[i]) == 0) { *out = 0; return 1; }
    }
    return 0;
}

// Parses text into k's field. Returns 1, or 0 with a short reason in err.
static int set_value(Config *c, const Key *k, const char *text, char *err, size_t cap) {
    void *p = (char *)c + k->off;
    char *end;
    errno = 0;
    switch (k->type) {
    case K_INT: {
        long v = strtol(text, &end, 10);
        if (!*text || isspace((unsigned char)*text) || *end) { snprintf(err, cap, "not an integer"); return 0; }
        if (errno == ERANGE || v < INT_MIN || v > INT_MAX) { snprintf(err, cap, "integer out of range"); return 0; }
        if (v < k->lo || v > k->hi) { range_msg(err, cap, k); return 0; }
        *(int *)p = (int)v;
        return 1;
    }
    case K_U64: {
        unsigned long long v = strtoull(text, &end, 10);
        if (!isdigit((unsigned char)*text) || *end) { snprintf(err, cap, "not an unsigned integer"); return 0; }
        if (errno == ERANGE) { snprintf(err, cap, "integer out of range (at most 2^64-1)"); return 0; }
        *(uint64_t *)p = (uint64_t)v;
        return 1;
    }
    case K_FLOAT: {
        double v = strtod(text, &end);
        if (!*text || isspace((unsigned char)*text) || *end) { snprintf(err, cap, "not a number"); return 0; }
        if (!isfinite(v) || fabs(v) > FLT_MAX) { snprintf(err, cap, "not a finite float32 number"); return 0; }
        if (v < k->lo || v > k->hi) { range_msg(err, cap, k); return 0; }
        *(float *)p = (float)v;
        return 1;
    }
    case K_BOOL:
        if (!parse_bool(text, (int *)p)) { snprintf(err, cap, "not a boolean (true/false, yes/no, 1/0)"); return 0; }
        return 1;
    case K_ENUM:
    case K_ENUM_INT: {
        int i = choice_index(k->choices, text);
        if (i < 0) { snprintf(err, cap, "must be one of %s", k->choices); return 0; }
        if (k->type == K_ENUM_INT) *(int *)p = i;
        else { memset(p, 0, k->size); strcpy(p, text); }   // choices fit: checked by config_defaults
        return 1;
    }
    case K_STR: {
        size_t n = strlen(text);
        if (n >= 2 && text[0] == '"' && text[n - 1] == '"') { text++; n -= 2; }   // "" = explicitly empty
        if (n >= k->size) { snprintf(err, cap, "too long (at most %zu characters)", k->size - 1); return 0; }
        for (size_t i = 0; i < n; i++)
            if (iscntrl((unsigned char)text[i])) { snprintf(err, cap, "contains a control character"); return 0; }
        memset(p, 0, k->size);   // zero tail: two equal configs compare equal byte for byte
        memcpy(p, text, n);
        return 1;
    }
    }
    return 0;
}

// Shortest text that reads back as exactly the same float.
static void format_float(char *buf, size_t cap, float v) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void format_value(const Config *c, const Key *k, char *buf, size_t cap) {
    const void *p = (const char *)c + k->off;
    switch (k->type) {
    case K_INT: snprintf(buf, cap, "%d", *(const int *)p); break;
    case K_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)p); break;
    case K_FLOAT: format_float(buf, cap, *(const float *)p); break;
    case K_BOOL: snprintf(buf, cap, "%s", *(const int *)p ? "true" : "false"); break;
    case K_ENUM_INT: choice_name(k->choices, *(const int *)p, buf, cap); break;
    case K_ENUM:
    case K_STR: snprintf(buf, cap, "%s", (const char *)p); break;
    }
}

// ---- public API -----------------------------------------------------------

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    char err[128];
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &KEYS[i];
        if (k->type == K_ENUM) check(longest_choice(k->choices) < k->size, "a choice of %s.%s does not fit its field",
                                     k->section, k->key);
        check(set_value(c, k, k->def, err, sizeof err), "bad default %s.%s = %s: %s", k->section, k->key, k->def, err);
    }
}

typedef struct {
    Config *c;
    FILE *fp;
    int line;                // lines read so far (inih counts the same way)
    int err_line;            // first problem found by us, 0 = none
    char err[512];
} Parser;

static void parse_error(Parser *p, const char *msg) {
    if (p->err_line) return;   // report the first problem only
    p->err_line = p->line;
    snprintf(p->err, sizeof p->err, "%s", msg);
}

// fgets for inih that counts lines (inih does not tell the handler the line),
// strips leading whitespace (so an indented line is never a multi-line
// continuation of the previous value) and checks section names, which inih
// does not report to the handler when the section has no keys.
static char *read_line(char *str, int num, void *stream) {
    Parser *p = stream;
    if (!fgets(str, num, p->fp)) return NULL;
    p->line++;
    size_t n = strlen(str);
    if (n + 1 == (size_t)num && str[n - 1] != '\n' && !feof(p->fp)) {
        int ch;
        while ((ch = fgetc(p->fp)) != EOF && ch != '\n') {}
        char msg[64];
        snprintf(msg, sizeof msg, "line longer than %d characters", num - 3);
        parse_error(p, msg);
        str[0] = 0;
        return str;
    }
    char *s = str;
    if (p->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;   // UTF-8 byte order mark
    while (isspace((unsigned char)*s)) s++;
    memmove(str, s, strlen(s) + 1);
    char *close = str[0] == '[' ? strchr(str, ']') : NULL;
    if (close) {
        *close = 0;
        if (!section_known(str + 1)) {
            char msg[256];
            unknown_section_msg(msg, sizeof msg, str + 1);
            parse_error(p, msg);
        }
        *close = ']';
    }
    return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    Parser *p = user;
    char msg[512], err[256];
    if (p->err_line) return 1;   // already failing; the first problem is the one reported
    if (!*section) {
        snprintf(msg, sizeof msg, "key '%s' outside any section (put it under [model], [train], [data], [sft], [dpo], [sprec], [lora], [run], [eval] or [dist])", name);
        parse_error(p, msg);
        return 0;
    }
    const Key *k = find_key(section, name);
    if (!k) {
        unknown_key_msg(msg, sizeof msg, section, name);
        parse_error(p, msg);
        return 0;
    }
    if (!set_value(p->c, k, value, err, sizeof err)) {
        snprintf(msg, sizeof msg, "[%s] %s = '%s': %s", section, name, value, err);
        parse_error(p, msg);
        return 0;
    }
    return 1;
}

// Reads INI text from fp (named path in the errors) over c.
static void load_stream(Config *c, FILE *fp, const char *path) {
    Parser p = {.c = c, .fp = fp};
    int first = ini_parse_stream(read_line, &p, on_key, &p);   // line of inih's first error
    int read_err = ferror(p.fp);
    fclose(p.fp);
    if (read_err) fail("cannot read config '%s'", path);
    check(first >= 0, "ini_parse_stream failed (%d)", first);
    // inih's first error is either one of ours (same line, we have the words)
    // or a syntax error it found alone
    if (first > 0 && (!p.err_line || first < p.err_line))
        fail("%s:%d: syntax error (expected '[section]' or 'key = value')", path, first);
    if (p.err_line) fail("%s:%d: %s", path, p.err_line, p.err);
}

void config_load(Config *c, const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) fail("cannot open config '%s': %s", path, strerror(errno));
    load_stream(c, fp, path);
}

void config_load_text(Config *c, const char *text, const char *name) {
    FILE *fp = fmemopen((void *)text, strlen(text), "r");
    check(fp != NULL, "fmemopen failed");
    load_stream(c, fp, name);
}

int config_override(Config *c, const char *arg) {
    const char *eq = strchr(arg, '='), *dot = strchr(arg, '.');
    if (!dot || (eq && dot > eq)) return 0;
    char section[64], key[64], msg[512], err[256];
    size_t ns = (size_t)(dot - arg), nk = eq ? (size_t)(eq - dot - 1) : strlen(dot + 1);
    snprintf(section, sizeof section, "%.*s", (int)ns, arg);
    snprintf(key, sizeof key, "%.*s", (int)nk, dot + 1);
    if (!eq) {   // "--train.lr 3e-4" or a file name such as "--x.h5"
        if (section_known(section)) fail("command line: --%s: expected --%s.%s=VALUE", arg, section, key);
        return 0;
    }
    if (!section_known(section)) {
        unknown_section_msg(msg, sizeof msg, section);
        fail("command line: --%s: %s", arg, msg);
    }
    const Key *k = find_key(section, key);
    if (!k) {
        unknown_key_msg(msg, sizeof msg, section, key);
        fail("command line: --%s: %s", arg, msg);
    }
    if (!set_value(c, k, eq + 1, err, sizeof err)) fail("command line: --%s: %s", arg, err);
    return 1;
}

void config_resolve(Config *c) {
    if (c->model.head_dim == 0 && c->model.n_heads > 0) c->model.head_dim = c->model.dim / c->model.n_heads;
}

// -1 (and schedule "train") in [dpo]: the [train] value
static float inherit_f(float v, float train) { return v == -1 ? train : v; }
static int inherit_i(int v, int train) { return v == -1 ? train : v; }

StageOpt config_stage(const Config *c, TrainStage s) {
    StageOpt o = {.name = "sft", .lr = c->train.lr, .min_lr = c->train.min_lr, .schedule = c->train.schedule,
                  .warmup_steps = c->train.warmup_steps, .batch_size = c->train.batch_size,
                  .grad_accum = c->train.grad_accum, .epochs = c->train.epochs, .max_steps = c->train.max_steps};
    switch (s) {
    case TRAIN_STAGE_SFT: break;
    case TRAIN_STAGE_DPO:
        o.name = "dpo";
        o.lr = inherit_f(c->dpo.lr, o.lr);
        o.min_lr = inherit_f(c->dpo.min_lr, o.min_lr);
        if (strcmp(c->dpo.schedule, "train") != 0) o.schedule = c->dpo.schedule;
        o.warmup_steps = inherit_i(c->dpo.warmup_steps, o.warmup_steps);
        o.batch_size = inherit_i(c->dpo.batch_size, o.batch_size);
        o.grad_accum = inherit_i(c->dpo.grad_accum, o.grad_accum);
        o.epochs = inherit_i(c->dpo.epochs, o.epochs);
        o.max_steps = inherit_i(c->dpo.max_steps, o.max_steps);
        break;
    case TRAIN_STAGE_SPREC_SFT:
        o = (StageOpt){.name = "sprec.sft", .lr = c->sprec.sft_lr, .min_lr = c->sprec.sft_min_lr,
                       .schedule = c->sprec.sft_schedule, .warmup_steps = c->sprec.sft_warmup_steps,
                       .batch_size = inherit_i(c->sprec.sft_batch_size, c->train.batch_size),
                       .grad_accum = inherit_i(c->sprec.sft_grad_accum, c->train.grad_accum),
                       .epochs = c->sprec.sft_epochs, .max_steps = 0};
        break;
    case TRAIN_STAGE_SPREC_DPO:
        o = (StageOpt){.name = "sprec.dpo", .lr = c->sprec.dpo_lr, .min_lr = c->sprec.dpo_min_lr,
                       .schedule = c->sprec.dpo_schedule, .warmup_steps = c->sprec.dpo_warmup_steps,
                       .batch_size = inherit_i(c->sprec.dpo_batch_size, c->train.batch_size),
                       .grad_accum = inherit_i(c->sprec.dpo_grad_accum, c->train.grad_accum),
                       .epochs = c->sprec.dpo_epochs, .max_steps = 0};
        break;
    }
    return o;
}

int stage_steps(const StageOpt *o, long rows) {
    if (o->max_steps > 0) return o->max_steps;
    const long per_step = (long)o->batch_size * o->grad_accum;
    return (int)((long)o->epochs * ((rows + per_step - 1) / per_step));
}

// the section and the key prefix of a stage's keys (error messages)
static const char *stage_section(TrainStage s) { return s == TRAIN_STAGE_SFT ? "[train]" : s == TRAIN_STAGE_DPO ? "[dpo]" : "[sprec]"; }
static const char *stage_prefix(TrainStage s) { return s == TRAIN_STAGE_SPREC_SFT ? "sft_" : s == TRAIN_STAGE_SPREC_DPO ? "dpo_" : ""; }

void config_validate(Config *c, const char *where) {
    char v[CONFIG_PATH_MAX + 16], err[128];
    // every value must pass the parser's checks again: a Config may also have
    // been filled in by code, so write each value out and parse it back
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &KEYS[i];
        format_value(c, k, v, sizeof v);
        Config tmp = *c;
        if (!set_value(&tmp, k, v, err, sizeof err)) fail("%s: [%s] %s = %s: %s", where, k->section, k->key, v, err);
    }
    if (c->model.head_dim == 0 && c->model.dim % c->model.n_heads != 0)
        fail("%s: [model] dim = %d is not divisible by n_heads = %d (set head_dim explicitly)", where,
             c->model.dim, c->model.n_heads);
    config_resolve(c);
    model_config_validate(&c->model, where);
    if (c->train.beta1 >= 1 || c->train.beta2 >= 1)
        fail("%s: [train] beta1 = %g, beta2 = %g: both must be below 1", where, (double)c->train.beta1,
             (double)c->train.beta2);
    if (c->train.eps <= 0) fail("%s: [train] eps = %g: must be above 0", where, (double)c->train.eps);
    if (c->dpo.beta <= 0) fail("%s: [dpo] beta = %g: must be above 0", where, (double)c->dpo.beta);
    unsigned targets;
    char terr[128];
    if (lora_parse_targets(c->lora.targets, &targets, terr, sizeof terr) != 0)
        fail("%s: [lora] targets = %s: %s", where, c->lora.targets, terr);
    if (c->lora.dropout >= 1) fail("%s: [lora] dropout = %g: must be below 1", where, (double)c->lora.dropout);
    if (c->dist.heartbeat_s > 0 && c->dist.heartbeat_s < 1)   // (shorter: a loaded node's scheduling delay looks like a lost rank)
        fail("%s: [dist] heartbeat_s = %g: must be 0 (off) or at least 1", where, (double)c->dist.heartbeat_s);
    if (c->eval.mode == 2 && !*c->eval.encoder)
        fail("%s: [eval] mode = paper needs [eval] encoder = a sentence-encoder checkpoint (docs/eval.md)", where);
    if ((c->dpo.lr < 0 && c->dpo.lr != -1) || (c->dpo.min_lr < 0 && c->dpo.min_lr != -1))
        fail("%s: [dpo] lr = %g, min_lr = %g: each must be >= 0, or -1 (= [train]'s)", where, (double)c->dpo.lr,
             (double)c->dpo.min_lr);
    for (TrainStage s = TRAIN_STAGE_SFT; s <= TRAIN_STAGE_SPREC_DPO; s++) {
        const StageOpt o = config_stage(c, s);
        const char *sec = stage_section(s), *k = stage_prefix(s), *why = s == TRAIN_STAGE_DPO ? " (-1 = [train]'s)" : "";
        if (o.min_lr > o.lr)
            fail("%s: %s %smin_lr = %g is above %slr = %g%s", where, sec, k, (double)o.min_lr, k, (double)o.lr, why);
        if (o.batch_size < 1 || o.grad_accum < 1 || o.epochs < 1)
            fail("%s: %s %sbatch_size = %d, %sgrad_accum = %d, epochs = %d: each must be >= 1, or -1 (= [train]'s)",
                 where, sec, k, o.batch_size, k, o.grad_accum, o.epochs);
        if (o.max_steps > 0 && o.warmup_steps > o.max_steps)
            fail("%s: %s warmup_steps = %d is longer than max_steps = %d%s", where, sec, o.warmup_steps, o.max_steps, why);
    }
}

static int key_is_bookkeeping(const Key *k);

// The keys (all, or those that determine the run) as INI text under their sections.
static void write_keys(const Config *c, FILE *f, int settings_only) {
    char v[CONFIG_PATH_MAX + 16];
    const char *section = "";
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &KEYS[i];
        if (settings_only && key_is_bookkeeping(k)) continue;
        if (strcmp(k->section, section) != 0) fprintf(f, "\n[%s]\n", section = k->section);
        format_value(c, k, v, sizeof v);
        fprintf(f, "%s =%s%s\n", k->key, *v ? " " : "", v);
    }
}

void config_write(const Config *c, FILE *f) {
    fprintf(f, "; sprec configuration, every key resolved (keys: docs/config.md)\n");
    write_keys(c, f, 0);
}

void config_write_settings(const Config *c, FILE *f) {
    fprintf(f, "; the settings that determine this run (sprec train --resume compares them)\n");
    write_keys(c, f, 1);
}

// Keys that do not change what a run computes: where it logs and checkpoints,
// how often, its threads, the ranks' watchdogs (timeout_s, heartbeat_s), sprec
// eval's own outputs, and sprec prepare's keys (training reads the prepared file,
// [data] dataset). A resume may change them.
static int key_is_bookkeeping(const Key *k) {
    static const char *const keys[] = {
        "train.log_every", "train.ckpt_every", "dpo.log_every", "run.out_dir", "run.threads", "eval.model",
        "eval.out_dir", "eval.label", "eval.batch", "data.source", "data.dir", "data.tokenizer", "data.seed",
        "data.train_rows", "data.valid_rows", "data.test_rows", "data.history", "data.synth_items", "data.synth_users",
        "data.synth_genres", "data.synth_zipf", "dist.timeout_s", "dist.heartbeat_s",
        "dist.overlap"};   // (the sums are the same either way)
    char name[64];
    snprintf(name, sizeof name, "%s.%s", k->section, k->key);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) if (!strcmp(name, keys[i])) return 1;
    return 0;
}

int config_diff(const Config *was, const Config *now, char *out, size_t cap) {
    char a[CONFIG_PATH_MAX + 16], b[CONFIG_PATH_MAX + 16];
    int n = 0;
    size_t used = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &KEYS[i];
        if (key_is_bookkeeping(k)) continue;
        format_value(was, k, a, sizeof a);
        format_value(now, k, b, sizeof b);
        if (!strcmp(a, b)) continue;
        char item[2 * CONFIG_PATH_MAX + 96];
        snprintf(item, sizeof item, "%s%s.%s = %s (the run: %s)", n ? ", " : "", k->section, k->key, b, a);
        if (used + strlen(item) + 1 < cap) { strcpy(out + used, item); used += strlen(item); }
        n++;
    }
    return n;
}

char *config_text(const Config *c, int settings_only, size_t *len) {
    char *text = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&text, &n);
    check(m != NULL, "open_memstream failed");
    if (settings_only) config_write_settings(c, m);
    else config_write(c, m);
    check(fclose(m) == 0, "writing the config to memory failed");
    if (len) *len = n;
    return text;
}

void config_check_ranks(const Config *c) {
    const Dist *d = dist_world();
    if (d->world == 1) return;
    dist_set_options(c->dist.timeout_s, c->dist.bucket_mb);
    dist_set_heartbeat(c->dist.heartbeat_s);
    dist_set_overlap(c->dist.overlap);
    size_t n;
    char *text = config_text(c, 0, &n);
    dist_check_same(d, "config", text, n);
    free(text);
}

void config_print_help(FILE *f) {
    char lhs[128];
    fprintf(f, "Configuration keys ([section] key = default), set in the INI file or as --section.key=value:\n");
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &KEYS[i];
        snprintf(lhs, sizeof lhs, "[%s] %s = %s", k->section, k->key, k->def);
        fprintf(f, "  %-40s %s", lhs, k->help);
        if (k->choices) fprintf(f, " (%s)", k->choices);
        fprintf(f, "\n");
    }
}
