// The sharing arithmetic of host/base/dist.h, the same for every implementation.
#include "dist.h"

void dist_share(const Dist *d, int n, int *lo, int *hi) {
    const int base = n / d->world, extra = n % d->world;
    *lo = d->rank * base + (d->rank < extra ? d->rank : extra);
    *hi = *lo + base + (d->rank < extra);
}

int dist_is_root(const Dist *d) { return d->rank == 0; }
