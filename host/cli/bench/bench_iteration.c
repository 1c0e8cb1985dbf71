// sprec bench --mode iteration: one whole SPRec iteration, the trainer's own.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bench.h"
#include "train/train.h"
#include "train/stage_time.h"
#include "rec/prepare/rows.h"
#include "base/progress.h"
#include "rec/evaluate.h"
#include "kernels/errors.h"

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
void bench_iteration(Bench *bn, const char *device, int threads, int P, int W, int items, int Lp) {
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
    cfg.train.zero = bn->zero;
    config_validate(&cfg, "sprec bench --mode iteration");
    // rank 0 makes the scratch folder and the world; every rank reads them (one path, sent to all)
    const Dist *dist = dist_world();
    const int root = dist_is_root(dist);
    if (root) {
        if (!mkdtemp(scratch_dir)) fail("sprec bench: cannot create a scratch folder in /tmp: %s", strerror(errno));
        atexit(remove_scratch);
    }
    dist_gather(dist, scratch_dir, sizeof scratch_dir, root ? 0 : 1, 1, 1);
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "%s/world.h5", scratch_dir);
    snprintf(cfg.run.out_dir, sizeof cfg.run.out_dir, "%s/run", scratch_dir);
    if (root) {
        RecData d;
        random_world(&d, items, c.vocab_size, P, Lp);
        recdata_save(&d, cfg.data.dataset);
        recdata_free(&d);
    }
    double written = 0;   // a sum waits for every rank: the world is on disk after it
    dist_sum_host(dist, &written, 1);
    const int saved = stdout_aside();
    const RankMark before = rank_mark();
    const double t0 = now_seconds();
    sprec_train(&cfg, 0, 1);
    const double wall = now_seconds() - t0;
    stdout_back(saved);
    // one step = the whole iteration; its optimizer steps (SFT, DPO) each take one gradient sum
    const long opt_steps = dist_counters().sums - before.dist.sums;
    char *ranks = rank_fields(bn, &before, 1, opt_steps, wall);
    if (!root) { free(ranks); return; }
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
            printf("\"stages_s\": %.6f, \"other_s\": %.6f, \"gradient_sums\": %ld, %s, ", stages_s,
                   sec - stages_s, opt_steps, ranks);
        }
        const Stats st = {sec, sec, sec};
        print_tail(bn->be, &st, tokens, flops, -1, -1);
    }
    free(ranks);
}
