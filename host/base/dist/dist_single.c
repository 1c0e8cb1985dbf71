// The single-process implementation of host/base/dist.h: one rank, so a share is
// everything and every combine is the identity.
#include "dist.h"

int dist_start(int splits_work) { (void)splits_work; return 1; }

void dist_finish(void) {}

void dist_check_same(const Dist *d, const char *what, const char *text, size_t n) { (void)d; (void)what; (void)text; (void)n; }

void dist_check_backend(const Dist *d, const Backend *be) { (void)d; (void)be; }

void dist_set_options(double timeout_s, double bucket_mb) { (void)timeout_s; (void)bucket_mb; }

void dist_set_heartbeat(double heartbeat_s) { (void)heartbeat_s; }

const Dist *dist_world(void) {
    static const Dist one = {.rank = 0, .world = 1};
    return &one;
}

void dist_sum_begin(const Dist *d, const Backend *be, float *x, size_t n) { (void)d; (void)be; (void)x; (void)n; }
void dist_sum_ready(size_t lo, size_t hi) { (void)lo; (void)hi; }
void dist_sum_end(void) {}
void dist_set_overlap(int on) { (void)on; }

void dist_sum_host(const Dist *d, double *x, int n) { (void)d; (void)x; (void)n; }

void dist_gather(const Dist *d, void *array, size_t item_bytes, int lo, int hi, int n) {
    (void)d; (void)array; (void)item_bytes; (void)lo; (void)hi; (void)n;
}

void dist_reduce_scatter_device(const Dist *d, const Backend *be, float *x, size_t n) { (void)d; (void)be; (void)x; (void)n; }

void dist_allgather_device(const Dist *d, const Backend *be, void *x, size_t n, size_t elem_bytes) {
    (void)d; (void)be; (void)x; (void)n; (void)elem_bytes;
}

void dist_gather_shards(const Dist *d, const Backend *be, const float *shard, size_t n, size_t a, size_t b,
                        float *out) {
    be->download(out, shard + a, (b - a) * sizeof(float));
    (void)d; (void)n;
}

DistCounters dist_counters(void) { return (DistCounters){0, 0, 0}; }
