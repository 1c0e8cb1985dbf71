// Recommendation metrics, method.md section 4, with the reference evaluate.py's
// arithmetic (see docs/metrics.md for each choice and why):
//   - N counts every row; everything else (ranks, top-K lists, DivRatio,
//     ORRatio, GP) only the M rows whose true item is in the catalogue;
//   - GH counts the history of every row, all N of them, as evaluate.py's gh()
//     walks the whole test file;
//   - 0/0 is 0 (M = 0, an empty genre histogram), never NaN.
#include <math.h>
#include <string.h>
#include "kernels/errors.h"
#include "metrics.h"

void metrics_check_k(int k, int n_items) {
    if (k < 1) fail("K must be at least 1 (got %d)", k);
    if (k > n_items) fail("K = %d is larger than the catalogue (%d items): a top-K list of distinct items cannot exist",
                          k, n_items);
}

// ----------------------------------------------------------------------------
// input validation: every id is checked once, up front, so the metric loops
// below can index without checks and a bad file can never miscount silently

static void validate_catalogue(const Catalogue *cat) {
    if (cat->n_items < 1) fail("the catalogue is empty");
    if (cat->n_genres < 0) fail("negative number of genres (%d)", cat->n_genres);
    if (cat->genre_offsets[0] != 0) fail("catalogue genre offsets must start at 0");
    for (int i = 0; i < cat->n_items; i++) {
        if (cat->genre_offsets[i + 1] < cat->genre_offsets[i])
            fail("catalogue genre offsets decrease at item %d", i);
        for (int j = cat->genre_offsets[i]; j < cat->genre_offsets[i + 1]; j++)
            if (cat->genre_ids[j] < 0 || cat->genre_ids[j] >= cat->n_genres)
                fail("item %d has genre id %d outside [0, %d)", i, cat->genre_ids[j], cat->n_genres);
    }
}

// stamp[] marks the items already seen in the current row (stamp == row + 1),
// so the duplicate check costs O(max_k) per row and no clearing
static void validate_rows(const Catalogue *cat, int n_rows, const int *true_item, const int *ranked, int max_k,
                          const int *hist_offsets, const int *hist_items) {
    int *stamp = xcalloc((size_t)cat->n_items, sizeof(int));
    if (hist_offsets[0] != 0) fail("history offsets must start at 0");
    for (int r = 0; r < n_rows; r++) {
        if (true_item[r] < -1 || true_item[r] >= cat->n_items)
            fail("test row %d: true item id %d outside the catalogue [0, %d) (use -1 for a title outside it)",
                 r, true_item[r], cat->n_items);
        if (hist_offsets[r + 1] < hist_offsets[r]) fail("test row %d: history offsets decrease", r);
        for (int j = hist_offsets[r]; j < hist_offsets[r + 1]; j++)
            if (hist_items[j] < -1 || hist_items[j] >= cat->n_items)
                fail("test row %d: history item id %d outside the catalogue [0, %d)", r, hist_items[j], cat->n_items);
        if (true_item[r] < 0) continue;   // its ranking is never read
        const int *row = ranked + (size_t)r * (size_t)max_k;
        for (int j = 0; j < max_k; j++) {
            if (row[j] < 0 || row[j] >= cat->n_items)
                fail("test row %d: ranked item id %d at position %d outside the catalogue [0, %d)",
                     r, row[j], j, cat->n_items);
            if (stamp[row[j]] == r + 1)
                fail("test row %d: item %d appears twice in the ranked list (a top-K list must hold distinct items)",
                     r, row[j]);
            stamp[row[j]] = r + 1;
        }
    }
    free(stamp);
}

// ----------------------------------------------------------------------------
// genre histograms

// An item with n >= 1 genres adds 1/n to each; one without genres adds nothing.
// (1.0 / n, then +=, in this order: the reference's exact arithmetic.)
static void add_item_genres(const Catalogue *cat, int item, double *hist) {
    int begin = cat->genre_offsets[item], n = cat->genre_offsets[item + 1] - begin;
    if (n == 0) return;
    double share = 1.0 / n;
    for (int j = 0; j < n; j++) hist[cat->genre_ids[begin + j]] += share;
}

// Normalises to sum 1. An all-zero histogram (no item with genres was seen)
// stays all zero instead of becoming 0/0 = NaN.
static void normalise(double *hist, int n) {
    double sum = 0;
    for (int g = 0; g < n; g++) sum += hist[g];
    if (sum == 0) return;
    for (int g = 0; g < n; g++) hist[g] /= sum;
}

// GH: every history title of every test row, all N of them (docs/metrics.md)
static void history_histogram(const Catalogue *cat, int n_rows, const int *hist_offsets, const int *hist_items,
                              double *gh) {
    memset(gh, 0, (size_t)cat->n_genres * sizeof(double));
    for (int r = 0; r < n_rows; r++)
        for (int j = hist_offsets[r]; j < hist_offsets[r + 1]; j++)
            if (hist_items[j] >= 0) add_item_genres(cat, hist_items[j], gh);
    normalise(gh, cat->n_genres);
}

