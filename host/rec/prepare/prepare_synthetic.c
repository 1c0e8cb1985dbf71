// The built-in synthetic world (no download; the default for demos and tests).
// Items: titles made of words, 1-2 genres each, and a Zipf-like base
// popularity pop(i) = 1 / rank(i)^s (rank a seeded permutation, s =
// synth_zipf). Users: 1-2 favourite genres (their latent taste). A user's
// history + next item are history + 1 distinct items drawn with probability
// proportional to pop(i) * (1 if i has a favourite genre, else 0.05): the
// history reveals the taste, and within a taste popular items dominate, so a
// model that over-recommends the head of the popularity curve is visible.
// One row per user; the rows are split like Goodreads (valid_rows, test_rows).
#include <math.h>
#include <string.h>
#include "sources.h"
#include "base/rng.h"
#include "kernels/errors.h"

static const char *ADJ[] = {
    "Silver", "Hidden", "Broken", "Golden", "Silent", "Crimson", "Wild", "Frozen", "Burning", "Lost",
    "Secret", "Distant", "Dark", "Bright", "Iron", "Quiet", "Last", "First", "Shadow", "Velvet",
    "Stolen", "Endless", "Scarlet", "Hollow", "Wandering", "Midnight", "Emerald", "Bitter", "Gentle", "Savage"};
static const char *NOUN[] = {
    "River", "Crown", "Garden", "Storm", "Kingdom", "Letter", "Mirror", "Forest", "Harbor", "Empire",
    "Promise", "Orchard", "Tower", "Island", "Voyage", "Winter", "Song", "Witness", "Lantern", "Bridge",
    "Compass", "Daughter", "Engine", "Feather", "Glass", "Heart", "Key", "Map", "Ocean", "Thief"};
static const char *GENRES[] = {"fantasy", "romance", "mystery", "science fiction", "history", "horror",
                               "comedy", "adventure", "poetry", "biography", "thriller", "children"};
#define N_ADJ ((int)(sizeof ADJ / sizeof ADJ[0]))
#define N_NOUN ((int)(sizeof NOUN / sizeof NOUN[0]))
#define MAX_GENRES ((int)(sizeof GENRES / sizeof GENRES[0]))

// "The Silver River"; on a clash "The Silver River of the Storm"; then numbered.
static void make_titles(RecData *d, Rng *r) {
    d->titles = xmalloc((size_t)d->n_items * sizeof(char *));
    for (int i = 0; i < d->n_items; i++) {
        char buf[128];
        const char *a = ADJ[rng_below(r, N_ADJ)], *n = NOUN[rng_below(r, N_NOUN)], *n2 = NOUN[rng_below(r, N_NOUN)];
        snprintf(buf, sizeof buf, "The %s %s", a, n);
        int clash = 0;   // a linear scan: synthetic catalogues are small
        for (int j = 0; j < i && !clash; j++) clash = strcmp(d->titles[j], buf) == 0;
        if (clash) {
            snprintf(buf, sizeof buf, "The %s %s of the %s", a, n, n2);
            clash = 0;
            for (int j = 0; j < i && !clash; j++) clash = strcmp(d->titles[j], buf) == 0;
            if (clash) snprintf(buf, sizeof buf, "The %s %s, Volume %d", a, n, i + 1);
        }
        d->titles[i] = xstrdup(buf);
    }
}

void prepare_synthetic(const Config *c, RecData *d, RowList *rows) {
    const int n_items = c->data.synth_items, n_users = c->data.synth_users, G = c->data.synth_genres;
    const int H = c->data.history;
    if (G > MAX_GENRES) fail("[data] synth_genres = %d: at most %d", G, MAX_GENRES);
    if (n_items < 2 * (H + 1))
        fail("[data] synth_items = %d: need at least 2 x (history + 1) = %d items", n_items, 2 * (H + 1));
    Rng r;
    rng_seed(&r, c->data.seed);
    d->n_items = n_items;
    d->n_genres = G;
    snprintf(d->instruction, sizeof d->instruction, "%s", WORDING_BOOKS.instruction);
    d->genre_names = xmalloc((size_t)G * sizeof(char *));
    for (int g = 0; g < G; g++) d->genre_names[g] = xstrdup(GENRES[g]);
    make_titles(d, &r);

    // genres: one, and a second one with probability 0.3
    d->genre_offsets = xmalloc((size_t)(n_items + 1) * sizeof(int));
    d->genre_ids = xmalloc((size_t)(2 * n_items) * sizeof(int));
    d->genre_offsets[0] = 0;
    for (int i = 0; i < n_items; i++) {
        int k = d->genre_offsets[i], g1 = (int)rng_below(&r, (uint64_t)G);
        d->genre_ids[k++] = g1;
        if (G > 1 && rng_uniform(&r) < 0.3) d->genre_ids[k++] = (g1 + 1 + (int)rng_below(&r, (uint64_t)(G - 1))) % G;
        d->genre_offsets[i + 1] = k;
    }
    // base popularity: Zipf over a seeded permutation of the items
    double *pop = xmalloc((size_t)n_items * sizeof(double)), *cum = xmalloc((size_t)n_items * sizeof(double));
    int *perm = xmalloc((size_t)n_items * sizeof(int));
    for (int i = 0; i < n_items; i++) perm[i] = i;
    for (int i = n_items - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j]; perm[j] = t;
    }
    for (int k = 0; k < n_items; k++) pop[perm[k]] = pow(k + 1.0, -(double)c->data.synth_zipf);

    int *seq = xmalloc((size_t)(H + 1) * sizeof(int));
    char **titles = xmalloc((size_t)H * sizeof(char *));
    for (int u = 0; u < n_users; u++) {
        int fav1 = (int)rng_below(&r, (uint64_t)G), fav2 = G > 1 && rng_uniform(&r) < 0.5 ? (int)rng_below(&r, (uint64_t)G) : fav1;
        double total = 0;
        for (int i = 0; i < n_items; i++) {
            int liked = 0;
            for (int k = d->genre_offsets[i]; k < d->genre_offsets[i + 1]; k++)
                liked |= d->genre_ids[k] == fav1 || d->genre_ids[k] == fav2;
            cum[i] = (total += pop[i] * (liked ? 1.0 : 0.05));
        }
        for (int k = 0; k <= H; k++) {
            int item, dup;
            do {   // draw by inverse CDF, redraw repeats (H + 1 <= n_items / 2, so this ends quickly)
                double x = rng_uniform(&r) * total;
                int lo = 0, hi = n_items - 1;
                while (lo < hi) { int mid = (lo + hi) / 2; if (cum[mid] > x) hi = mid; else lo = mid + 1; }
                item = lo;
                dup = 0;
                for (int m = 0; m < k; m++) dup |= seq[m] == item;
            } while (dup);
            seq[k] = item;
        }
        for (int k = H; k > 0; k--) {   // random order: the target is any of the draws, not the last (depleted) one
            int j = (int)rng_below(&r, (uint64_t)k + 1), t = seq[k];
            seq[k] = seq[j]; seq[j] = t;
        }
        for (int k = 0; k < H; k++) titles[k] = d->titles[seq[k]];
        char *input = input_text(&WORDING_BOOKS, titles, H);
        rows_add(rows, -1, u, seq, H, seq[H], prompt_text(WORDING_BOOKS.instruction, input), completion_text(d->titles[seq[H]]));
        free(input);
    }
    free(seq); free(titles); free(pop); free(cum); free(perm);
}
