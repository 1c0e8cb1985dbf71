// Ranks: the one interface through which trainers and evaluation split work
// between processes and combine what they computed. Work is split into
// contiguous shares in rank order (dist_share); results are combined by sums
// (gradients, losses, statistics) and by gathering every rank's share of an
// array (negatives, reference log-probs, top-K lists).
//
// This build has the single-process implementation (host/base/dist_single.c: rank 0
// of 1, every combine the identity; the sharing arithmetic is host/base/dist.c). The multi-process one (MPI for the CPU
// backend, NCCL for device buffers, started by mpirun/srun) implements the
// same functions, so the trainers do not change. Every rank must make the same
// calls in the same order (collectives).
#ifndef SPREC_DIST_H
#define SPREC_DIST_H

#include <stddef.h>
#include "kernels/backend.h"

typedef struct {
    int rank, world;
} Dist;

// The process's place in the job (initialised on first use).
const Dist *dist_world(void);
// This rank's share [*lo, *hi) of n items: contiguous, in rank order, sizes
// differing by at most one (the first n % world ranks get the extra item).
void dist_share(const Dist *d, int n, int *lo, int *hi);
// x[0..n) = the sum over ranks of x, in place, for a device buffer (gradients).
void dist_sum_device(const Dist *d, const Backend *be, float *x, size_t n);
// x[0..n) = the sum over ranks of x, in place, for host values.
void dist_sum_host(const Dist *d, double *x, int n);
// array holds n items of item_bytes; each rank has filled items [lo, hi), and
// the ranks' ranges tile [0, n) in rank order (e.g. dist_share's, or whole
// micro-batches of them). Afterwards every rank holds all n items (host memory).
void dist_gather(const Dist *d, void *array, size_t item_bytes, int lo, int hi, int n);
// 1 on the rank that writes files and prints progress (rank 0).
int dist_is_root(const Dist *d);

#endif
