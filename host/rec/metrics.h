// Recommendation metrics of method.md section 4 (NDCG, HR, DivRatio, ORRatio,
// MGU, DGU at several K), computed from top-K lists however they were produced
// (constrained beam search, L2 grounding, a file). docs/metrics.md has the
// definitions, the choices where the spec is silent, and the JSONL format.
#ifndef SPREC_METRICS_H
#define SPREC_METRICS_H

#include <stdio.h>

// The catalogue as the metrics see it: item i has the genres
// genre_ids[genre_offsets[i] .. genre_offsets[i+1]), already filtered to the
// dataset's genre list (ids in [0, n_genres)); an item may have none.
typedef struct {
    int n_items;
    int n_genres;
    const int *genre_offsets;   // [n_items + 1]
    const int *genre_ids;       // [genre_offsets[n_items]]
} Catalogue;

typedef struct {
    int k;
    int n_rows;           // N: every test row (the NDCG/HR denominator)
    int n_in_catalogue;   // M: rows whose true item is in the catalogue
    double ndcg, hr, div_ratio, or_ratio, mgu, dgu;
} Metrics;

// Fails (one-line user error) unless 1 <= k <= n_items: a top-K list of
// distinct catalogue items cannot be longer than the catalogue.
void metrics_check_k(int k, int n_items);

// Computes out[i] for K = ks[i], i < n_ks.
//   true_item[r]  the row's true item id, -1 when it is outside the catalogue
//   ranked        [n_rows, max_k] item ids, best first; only rows with
//                 true_item >= 0 are read (rows outside the catalogue may hold anything)
//   hist_offsets  [n_rows + 1]; row r's history titles are
//                 hist_items[hist_offsets[r] .. hist_offsets[r+1]), -1 for a
//                 title outside the catalogue
// Bad input (ids out of range, a duplicate item inside one ranked list,
// K > max_k, no rows) ends in fail().
void metrics_compute(const Catalogue *cat, int n_rows, const int *true_item, const int *ranked, int max_k,
                     const int *hist_offsets, const int *hist_items, const int *ks, int n_ks, Metrics *out);

// A human-readable table, one line per K.
void metrics_print_table(FILE *f, const char *label, const Metrics *m, int n);

// One JSON object on one line for an evaluation (all K): label, iteration
// (null when negative), N, M and "NDCG@K", "HR@K", "DivRatio@K", "ORRatio@K",
// "MGU@K", "DGU@K" for each K, with doubles printed to round-trip exactly.
void metrics_write_jsonl(FILE *f, const char *label, int iteration, const Metrics *m, int n);

#endif
