// The checked CPU backend (`--device cpu-checked`): the CPU ops behind a wall
// that makes the host's device-memory mistakes fail at once, as they would on a
// GPU. See checked.c and kernels/cuda/README.md ("testing without a GPU").
#ifndef SPREC_CHECKED_H
#define SPREC_CHECKED_H

#include "../backend.h"

// Every device-check error exits with this status (one line on stderr).
#define DEVICE_CHECK_EXIT 3

#endif
