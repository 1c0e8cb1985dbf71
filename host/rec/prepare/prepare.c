// The source-independent part of `sprec prepare`: the seeded split, popularity
// and out-of-catalogue counts, tokenization, writing the file and the summary.
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include "prepare.h"
#include "rows.h"
#include "sources.h"
#include "base/fileio.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "base/h5io.h"
#include "base/progress.h"
#include "base/rng.h"
#include "tokenizer/tokenizer.h"
#include "rec/trie.h"
#include "kernels/errors.h"

// ---- split --------------------------------------------------------------------

// Rows the source left unassigned: a seeded shuffle, the first valid_rows go to
// valid, the next test_rows to test, the rest to train. Then, for every source,
// train is cut to train_rows (a seeded sample) when train_rows > 0. Rows keep
// their source order inside each split.
static void split_rows(RowList *r, const Config *c) {
    Rng rng;
    rng_seed(&rng, c->data.seed);
    int *idx = xmalloc((size_t)(r->n ? r->n : 1) * sizeof(int)), m = 0;
    for (int i = 0; i < r->n; i++) if (r->split[i] < 0) idx[m++] = i;
    for (int i = m - 1; i > 0; i--) {   // Fisher-Yates
        int j = (int)rng_below(&rng, (uint64_t)i + 1), t = idx[i];
        idx[i] = idx[j]; idx[j] = t;
    }
    const long n_valid = c->data.valid_rows, n_eval = n_valid + c->data.test_rows;
    for (int k = 0; k < m; k++) r->split[idx[k]] = k < n_valid ? SPLIT_VALID : k < n_eval ? SPLIT_TEST : SPLIT_TRAIN;
    if (c->data.train_rows > 0) {
        m = 0;
        for (int i = 0; i < r->n; i++) if (r->split[i] == SPLIT_TRAIN) idx[m++] = i;
        for (int k = 0; k < m - c->data.train_rows; k++) {   // drop a seeded sample of m - train_rows rows
            int j = k + (int)rng_below(&rng, (uint64_t)(m - k)), t = idx[k];
            idx[k] = idx[j]; idx[j] = t;
            r->split[idx[k]] = -2;   // -2: not used
        }
    }
    free(idx);
}

// Moves the rows of split s into d->split[s] (strings change owner).
static void gather_split(RecData *d, RowList *r, int s) {
    RecSplit *sp = &d->split[s];
    int n = 0, nh = 0;
    for (int i = 0; i < r->n; i++)
        if (r->split[i] == s) { n++; nh += r->hist_offsets[i + 1] - r->hist_offsets[i]; }
    sp->n = n;
    sp->hist_offsets = xmalloc((size_t)(n + 1) * sizeof(int));
    sp->hist_items = xmalloc((size_t)(nh ? nh : 1) * sizeof(int));
    sp->target = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    sp->source_row = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    sp->prompt = xmalloc((size_t)(n ? n : 1) * sizeof(char *));
    sp->completion = xmalloc((size_t)(n ? n : 1) * sizeof(char *));
    sp->hist_offsets[0] = 0;
    int k = 0;
    for (int i = 0; i < r->n; i++) {
        if (r->split[i] != s) continue;
        int h0 = r->hist_offsets[i], h1 = r->hist_offsets[i + 1];
        if (h1 > h0) memcpy(sp->hist_items + sp->hist_offsets[k], r->hist_items + h0, (size_t)(h1 - h0) * sizeof(int));
        sp->hist_offsets[k + 1] = sp->hist_offsets[k] + h1 - h0;
        sp->target[k] = r->target[i];
        sp->source_row[k] = r->source_row[i];
        sp->prompt[k] = r->prompt[i];
        sp->completion[k] = r->completion[i];
        r->prompt[i] = r->completion[i] = NULL;
        k++;
    }
}

// Prompt and completion are tokenized separately and concatenated, so a row's
// completion tokens are exactly its item's catalogue tokens (the trie's
// convention, trie_tokenize_completion): prompt with the tokenizer's special
// tokens (BOS when it adds one), completion without.
static void tokenize_split(Tokenizer *tok, RecSplit *sp, const char *name) {
    int **ids = xmalloc((size_t)sp->n * sizeof(int *)), *cl = xmalloc((size_t)sp->n * sizeof(int));
    int **cids = xmalloc((size_t)sp->n * sizeof(int *));
    sp->prompt_len = xmalloc((size_t)sp->n * sizeof(int));
    sp->lengths = xmalloc((size_t)sp->n * sizeof(int));
    sp->T = 2;
    double t0 = now_seconds();
    for (int r = 0; r < sp->n; r++) {
        sp->prompt_len[r] = tokenizer_encode(tok, sp->prompt[r], strlen(sp->prompt[r]), 1, &ids[r]);
        cl[r] = trie_tokenize_completion(tok, sp->completion[r], &cids[r]);
        if (sp->prompt_len[r] < 1 || cl[r] < 1) fail("%s row %d: empty prompt or completion after tokenization", name, r);
        sp->lengths[r] = sp->prompt_len[r] + cl[r];
        if (sp->lengths[r] > sp->T) sp->T = sp->lengths[r];
        if ((r + 1) % 20000 == 0) {
            fprintf(stderr, "prepare: tokenizing %s %d/%d (%.0f rows/s)\n", name, r + 1, sp->n, (r + 1) / (now_seconds() - t0));
        }
    }
    sp->tokens = xcalloc((size_t)sp->n * sp->T, sizeof(int));
    sp->mask = xcalloc((size_t)sp->n * sp->T, sizeof(float));
    for (int r = 0; r < sp->n; r++) {
        int *row = sp->tokens + (size_t)r * sp->T;
        memcpy(row, ids[r], (size_t)sp->prompt_len[r] * sizeof(int));
        memcpy(row + sp->prompt_len[r], cids[r], (size_t)cl[r] * sizeof(int));
        for (int t = sp->prompt_len[r]; t < sp->lengths[r]; t++) sp->mask[(size_t)r * sp->T + t] = 1.0f;
        free(ids[r]);
        free(cids[r]);
    }
    free(ids); free(cids); free(cl);
}

