// sprec train --dry-run (train.h): the stages the command would run, each with
// the settings it would run at (config_stage, the trainers' own resolution) and
// its rows and steps (stage_steps, the trainers' own count), one JSON object a
// line. Nothing is trained and no model is loaded; the dataset is read, when
// it exists, only to count rows.
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include "train.h"
#include "dpo_pairs.h"
#include "base/fileio.h"
#include "io/dataset.h"
#include "rec/recdata.h"

// What a stage's batches are made of and how many there are; n < 0: unknown
// (the dataset is not there yet and the config does not say).
typedef struct {
    long n;                  // rows, pairs, or prompts (SPDPO with spdpo_batch = prompts)
    long pairs;              // DPO stages: pairs (n x spdpo_k with SPDPO), else -1
    const char *unit;        // "rows" | "pairs" | "prompts"
    char from[CONFIG_PATH_MAX + 64];   // where n comes from
} Rows;

// The train rows whose target is in the catalogue (what DPO and SPRec draw
// from), or -1 without a readable dataset. *split_n = the rows of `split`.
static long eligible_rows(const Config *cfg, const char *split, long *split_n) {
    *split_n = -1;
    if (!file_exists(cfg->data.dataset)) return -1;
    RecData d;
    recdata_load(&d, cfg->data.dataset);
    long ne = 0;
    for (int r = 0; r < d.split[SPLIT_TRAIN].n; r++) ne += d.split[SPLIT_TRAIN].target[r] >= 0;
    for (int s = 0; s < N_SPLITS; s++) if (split && !strcmp(SPLIT_NAMES[s], split)) *split_n = d.split[s].n;
    recdata_free(&d);
    return ne;
}

static Rows sft_rows(const Config *cfg) {
    Rows r = {.n = -1, .pairs = -1, .unit = "rows"};
    if (cfg->data.train[0]) {
        if (!file_exists(cfg->data.train)) return r;
        Dataset d;
        dataset_load(&d, cfg->data.train, INT_MAX);
        r.n = d.N;
        dataset_free(&d);
        snprintf(r.from, sizeof r.from, "%s", cfg->data.train);
        return r;
    }
    long n;
    eligible_rows(cfg, cfg->sft.split, &n);
    if (n >= 0) {
        r.n = n;
        snprintf(r.from, sizeof r.from, "%s:/%s", cfg->data.dataset, cfg->sft.split);
    } else if (cfg->data.train_rows > 0 && !strcmp(cfg->sft.split, "train")) {
        r.n = cfg->data.train_rows;
        snprintf(r.from, sizeof r.from, "[data] train_rows (at most; not prepared yet)");
    }
    return r;
}

// DPO trainer: [dpo] n_pairs of the eligible rows; SPRec: [sprec] n of them.
// SPDPO makes spdpo_k pairs of each prompt.
static Rows pair_rows(const Config *cfg, int sprec, int sft_stage) {
    Rows r = {.n = -1, .pairs = -1, .unit = sft_stage ? "rows" : "pairs"};
    const int want = sprec ? cfg->sprec.n : cfg->dpo.n_pairs;
    long unused;
    const long ne = eligible_rows(cfg, NULL, &unused);
    long n = -1;
    if (ne >= 0) {
        n = want > 0 && want < ne ? want : ne;
        snprintf(r.from, sizeof r.from, "%s:/train (%ld rows with a catalogue target)", cfg->data.dataset, ne);
    } else if (want > 0) {
        n = want;
        snprintf(r.from, sizeof r.from, "%s (at most; not prepared yet)", sprec ? "[sprec] n" : "[dpo] n_pairs");
    }
    const int spdpo = !strcmp(cfg->dpo.weighting, "spdpo") && (sprec || !strcmp(cfg->dpo.negatives, "self"));
    const int k = spdpo ? cfg->dpo.spdpo_k : 1;
    if (sft_stage || n < 0) { r.n = n; return r; }
    r.pairs = n * k;
    r.n = spdpo && dpo_pairs_per_micro(cfg, 1) > 1 ? n : r.pairs;
    if (r.n != r.pairs) r.unit = "prompts";
    return r;
}

// s as a JSON string (quotes and backslashes escaped; config paths hold no control characters)
static void print_json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void print_stage(const Config *cfg, TrainStage s, const Rows *r) {
    const StageOpt o = config_stage(cfg, s);
    const int dpo = s == TRAIN_STAGE_DPO || s == TRAIN_STAGE_SPREC_DPO, sprec = s >= TRAIN_STAGE_SPREC_SFT;
    const int steps = o.max_steps > 0 || r->n >= 0 ? stage_steps(&o, r->n) : -1;
    char steps_s[32] = "null", rows_s[32] = "null", pairs_s[32] = "null";
    if (steps >= 0) snprintf(steps_s, sizeof steps_s, "%d", steps);
    if (r->n >= 0) snprintf(rows_s, sizeof rows_s, "%ld", r->n);
    if (r->pairs >= 0) snprintf(pairs_s, sizeof pairs_s, "%ld", r->pairs);
    printf("{\"stage\": \"%s\", \"method\": \"%s\", \"lr\": %g, \"min_lr\": %g, \"schedule\": \"%s\", "
           "\"warmup_steps\": %d, \"batch\": %d, \"grad_accum\": %d, \"effective_batch\": %d, \"batch_of\": \"%s\", "
           "\"epochs\": %d, \"max_steps\": %d, \"steps\": %s, \"rows\": %s, \"rows_from\": ", o.name, cfg->train.method,
           (double)o.lr, (double)o.min_lr, o.schedule, o.warmup_steps, o.batch_size, o.grad_accum,
           o.batch_size * o.grad_accum, r->unit, o.epochs, o.max_steps, steps_s, rows_s);
    if (r->from[0]) print_json_str(r->from);
    else printf("null");
    if (dpo)
        printf(", \"pairs\": %s, \"beta\": %g, \"negatives\": \"%s\", \"beams\": %d, \"weighting\": \"%s\", "
               "\"completion_eos\": %s", pairs_s, (double)cfg->dpo.beta, sprec ? "self" : cfg->dpo.negatives,
               cfg->dpo.beams, cfg->dpo.weighting, cfg->data.completion_eos ? "true" : "false");
    if (s == TRAIN_STAGE_SFT || s == TRAIN_STAGE_SPREC_SFT) printf(", \"loss_on\": \"%s\"", cfg->sft.loss_on);
    if (sprec) printf(", \"iterations\": %d", cfg->sprec.iterations);
    printf("}\n");
}

void train_dry_run(const Config *cfg) {
    if (!strcmp(cfg->train.method, "sft")) {
        const Rows r = sft_rows(cfg);
        print_stage(cfg, TRAIN_STAGE_SFT, &r);
    } else if (!strcmp(cfg->train.method, "dpo")) {
        const Rows r = pair_rows(cfg, 0, 0);
        print_stage(cfg, TRAIN_STAGE_DPO, &r);
    } else {
        const Rows rs = pair_rows(cfg, 1, 1), rd = pair_rows(cfg, 1, 0);
        print_stage(cfg, TRAIN_STAGE_SPREC_SFT, &rs);
        print_stage(cfg, TRAIN_STAGE_SPREC_DPO, &rd);
    }
}
