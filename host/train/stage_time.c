// Stage timing of an SPRec iteration (stage_time.h).
#include "stage_time.h"
#include <string.h>
#include "base/progress.h"
#include "base/dist/dist.h"

const char *const STAGE_NAMES[N_STAGES] = {"negatives", "sft", "reference", "dpo", "eval"};

void stage_clock_reset(StageClock *k) {
    memset(k, 0, sizeof *k);
    k->start = now_seconds();
}

void stage_begin(StageClock *k, const Model *m) {
    k->t0 = now_seconds();
    k->flops0 = m->work_flops;
    k->tokens0 = m->work_tokens;
}

void stage_end(StageClock *k, Stage s, const Model *m) {
    k->seconds[s] += now_seconds() - k->t0;
    k->tokens[s] += m->work_tokens - k->tokens0;
    k->flops[s] += m->work_flops - k->flops0;
    k->ran[s] = 1;
}

void stage_add_decode(StageClock *k, Stage s, const Model *m, const RecData *d, int split, const int *rows, int n,
                      const int *out, int n_out, int beams) {
    const RecSplit *sp = &d->split[split];
    if (!rows && (n <= 0 || n > sp->n)) n = sp->n;
    double prompt = 0, gen = 0;
    for (int i = 0; i < n; i++) prompt += sp->prompt_len[rows ? rows[i] : i];
    const int *off = d->item_tok_offsets;
    if (out)
        for (int i = 0; i < n_out; i++) gen += off[out[i] + 1] - off[out[i]];
    else
        gen = (double)n * off[d->n_items] / d->n_items;
    const double weights = model_forward_flops(&m->cfg, 1, 0, 1) / 2;   // linear weights, head included
    const int ranks = dist_world()->world;
    k->tokens[s] += (prompt + gen) / ranks;
    k->flops[s] += 2 * weights * (prompt + beams * gen) / ranks;
}

void stage_clock_log(const StageClock *k, FILE *f, int iteration) {
    char line[2048], summary[1024];
    int n = snprintf(line, sizeof line, "{\"iteration\": %d", iteration);
    int ns = snprintf(summary, sizeof summary, "sprec %d: stage times", iteration);
    double total = 0;
    for (int s = 0; s < N_STAGES; s++) {
        if (!k->ran[s]) continue;
        const double sec = k->seconds[s] > 0 ? k->seconds[s] : 1e-9;
        total += k->seconds[s];
        n += snprintf(line + n, sizeof line - (size_t)n,
                      ", \"%s_s\": %.6f, \"%s_tokens\": %.0f, \"%s_tokens_per_s\": %.1f, \"%s_gflops\": %.3f",
                      STAGE_NAMES[s], k->seconds[s], STAGE_NAMES[s], k->tokens[s], STAGE_NAMES[s], k->tokens[s] / sec,
                      STAGE_NAMES[s], k->flops[s] / sec / 1e9);
        ns += snprintf(summary + ns, sizeof summary - (size_t)ns, " | %s %.1f s %.1f GFLOP/s", STAGE_NAMES[s],
                       k->seconds[s], k->flops[s] / sec / 1e9);
    }
    snprintf(line + n, sizeof line - (size_t)n, ", \"total_s\": %.6f, \"wall_s\": %.6f}\n", total,
             now_seconds() - k->start);
    if (f) {
        fputs(line, f);
        fflush(f);
    }
    printf("%s\n", summary);
}
