#include <omp.h>
#include "device.h"

void set_threads(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
}

const Backend *device_open(const char *name, int threads) {
    const Backend *be = backend_select(name);
    set_threads(threads);
    return be;
}
