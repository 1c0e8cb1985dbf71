// Ranks: the one interface through which trainers and evaluation split work
// between processes and combine what they computed. Work is split into
// contiguous shares in rank order (dist_share); results are combined by sums
// (gradients, losses, statistics) and by gathering every rank's share of an
// array (negatives, reference log-probs, top-K lists).
//
// Two implementations, one per build: host/base/dist_single.c (no MPI: rank 0
// of 1, every combine the identity) and host/base/dist_mpi.c (Open MPI, when
// make finds mpicc: the ranks mpirun/srun started; a process started without a
// launcher is rank 0 of 1 and never touches MPI). The sharing arithmetic is
// host/base/dist.c. Every rank must make the same calls in the same order
// (collectives). Sums run in rank order, so the same world size gives
// bit-identical results. Multi-rank device sums: host-memory backends over MPI,
// CUDA over NCCL when the build has it (else refused).
#ifndef SPREC_DIST_H
#define SPREC_DIST_H

#include <stddef.h>
#include "kernels/backend.h"

typedef struct {
    int rank, world;
} Dist;

// Called once by main before the command. splits_work = 0: the command runs on
// rank 0 alone, as a world of 1 (prepare, import, ...): the other ranks return
// 0 and main ends them quietly. On ranks other than 0 stdout goes to /dev/null
// (rank 0 prints progress). Under a launcher with several ranks: every rank
// checks that it runs the same binary as rank 0, and any exit with a non-zero
// status ends the whole job (no rank is left waiting in a collective).
int dist_start(int splits_work);
// Ends this rank's part in the job now (what a successful exit does: the
// communication summary on rank 0, MPI finalized), so that an exit status that
// every rank agreed on (e.g. the resumable stop of train.h) ends the job as
// that status instead of aborting it as a failure. No collective may follow.
void dist_finish(void);
// The process's place in the job (dist_start(1) on first use when main did not call it).
const Dist *dist_world(void);
// Every rank's text[0..n) must equal rank 0's (the resolved config): otherwise the
// lowest rank that differs names itself, what, and its first differing line in one
// error line, and the job exits with status 1. A collective.
void dist_check_same(const Dist *d, const char *what, const char *text, size_t n);
// Prepares the sums for the backend: on CUDA under a launcher, the NCCL
// communicator (a collective); without NCCL in the build, refuses (one line)
// CUDA when world > 1.
void dist_check_backend(const Dist *d, const Backend *be);
// [dist] keys (config_check_ranks sets them). timeout_s, the watchdog: a
// collective that waits longer than this for some rank ends the job with one
// line naming the collective and the ranks that did not arrive; 0 = wait
// forever (default 1800). bucket_mb: the gradient sum's buckets (dist_sum_begin)
// have this size (default 4).
void dist_set_options(double timeout_s, double bucket_mb);
// [dist] heartbeat_s (config_check_ranks): a rank from which no heartbeat came for
// this long (stopped, dead, node lost) ends the job with one line naming it; the
// beats come from a thread, so a rank busy alone keeps beating. 0 = never (default 30).
void dist_set_heartbeat(double heartbeat_s);
// This rank's share [*lo, *hi) of n items: contiguous, in rank order, sizes
// differing by at most one (the first n % world ranks get the extra item).
void dist_share(const Dist *d, int n, int *lo, int *hi);
// This rank's share [*lo, *hi) of n items whose costs (>= 0, e.g. estimated
// seconds) differ: contiguous, in rank order, item i going to the rank whose
// slice of the total cost holds the item's midpoint, so every rank's summed
// cost is within one item of total / world. All costs 0: dist_share.
void dist_share_cost(const Dist *d, const double *cost, int n, int *lo, int *hi);
// How evenly a stage was shared: every rank passes the seconds it was busy (before
// the gather that waits for the slowest); returns the ranks' idle share of the
// stage, sum over ranks of (slowest - busy) / (world x slowest), and rank 0 prints
// it with several ranks ("STAGE: N ranks busy a-b s, idle x% of the stage"). One
// rank: 0, nothing printed. A collective.
double dist_log_balance(const Dist *d, const char *stage, double busy_s);
// x[0..n) = the sum over ranks of x, in place, for a device buffer (gradients),
// in three phases so that it overlaps the backward that computes x:
// dist_sum_begin (reads nothing yet); dist_sum_ready(lo, hi) whenever elements
// [lo, hi) are final (empty, repeated and out-of-order ranges are fine): every
// bucket of [dist] bucket_mb that is now wholly final starts (with [dist]
// overlap) and those in flight move on; dist_sum_end: everything is final,
// finish and wait (a collective). The buckets are fixed by n and the bucket size
// and counted from the end of x (the backward finishes the gradients from the end
// towards the start: host/base/dist/buckets.h); every rank starts them in the
// same order, and every element is summed in rank order (NCCL: its own fixed
// order), so the sums do not depend on the ranges' timing, on overlap or on the
// bucket size. One sum at a time.
void dist_sum_begin(const Dist *d, const Backend *be, float *x, size_t n);
void dist_sum_ready(size_t lo, size_t hi);
void dist_sum_end(void);
// The three at once (dist.c), for a buffer that is final already.
void dist_sum_device(const Dist *d, const Backend *be, float *x, size_t n);
// [dist] overlap (config_check_ranks): 0 = dist_sum_ready only records, every
// bucket starts in dist_sum_end (the order before overlap, for comparison).
void dist_set_overlap(int on);
// x[0..n) = the sum over ranks of x, in place, for host values.
void dist_sum_host(const Dist *d, double *x, int n);
// array holds n items of item_bytes; each rank has filled items [lo, hi), and
// the ranks' ranges tile [0, n) in rank order (e.g. dist_share's, or whole
// micro-batches of them). Afterwards every rank holds all n items (host memory).
void dist_gather(const Dist *d, void *array, size_t item_bytes, int lo, int hi, int n);
// ZeRO-1 (host/model/optimizer.c): a buffer of n elements split into contiguous
// shards in rank order, sizes differing by at most one; this rank's is [*lo, *hi).
// (Inline: both implementations and the optimizer use it.)
static inline void dist_shard(const Dist *d, size_t n, size_t *lo, size_t *hi) {
    const size_t w = (size_t)d->world, r = (size_t)d->rank, base = n / w, extra = n % w;
    *lo = r * base + (r < extra ? r : extra);
    *hi = *lo + base + (r < extra);
}
// Device buffers: MPI on host-memory backends (CPU), NCCL on CUDA (one grouped
// ncclReduce / ncclBroadcast / ncclSend per shard; built, not run on several GPUs here).
// Reduce-scatter: this rank's shard of x[0..n) becomes the sum over ranks of that
// shard; over MPI in rank order (the very sums of dist_sum_device, bit for bit), in
// buckets of [dist] bucket_mb; the rest of x keeps stale values.
void dist_reduce_scatter_device(const Dist *d, const Backend *be, float *x, size_t n);
// All-gather: every rank's shard of x[0..n) (elements of elem_bytes) to every rank.
void dist_allgather_device(const Dist *d, const Backend *be, void *x, size_t n, size_t elem_bytes);
// Rank 0's out[0..b-a) = elements [a, b) of a buffer of n elements whose shards the
// ranks hold (shard: this rank's [lo, hi) of it; out: host memory, written on rank 0
// only): a checkpoint streams sharded state tensor by tensor.
void dist_gather_shards(const Dist *d, const Backend *be, const float *shard, size_t n, size_t a, size_t b,
                        float *out);
// 1 on the rank that writes files and prints progress (rank 0).
int dist_is_root(const Dist *d);
// This rank's communication so far (sprec bench: per step, as differences): gradient
// sums taken (dist_sum_device, dist_reduce_scatter_device), the bytes they summed
// (4 x elements each), and the seconds waited in collectives (every wait, imbalance
// between the ranks included). Without MPI or with one rank: zeros.
typedef struct { long sums; double summed_bytes, waited_s; } DistCounters;
DistCounters dist_counters(void);

#endif