// MGU = mean |GP - GH|, DGU = max(GP - GH) - min(GP - GH); both 0 without genres
static void genre_unfairness(const double *gp, const double *gh, int n_genres, double *mgu, double *dgu) {
    *mgu = 0;
    *dgu = 0;
    if (n_genres == 0) return;
    double sum_abs = 0, lo = gp[0] - gh[0], hi = lo;
    for (int g = 0; g < n_genres; g++) {
        double d = gp[g] - gh[g];
        sum_abs += fabs(d);
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    *mgu = sum_abs / n_genres;
    *dgu = hi - lo;
}

// ----------------------------------------------------------------------------
// one K

// Sum of the three largest counts: well defined under ties (which of the tied
// items is "third" does not change the sum); fewer than three distinct items
// sum what there is.
static long top3_count_sum(const int *count, int n_items, int *n_distinct) {
    long top[3] = {0, 0, 0};
    *n_distinct = 0;
    for (int i = 0; i < n_items; i++) {
        long c = count[i];
        if (c == 0) continue;
        (*n_distinct)++;
        if (c > top[0]) { top[2] = top[1]; top[1] = top[0]; top[0] = c; }
        else if (c > top[1]) { top[2] = top[1]; top[1] = c; }
        else if (c > top[2]) top[2] = c;
    }
    return top[0] + top[1] + top[2];
}

static void compute_one(const Catalogue *cat, int n_rows, const int *true_item, const int *ranked, int max_k,
                        const double *gh, int k, int *count, double *gp, Metrics *m) {
    memset(count, 0, (size_t)cat->n_items * sizeof(int));
    memset(gp, 0, (size_t)cat->n_genres * sizeof(double));
    double ndcg_sum = 0;
    int hits = 0, m_rows = 0;
    for (int r = 0; r < n_rows; r++) {
        if (true_item[r] < 0) continue;   // outside the catalogue: counts in N only
        m_rows++;
        const int *row = ranked + (size_t)r * (size_t)max_k;
        for (int j = 0; j < k; j++) {
            if (row[j] == true_item[r]) { ndcg_sum += 1.0 / log2(j + 2.0); hits++; }
            count[row[j]]++;
            add_item_genres(cat, row[j], gp);
        }
    }
    int n_distinct;
    long top3 = top3_count_sum(count, cat->n_items, &n_distinct);
    double slots = (double)m_rows * k;   // M * K recommendations in all
    normalise(gp, cat->n_genres);

    m->k = k;
    m->n_rows = n_rows;
    m->n_in_catalogue = m_rows;
    m->ndcg = ndcg_sum / n_rows;
    m->hr = (double)hits / n_rows;
    m->div_ratio = m_rows ? n_distinct / slots : 0;
    m->or_ratio = m_rows ? (double)top3 / slots : 0;
    genre_unfairness(gp, gh, cat->n_genres, &m->mgu, &m->dgu);
}

void metrics_compute(const Catalogue *cat, int n_rows, const int *true_item, const int *ranked, int max_k,
                     const int *hist_offsets, const int *hist_items, const int *ks, int n_ks, Metrics *out) {
    if (n_rows < 1) fail("no test rows to evaluate (the test split is empty)");
    validate_catalogue(cat);
    metrics_check_k(max_k, cat->n_items);
    for (int i = 0; i < n_ks; i++) {
        if (ks[i] < 1) fail("K must be at least 1 (got %d)", ks[i]);
        if (ks[i] > max_k) fail("K = %d is larger than the ranked lists (%d items each)", ks[i], max_k);
    }
    validate_rows(cat, n_rows, true_item, ranked, max_k, hist_offsets, hist_items);

    double *gh = xcalloc((size_t)cat->n_genres, sizeof(double));
    double *gp = xcalloc((size_t)cat->n_genres, sizeof(double));
    int *count = xcalloc((size_t)cat->n_items, sizeof(int));
    history_histogram(cat, n_rows, hist_offsets, hist_items, gh);   // the same for every K
    for (int i = 0; i < n_ks; i++) compute_one(cat, n_rows, true_item, ranked, max_k, gh, ks[i], count, gp, &out[i]);
    free(gh);
    free(gp);
    free(count);
}

// ----------------------------------------------------------------------------
// output

void metrics_print_table(FILE *f, const char *label, const Metrics *m, int n) {
    fprintf(f, "%-16s %4s %8s %8s %9s %8s %8s %8s\n", "", "K", "NDCG", "HR", "DivRatio", "ORRatio", "MGU", "DGU");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-16.16s %4d %8.4f %8.4f %9.4f %8.4f %8.4f %8.4f\n", i == 0 ? label : "", m[i].k, m[i].ndcg,
                m[i].hr, m[i].div_ratio, m[i].or_ratio, m[i].mgu, m[i].dgu);
    if (n > 0) fprintf(f, "%-16s (N = %d rows, M = %d with the true item in the catalogue)\n", "",
                       m[0].n_rows, m[0].n_in_catalogue);
}

// a JSON string literal: quotes, backslashes and control characters escaped
static void write_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void metrics_write_jsonl(FILE *f, const char *label, int iteration, const Metrics *m, int n) {
    fputs("{\"label\": ", f);
    write_json_string(f, label ? label : "");
    if (iteration >= 0) fprintf(f, ", \"iteration\": %d", iteration);
    else fputs(", \"iteration\": null", f);
    if (n > 0) fprintf(f, ", \"N\": %d, \"M\": %d", m[0].n_rows, m[0].n_in_catalogue);
    // grouped by metric (all K of NDCG, then HR, ...), as the paper's tables read
    const char *names[6] = {"NDCG", "HR", "DivRatio", "ORRatio", "MGU", "DGU"};
    for (int q = 0; q < 6; q++)
        for (int i = 0; i < n; i++) {
            const double v[6] = {m[i].ndcg, m[i].hr, m[i].div_ratio, m[i].or_ratio, m[i].mgu, m[i].dgu};
            fprintf(f, ", \"%s@%d\": %.17g", names[q], m[i].k, v[q]);
        }
    fputs("}\n", f);
}
