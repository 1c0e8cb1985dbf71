// The source-independent part of `sprec prepare`: the prompt template, the row
// list, the title index, the seeded split, popularity and out-of-catalogue
// counts, tokenization, writing the file and the summary.
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include "prepare.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "base/h5io.h"
#include "base/progress.h"
#include "base/rng.h"
#include "tokenizer/tokenizer.h"
#include "rec/trie.h"
#include "kernels/errors.h"

// ---- text -----------------------------------------------------------------

const Wording WORDING_BOOKS = {
    "Given a list of books the user recently enjoys, please recommend a new books that the user may like",
    "The user has played the following books before: ", ", please write a new books that the user may bought"};
const Wording WORDING_MOVIES = {
    "Given a list of movies the user recently enjoys, please recommend a new movies that the user may like",
    "The user has watched the following movies before: ", ", please write a new movies that the user may watch"};

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *prompt_text(const char *instruction, const char *input) {
    static const char *head = "Below is an instruction that describes a task, paired with an input that provides "
                              "further context. Write a response that appropriately completes the request.\n\n"
                              "### Instruction:\n";
    size_t n = strlen(head) + strlen(instruction) + strlen(input) + 64;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s\n\n### Input:\n%s\n\n### Response:\n", head, instruction, input);
    return p;
}

char *completion_text(const char *title) {
    size_t n = strlen(title) + 4;
    char *p = xmalloc(n);
    snprintf(p, n, "\"%s\"\n", title);
    return p;
}

char *input_text(const Wording *w, char *const *titles, int n) {
    size_t len = strlen(w->input_head) + strlen(w->input_tail) + 1;
    for (int i = 0; i < n; i++) len += strlen(titles[i]) + 4;
    char *p = xmalloc(len), *q = p;
    q += sprintf(q, "%s", w->input_head);
    for (int i = 0; i < n; i++) q += sprintf(q, "%s\"%s\"", i ? ", " : "", titles[i]);
    sprintf(q, "%s", w->input_tail);
    return p;
}


// ---- rows -------------------------------------------------------------------

void rows_add(RowList *r, int split, int source_row, const int *hist, int n_hist, int target, char *prompt,
              char *completion) {
    if (r->n + 1 >= r->cap) {
        r->cap = r->cap ? 2 * r->cap : 1024;
        r->split = realloc(r->split, (size_t)r->cap * sizeof(int));
        r->source_row = realloc(r->source_row, (size_t)r->cap * sizeof(int));
        r->target = realloc(r->target, (size_t)r->cap * sizeof(int));
        r->hist_offsets = realloc(r->hist_offsets, (size_t)(r->cap + 1) * sizeof(int));
        r->prompt = realloc(r->prompt, (size_t)r->cap * sizeof(char *));
        r->completion = realloc(r->completion, (size_t)r->cap * sizeof(char *));
        if (!r->split || !r->source_row || !r->target || !r->hist_offsets || !r->prompt || !r->completion)
            fail("out of memory (rows)");
        if (r->n == 0) r->hist_offsets[0] = 0;
    }
    if (r->n_hist + n_hist > r->cap_hist) {
        while (r->n_hist + n_hist > r->cap_hist) r->cap_hist = r->cap_hist ? 2 * r->cap_hist : 8192;
        r->hist_items = realloc(r->hist_items, (size_t)r->cap_hist * sizeof(int));
        if (!r->hist_items) fail("out of memory (histories)");
    }
    memcpy(r->hist_items + r->n_hist, hist, (size_t)n_hist * sizeof(int));
    r->n_hist += n_hist;
    r->split[r->n] = split;
    r->source_row[r->n] = source_row;
    r->target[r->n] = target;
    r->prompt[r->n] = prompt;
    r->completion[r->n] = completion;
    r->hist_offsets[++r->n] = r->n_hist;
}

void rows_free(RowList *r) {
    free(r->split); free(r->source_row); free(r->target); free(r->hist_offsets); free(r->hist_items);
    free(r->prompt); free(r->completion);   // the strings moved into the RecData
    memset(r, 0, sizeof *r);
}

// ---- title index --------------------------------------------------------------

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;   // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

void names_build(NameIndex *ix, char *const *names, int n, const char *where) {
    ix->cap = 16;
    while (ix->cap < 2 * n) ix->cap *= 2;
    ix->slot = xmalloc((size_t)ix->cap * sizeof(int));
    for (int i = 0; i < ix->cap; i++) ix->slot[i] = -1;
    ix->names = names;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        uint64_t h = hash_bytes(names[i], len) & (uint64_t)(ix->cap - 1);
        while (ix->slot[h] >= 0) {
            if (strcmp(names[ix->slot[h]], names[i]) == 0)
                fail("%s: the title \"%s\" appears twice in the catalogue (items %d and %d)", where, names[i],
                     ix->slot[h], i);
            h = (h + 1) & (uint64_t)(ix->cap - 1);
        }
        ix->slot[h] = i;
    }
}

int names_find(const NameIndex *ix, const char *s, size_t len) {
    uint64_t h = hash_bytes(s, len) & (uint64_t)(ix->cap - 1);
    for (; ix->slot[h] >= 0; h = (h + 1) & (uint64_t)(ix->cap - 1)) {
        const char *name = ix->names[ix->slot[h]];
        if (strncmp(name, s, len) == 0 && name[len] == 0) return ix->slot[h];
    }
    return -1;
}

void names_free(NameIndex *ix) { free(ix->slot); memset(ix, 0, sizeof *ix); }

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
        memcpy(sp->hist_items + sp->hist_offsets[k], r->hist_items + h0, (size_t)(h1 - h0) * sizeof(int));
        sp->hist_offsets[k + 1] = sp->hist_offsets[k] + h1 - h0;
        sp->target[k] = r->target[i];
        sp->source_row[k] = r->source_row[i];
        sp->prompt[k] = r->prompt[i];
        sp->completion[k] = r->completion[i];
        r->prompt[i] = r->completion[i] = NULL;
        k++;
    }
}

// ---- tokenizer ----------------------------------------------------------------

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

// A checkpoint (its /tokenizer group), a .gguf file, or tokenizer.json (with
// tokenizer_config.json from the same folder when there is one).
static Tokenizer *load_tokenizer(const char *path) {
    char *json = NULL, *cfg = NULL;
    size_t len = 0, clen = 0;
    if (ends_with(path, ".h5")) {
        hid_t f = h5_open_read(path);
        json = h5_read_bytes(f, path, "tokenizer/tokenizer.json", &len);
        if (!json) fail("%s: the checkpoint has no tokenizer (import a model, or give a tokenizer.json)", path);
        cfg = h5_read_bytes(f, path, "tokenizer/tokenizer_config.json", &clen);
        h5_close(f);
    } else if (ends_with(path, ".gguf")) {
        Gguf g;
        gguf_open(&g, path);
        json = gguf_tokenizer_json_of(&g, &len);
        cfg = gguf_tokenizer_config_json_of(&g, &clen);
        gguf_close(&g);
    } else {
        json = read_file_text(path, &len);
        char cpath[4096];
        const char *slash = strrchr(path, '/');
        snprintf(cpath, sizeof cpath, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
        FILE *probe = fopen(cpath, "rb");
        if (probe) { fclose(probe); cfg = read_file_text(cpath, &clen); }
    }
    Tokenizer *t = tokenizer_from_json(json, len, cfg, clen, path);
    free(json);
    free(cfg);
    return t;
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
    Tokenizer *tok = *c->data.tokenizer ? load_tokenizer(c->data.tokenizer) : NULL;   // fail early on a bad one
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
