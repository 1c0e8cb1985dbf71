// What every source of `sprec prepare` builds with (sources.h): the prompt
// template and its wording per domain, the row list, the title index and
// small string helpers. prepare.c takes the rows from there.
#include <stdint.h>
#include <string.h>
#include "rows.h"
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
    if (n_hist) memcpy(r->hist_items + r->n_hist, hist, (size_t)n_hist * sizeof(int));   // (hist_items: NULL until a first history)
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
