// Buckets of a split-phase gradient sum (buckets.h): a sorted set of final
// ranges, merged as they arrive, and the next bucket in the fixed order.
#include <stdlib.h>
#include <string.h>
#include "buckets.h"
#include "kernels/errors.h"

void buckets_init(Buckets *b, size_t n, size_t size) {
    check(size >= 1, "buckets: bucket size 0");
    memset(b, 0, sizeof *b);
    b->n = n;
    b->size = size;
    b->count = (n + size - 1) / size;
}

void buckets_free(Buckets *b) {
    free(b->lo);
    free(b->hi);
    memset(b, 0, sizeof *b);
}

static void grow(Buckets *b) {
    b->cap = b->cap ? 2 * b->cap : 16;
    size_t *lo = realloc(b->lo, (size_t)b->cap * sizeof *lo);
    if (lo) b->lo = lo;
    size_t *hi = lo ? realloc(b->hi, (size_t)b->cap * sizeof *hi) : NULL;
    if (!hi) fail("out of memory growing the gradient sum's list of final ranges");
    b->hi = hi;
}

void buckets_ready(Buckets *b, size_t lo, size_t hi) {
    check(lo <= hi && hi <= b->n, "buckets: ready range [%zu, %zu) outside [0, %zu)", lo, hi, b->n);
    if (lo == hi) return;
    // the ranges that touch or overlap [lo, hi) are [i, j): they merge with it into one
    int i = 0;
    while (i < b->n_ranges && b->hi[i] < lo) i++;
    int j = i;
    while (j < b->n_ranges && b->lo[j] <= hi) j++;
    if (i < j) {
        if (b->lo[i] < lo) lo = b->lo[i];
        if (b->hi[j - 1] > hi) hi = b->hi[j - 1];
    }
    const int shift = 1 - (j - i);   // ranges gained (+1) or lost
    if (b->n_ranges + shift > b->cap) grow(b);
    memmove(b->lo + j + shift, b->lo + j, (size_t)(b->n_ranges - j) * sizeof *b->lo);
    memmove(b->hi + j + shift, b->hi + j, (size_t)(b->n_ranges - j) * sizeof *b->hi);
    b->lo[i] = lo;
    b->hi[i] = hi;
    b->n_ranges += shift;
}

void buckets_range(const Buckets *b, size_t k, size_t *lo, size_t *hi) {
    *hi = b->n - k * b->size;
    *lo = *hi > b->size ? *hi - b->size : 0;
}

int buckets_next(Buckets *b, size_t *k) {
    if (b->next == b->count) return 0;
    size_t lo, hi;
    buckets_range(b, b->next, &lo, &hi);
    for (int i = 0; i < b->n_ranges; i++)
        if (b->lo[i] <= lo && hi <= b->hi[i]) { *k = b->next++; return 1; }
    return 0;
}
