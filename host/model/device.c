#include <string.h>
#include <omp.h>
#include "device.h"
#include "kernels/errors.h"
#include "kernels/cpu/checked.h"

const Backend *backend_select(const char *name) {
    if (strcmp(name, "cpu") == 0) return backend_cpu();
    if (strcmp(name, "cpu-checked") == 0) return backend_cpu_checked();
    if (strcmp(name, "cpu-bf16") == 0) return backend_cpu_bf16();
    if (strcmp(name, "cuda") == 0) {
        const Backend *be = backend_cuda();
        if (!be) fail("device 'cuda' is not available: this sprec was built without the CUDA backend "
                      "(nvcc was not found when it was built)");
        return be;
    }
    fail("unknown device '%s' (expected cpu, cpu-checked, cpu-bf16 or cuda)", name);
}

void set_threads(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
}