static void tokenize_all(RecData *d, Tokenizer *tok) {
    d->item_tok_offsets = xmalloc((size_t)(d->n_items + 1) * sizeof(int));
    int **ids = xmalloc((size_t)d->n_items * sizeof(int *)), total = 0;
    d->item_tok_offsets[0] = 0;
    for (int i = 0; i < d->n_items; i++) {
        char *text = completion_text(d->titles[i]);
        int n = trie_tokenize_completion(tok, text, &ids[i]);
        free(text);
        total += n;
        d->item_tok_offsets[i + 1] = total;
    }
    d->item_tok = xmalloc((size_t)(total ? total : 1) * sizeof(int));
    for (int i = 0; i < d->n_items; i++) {
        memcpy(d->item_tok + d->item_tok_offsets[i], ids[i], (size_t)(d->item_tok_offsets[i + 1] - d->item_tok_offsets[i]) * sizeof(int));
        free(ids[i]);
    }
    free(ids);
    for (int s = 0; s < N_SPLITS; s++) tokenize_split(tok, &d->split[s], SPLIT_NAMES[s]);
    d->tokenized = 1;
}

// ---- the job ------------------------------------------------------------------

// mkdir -p of the folder a file goes into.
static void make_parent_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return;
    *slash = 0;
    make_dirs(buf);
}

void prepare_run(const Config *c, const char *out) {
    double t0 = now_seconds();
    RecData d;
    RowList rows;
    memset(&d, 0, sizeof d);
    memset(&rows, 0, sizeof rows);
    const char *src = c->data.source;
    Tokenizer *tok = *c->data.tokenizer ? recdata_tokenizer(c->data.tokenizer) : NULL;   // fail early on a bad one
    char dir[CONFIG_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", *c->data.dir ? c->data.dir
                                    : strcmp(src, "goodreads") == 0 ? "data/goodreads" : "data/movielens-small");
    if (strcmp(src, "goodreads") == 0) prepare_goodreads(c, dir, &d, &rows);
    else if (strcmp(src, "movielens") == 0) prepare_movielens(c, dir, &d, &rows);
    else if (strcmp(src, "synthetic") == 0) prepare_synthetic(c, &d, &rows);
    else fail("[data] source = '%s': must be goodreads, movielens or synthetic", src);
    snprintf(d.source, sizeof d.source, "%s", src);
    check(d.n_items > 0, "source %s gave an empty catalogue", src);
    say("prepare: %s: %d rows, %d items, %d genres\n", src, rows.n, d.n_items, d.n_genres);

    split_rows(&rows, c);
    for (int s = 0; s < N_SPLITS; s++) gather_split(&d, &rows, s);
    for (int i = 0; i < rows.n; i++) { free(rows.prompt[i]); free(rows.completion[i]); }   // rows cut from train
    rows_free(&rows);
    for (int s = 0; s < N_SPLITS; s++)
        if (d.split[s].n == 0)
            fail("split '%s' is empty (source %s: train_rows = %d, valid_rows = %d, test_rows = %d)", SPLIT_NAMES[s],
                 src, c->data.train_rows, c->data.valid_rows, c->data.test_rows);

    d.popularity = xcalloc((size_t)d.n_items, sizeof(int));
    for (int r = 0; r < d.split[SPLIT_TRAIN].n; r++)
        if (d.split[SPLIT_TRAIN].target[r] >= 0) d.popularity[d.split[SPLIT_TRAIN].target[r]]++;
    for (int s = 0; s < N_SPLITS; s++) {
        const RecSplit *sp = &d.split[s];
        int out_t = 0, out_h = 0;
        for (int r = 0; r < sp->n; r++) out_t += sp->target[r] < 0;
        for (int i = 0; i < sp->hist_offsets[sp->n]; i++) out_h += sp->hist_items[i] < 0;
        say("prepare: %-5s %6d rows; outside the catalogue: %d targets, %d of %d history titles\n",
               SPLIT_NAMES[s], sp->n, out_t, out_h, sp->hist_offsets[sp->n]);
    }
    if (tok) {
        tokenize_all(&d, tok);
        tokenizer_free(tok);
        for (int s = 0; s < N_SPLITS; s++) {
            long sum = 0;
            for (int r = 0; r < d.split[s].n; r++) sum += d.split[s].lengths[r];
            say("prepare: %-5s tokens: longest row %d, mean %.1f\n", SPLIT_NAMES[s], d.split[s].T,
                   (double)sum / d.split[s].n);
        }
    }
    make_parent_dirs(out);
    recdata_save(&d, out);
    char buf[32];
    say("prepare: wrote %s (%s%s) in %s\n", out, d.tokenized ? "tokenized with " : "text only",
           d.tokenized ? c->data.tokenizer : "", fmt_duration(now_seconds() - t0, buf, sizeof buf));
    recdata_free(&d);
}
