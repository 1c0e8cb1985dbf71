// Run-time device choice (--device / run.device): the backend registry of
// kernels/backend.h (backend_select: cpu, cpu-checked, cpu-bf16 or cuda;
// backend_supports) and the host's CPU thread count.
#ifndef SPREC_DEVICE_H
#define SPREC_DEVICE_H

#include "kernels/backend.h"

// Sets the OpenMP thread count when threads > 0.
void set_threads(int threads);
// What every command does first: the backend named by --device / run.device
// (kernels/registry.c; a one-line error when unknown or not built) and the
// thread count (threads > 0; 0 keeps OpenMP's default).
const Backend *device_open(const char *name, int threads);

#endif
