// The bookkeeping of a split-phase gradient sum (dist_sum_begin / ready / end in
// dist.h): which buckets of a buffer of n elements are wholly final, and which
// one to start next. The buckets depend on n and the bucket size alone: bucket k
// is [n - (k+1) size, n - k size) clipped at 0, counted from the end of the
// buffer because the backward finishes the gradients from the end towards the
// start. They are started in order k = 0, 1, ..., each exactly once, as soon as
// it is wholly final, so every rank starts the same buckets in the same order
// whatever the order, overlap or timing of the ranges it reports.
#ifndef SPREC_BUCKETS_H
#define SPREC_BUCKETS_H

#include <stddef.h>

typedef struct {
    size_t n, size, count;   // elements, bucket size, buckets
    size_t next;             // the next bucket to start (count: all started)
    size_t *lo, *hi;         // the final elements: disjoint ranges [lo[i], hi[i]), ascending
    int n_ranges, cap;
} Buckets;

void buckets_init(Buckets *b, size_t n, size_t size);
void buckets_free(Buckets *b);
// Elements [lo, hi) are final (lo <= hi <= n; empty and repeated ranges are fine).
void buckets_ready(Buckets *b, size_t lo, size_t hi);
// Bucket k's elements [*lo, *hi).
void buckets_range(const Buckets *b, size_t k, size_t *lo, size_t *hi);
// 1 when the next bucket is wholly final: it counts as started, *k is its index;
// 0 when it is not (or every bucket has started).
int buckets_next(Buckets *b, size_t *k);

#endif
