// Run-time device choice (--device / run.device): the backend registry of
// kernels/backend.h (backend_select: cpu, cpu-checked, cpu-bf16 or cuda;
// backend_supports) and the host's CPU thread count.
#ifndef SPREC_DEVICE_H
#define SPREC_DEVICE_H

#include "kernels/backend.h"

// Sets the OpenMP thread count when threads > 0.
void set_threads(int threads);

#endif
