#include <omp.h>
#include "device.h"

void set_threads(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
}
