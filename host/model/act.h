// Act buffers (kernels/backend.h: activations and the compute copy of the
// weights, stored in the backend's act type) seen from the host: allocation,
// addressing and fp32 <-> act transfers. The conversion happens on the host,
// so a bf16 backend moves half the bytes an fp32 one does.
#ifndef SPREC_ACT_H
#define SPREC_ACT_H

#include <stddef.h>
#include "kernels/backend.h"

// A zero-filled act buffer of n elements.
void *act_alloc(const Backend *be, size_t n);
// The address of element i of an act buffer (the host must never do pointer
// arithmetic on act buffers itself: the element size is the backend's).
static inline void *act_at(const Backend *be, const void *p, size_t i) {
    return (char *)p + i * be->act_bytes;
}
// dst (device, act) = src (host, fp32), n elements, rounded as the backend stores.
void act_upload(const Backend *be, void *dst, const float *src, size_t n);
// dst (host, fp32) = src (device, act), n elements, widened exactly.
void act_download(const Backend *be, float *dst, const void *src, size_t n);
// x rounded to the backend's act precision (the identity for fp32): what an
// fp32 value becomes after a trip through an act buffer.
float act_round(const Backend *be, float x);

#endif
