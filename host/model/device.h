// Run-time backend choice (--device / run.device).
#ifndef SPREC_DEVICE_H
#define SPREC_DEVICE_H

#include "kernels/backend.h"

// "cpu", "cpu-checked" (kernels/cpu/checked.c) or "cuda"; exits with a clear message when unknown or not available.
const Backend *backend_select(const char *name);
// Sets the OpenMP thread count when threads > 0.
void set_threads(int threads);

#endif
