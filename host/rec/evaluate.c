// sprec eval's engine (docs/eval.md): constrained top-K (or unconstrained
// greedy text grounded by L2 distance) over a split's prompts, the per-row
// top-K JSONL and metrics_compute.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "evaluate.h"
#include "base/dist/dist.h"
#include "base/atomic_write.h"
#include "recommend.h"
#include "trie.h"
#include "grounding.h"
#include "base/progress.h"
#include "kernels/errors.h"

int evaluate_parse_ks(const char *text, int *ks, int cap, char *err, size_t err_cap) {
    int n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno) { snprintf(err, err_cap, "'%s' is not a comma-separated list of integers", text); return 0; }
        if (v < 1 || v > 1000000) { snprintf(err, err_cap, "K = %ld: each K must be between 1 and 1000000", v); return 0; }
        for (int i = 0; i < n; i++)
            if (ks[i] == v) { snprintf(err, err_cap, "K = %ld is listed twice", v); return 0; }
        if (n == cap) { snprintf(err, err_cap, "more than %d values of K", cap); return 0; }
        ks[n++] = (int)v;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return n;
        if (*p != ',') { snprintf(err, err_cap, "'%s' is not a comma-separated list of integers", text); return 0; }
        p++;
    }
}

static int split_index(const char *name) {
    for (int s = 0; s < N_SPLITS; s++) if (strcmp(SPLIT_NAMES[s], name) == 0) return s;
    fail("unknown split '%s' (train, valid or test)", name);
}

static void write_ids(FILE *f, const int *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", ids[i]);
    fputc(']', f);
}

static void write_json_string(FILE *f, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        const unsigned c = p[i];
        if (c == '"' || c == '\\') { fprintf(f, "\\%c", c); i++; continue; }
        if (c == '\n') { fputs("\\n", f); i++; continue; }
        if (c < 0x20 || c == 0x7f) { fprintf(f, "\\u%04x", c); i++; continue; }
        if (c < 0x80) { fputc((int)c, f); i++; continue; }
        // a well-formed sequence (no overlong forms, surrogates or > U+10FFFF) is copied
        int k = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
        int ok = k > 0;
        for (int j = 1; ok && j <= k; j++) ok = i + (size_t)j < n && (p[i + j] & 0xc0) == 0x80;
        if (ok && k == 2) ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);
        if (ok && k == 3) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90);
        if (!ok) { fputs("\\ufffd", f); i++; continue; }
        fwrite(p + i, 1, (size_t)k + 1, f);
        i += (size_t)k + 1;
    }
    fputc('"', f);
}

void evaluate_split_rows(Model *m, const RecData *d, const char *split, const int *ks, int n_ks, int beams,
                         int batch, int max_rows, FILE *topk_jsonl, Metrics *out) {
    evaluate_split_mode(m, d, split, ks, n_ks, beams, batch, max_rows, EVAL_CONSTRAINED, NULL, NULL, topk_jsonl, out);
}

