// The sharing arithmetic of host/base/dist.h, and what is written once over the
// implementations' primitives; the same for every implementation.
#include <stdio.h>
#include <stdlib.h>
#include "dist.h"
#include "kernels/errors.h"

void dist_share(const Dist *d, int n, int *lo, int *hi) {
    const int base = n / d->world, extra = n % d->world;
    *lo = d->rank * base + (d->rank < extra ? d->rank : extra);
    *hi = *lo + base + (d->rank < extra);
}

void dist_share_cost(const Dist *d, const double *cost, int n, int *lo, int *hi) {
    double total = 0;
    for (int i = 0; i < n; i++) total += cost[i];
    if (!(total > 0)) { dist_share(d, n, lo, hi); return; }
    // the same sums in the same order on every rank: the shares tile [0, n) exactly
    double before = 0;
    *lo = *hi = n;
    for (int i = 0, found_lo = 0; i < n; i++) {
        int r = (int)((before + 0.5 * cost[i]) / total * d->world);
        if (r >= d->world) r = d->world - 1;
        if (!found_lo && r >= d->rank) { *lo = i; found_lo = 1; }
        if (r > d->rank) { *hi = i; break; }
        before += cost[i];
    }
    if (*hi < *lo) *hi = *lo;
}

double dist_log_balance(const Dist *d, const char *stage, double busy_s) {
    if (d->world == 1) return 0;
    double *busy = xcalloc((size_t)d->world, sizeof(double));
    busy[d->rank] = busy_s;
    dist_sum_host(d, busy, d->world);   // every rank's seconds (the others' slots are 0)
    double fastest = busy[0], slowest = 0, idle = 0;
    for (int r = 0; r < d->world; r++) {
        if (busy[r] < fastest) fastest = busy[r];
        if (busy[r] > slowest) slowest = busy[r];
    }
    for (int r = 0; r < d->world; r++) idle += slowest - busy[r];
    free(busy);
    const double share = slowest > 0 ? idle / (d->world * slowest) : 0;
    if (dist_is_root(d))
        printf("%s: %d ranks busy %.2f-%.2f s, idle %.1f%% of the stage\n", stage, d->world, fastest, slowest, 100 * share);
    return share;
}

int dist_is_root(const Dist *d) { return d->rank == 0; }

void dist_sum_device(const Dist *d, const Backend *be, float *x, size_t n) {
    dist_sum_begin(d, be, x, n);
    dist_sum_ready(0, n);
    dist_sum_end();
}