void evaluate_split_mode(Model *m, const RecData *d, const char *split, const int *ks, int n_ks, int beams,
                         int batch, int max_rows, int mode, const char *cache_path, const PaperOpts *paper,
                         FILE *topk_jsonl, Metrics *out) {
    if (!d->tokenized)
        fail("the dataset has no token ids (prepared without [data] tokenizer): prepare it again with the model's "
             "tokenizer to evaluate");
    if (n_ks < 1) fail("no K given to evaluate at");
    check(mode == EVAL_CONSTRAINED || mode == EVAL_UNCONSTRAINED || mode == EVAL_PAPER, "unknown eval mode %d", mode);
    if (mode == EVAL_PAPER && (!paper || !paper->encoder || !*paper->encoder))
        fail("eval mode paper needs a sentence encoder: set [eval] encoder (docs/eval.md)");
    if (beams < 1 || batch < 1) fail("beams (%d) and batch (%d) must be at least 1", beams, batch);
    const RecSplit *sp = &d->split[split_index(split)];
    int K = 0;
    for (int i = 0; i < n_ks; i++) { metrics_check_k(ks[i], d->n_items); if (ks[i] > K) K = ks[i]; }
    const int W = beams > K ? beams : K;
    const int n = max_rows > 0 && max_rows < sp->n ? max_rows : sp->n;
    if (n < 1) fail("split '%s' has no rows to evaluate", split);
    const int V = m->cfg.vocab_size, ctx = m->cfg.max_seq_len;

    // the catalogue's completion tokens (`"Title"\n`): the trie (constrained)
    const int **seqs = xmalloc((size_t)d->n_items * sizeof(int *));
    int *lens = xmalloc((size_t)d->n_items * sizeof(int)), longest = 0;
    for (int i = 0; i < d->n_items; i++) {
        seqs[i] = d->item_tok + d->item_tok_offsets[i];
        lens[i] = d->item_tok_offsets[i + 1] - d->item_tok_offsets[i];
        longest = lens[i] > longest ? lens[i] : longest;
        for (int j = 0; j < lens[i]; j++)
            if (seqs[i][j] >= V)
                fail("catalogue item %d ('%s') has token id %d outside the model's vocabulary (%d): was the dataset "
                     "prepared with this model's tokenizer?", i, d->titles[i], seqs[i][j], V);
    }
    Trie trie;
    if (mode == EVAL_CONSTRAINED) trie_build(&trie, (const int *const *)seqs, lens, d->n_items, (const char *const *)d->titles);

    // prompts: the first prompt_len[r] tokens of each row
    const int **prompts = xmalloc((size_t)n * sizeof(int *));
    int *plens = xmalloc((size_t)n * sizeof(int));
    for (int r = 0; r < n; r++) {
        prompts[r] = sp->tokens + (size_t)r * sp->T;
        plens[r] = sp->prompt_len[r];
        if (plens[r] < 1) fail("split '%s' row %d has an empty prompt", split, r);
        for (int j = 0; j < plens[r]; j++)
            if (prompts[r][j] < 0 || prompts[r][j] >= V)
                fail("split '%s' row %d: token id %d outside the model's vocabulary (%d): was the dataset prepared "
                     "with this model's tokenizer?", split, r, prompts[r][j], V);
        if (plens[r] + longest > ctx)
            fail("split '%s' row %d: prompt (%d tokens) + longest item (%d tokens) exceed the model's context (%d)",
                 split, r, plens[r], longest, ctx);
        if (mode == EVAL_PAPER && plens[r] + PAPER_MAX_NEW_TOKENS > ctx)
            fail("split '%s' row %d: prompt (%d tokens) + the paper mode's %d new tokens exceed the model's context (%d)",
                 split, r, plens[r], PAPER_MAX_NEW_TOKENS, ctx);
    }
    Grounding gr;
    PaperEval pe;
    if (mode == EVAL_UNCONSTRAINED) grounding_create(&gr, m, d, cache_path);
    if (mode == EVAL_PAPER) paper_create(&pe, m, paper, d, cache_path);
    // this rank's share of the rows (by cost); the lists are gathered, so every rank computes the same metrics
    const Dist *dist = dist_world();
    int lo, hi;
    recommend_share(mode == EVAL_CONSTRAINED ? &trie : NULL, plens, n, W, &lo, &hi);
    // the generated texts stay on the rank that made them: the JSONL carries them with one rank only
    GenOutput *gen = mode != EVAL_CONSTRAINED && topk_jsonl && dist->world == 1
                   ? xcalloc((size_t)n, sizeof(GenOutput)) : NULL;
    char **titles = mode == EVAL_PAPER && gen ? xcalloc((size_t)n, sizeof(char *)) : NULL;

    int *ranked = xmalloc((size_t)n * K * sizeof(int));
    float *scores = xmalloc((size_t)n * K * sizeof(float));
    char stage[32];   // for the progress and balance lines
    snprintf(stage, sizeof stage, "eval %s", split);
    const double t0 = now_seconds();
    double t_last = t0;
    for (int b = lo; b < hi; b += batch) {
        const int nb = hi - b < batch ? hi - b : batch;
        if (mode == EVAL_CONSTRAINED)
            recommend_topk(m, &trie, prompts + b, plens + b, nb, K, W, ranked + (size_t)b * K, scores + (size_t)b * K);
        else if (mode == EVAL_UNCONSTRAINED)
            grounding_topk(m, &gr, prompts + b, plens + b, nb, K, ranked + (size_t)b * K, scores + (size_t)b * K,
                           gen ? gen + b : NULL);
        else
            paper_topk(m, &pe, prompts + b, plens + b, nb, K, ranked + (size_t)b * K, scores + (size_t)b * K,
                       gen ? gen + b : NULL, titles ? titles + b : NULL);
        progress_line(stage, b + nb - lo, hi - lo, "rows", t0, &t_last);
    }
    dist_log_balance(dist, stage, now_seconds() - t0);
    dist_gather(dist, ranked, (size_t)K * sizeof(int), lo, hi, n);
    dist_gather(dist, scores, (size_t)K * sizeof(float), lo, hi, n);

    if (topk_jsonl && dist_is_root(dist)) {
        for (int r = 0; r < n; r++) {
            fprintf(topk_jsonl, "{\"row\": %d, \"history\": ", r);
            write_ids(topk_jsonl, sp->hist_items + sp->hist_offsets[r], sp->hist_offsets[r + 1] - sp->hist_offsets[r]);
            if (sp->target[r] >= 0) fprintf(topk_jsonl, ", \"target\": %d, \"ranked\": ", sp->target[r]);
            else fprintf(topk_jsonl, ", \"target\": null, \"ranked\": ");
            write_ids(topk_jsonl, ranked + (size_t)r * K, K);
            if (gen) {
                const GenHyp *h = &gen[r].hyps[0];
                const Tokenizer *tok = mode == EVAL_PAPER ? pe.tok : gr.tok;
                fprintf(topk_jsonl, ", \"generated\": ");
                if (tok) {
                    size_t len;
                    char *text = tokenizer_decode(tok, h->tokens, h->n, 0, &len);
                    write_json_string(topk_jsonl, text, len);
                    free(text);
                } else {
                    fputs("null", topk_jsonl);
                }
                fprintf(topk_jsonl, ", \"generated_ids\": ");
                write_ids(topk_jsonl, h->tokens, h->n);
                if (titles) {
                    fprintf(topk_jsonl, ", \"title\": ");
                    write_json_string(topk_jsonl, titles[r], strlen(titles[r]));
                }
            }
            fprintf(topk_jsonl, "}\n");
        }
        atomic_flush(topk_jsonl);   // a full disk: one line naming the file, at the batch that met it
    }

    const Catalogue cat = {.n_items = d->n_items, .n_genres = d->n_genres, .genre_offsets = d->genre_offsets,
                           .genre_ids = d->genre_ids};
    metrics_compute(&cat, n, sp->target, ranked, K, sp->hist_offsets, sp->hist_items, ks, n_ks, out);

    free(ranked); free(scores); free(prompts); free(plens); free(seqs); free(lens);
    if (mode == EVAL_CONSTRAINED) trie_free(&trie);
    else if (mode == EVAL_UNCONSTRAINED) grounding_free(&gr);
    else paper_free(&pe);
    if (gen) { gen_output_free(gen, n); free(gen); }
    if (titles) { for (int r = 0; r < n; r++) free(titles[r]); free(titles); }
}

void evaluate_split(Model *m, const RecData *d, const char *split, const int *ks, int n_ks, int beams, int batch,
                    FILE *topk_jsonl, Metrics *out) {
    evaluate_split_rows(m, d, split, ks, n_ks, beams, batch, 0, topk_jsonl, out);
}
