#include <stdint.h>
#include <stdlib.h>
#include "act.h"
#include "kernels/errors.h"

void *act_alloc(const Backend *be, size_t n) { return be->alloc(n * be->act_bytes); }

float act_round(const Backend *be, float x) {
    return be->act_bytes == 2 ? f32_from_bf16(bf16_from_f32(x)) : x;
}

// bounce buffer of at most this many elements, so a big tensor needs no big host copy
#define ACT_BOUNCE (1u << 20)

void act_upload(const Backend *be, void *dst, const float *src, size_t n) {
    if (be->act_bytes == sizeof(float)) { be->upload(dst, src, n * sizeof(float)); return; }
    check(be->act_bytes == 2, "backend '%s': act_bytes %zu is neither fp32 nor bf16", be->name, be->act_bytes);
    uint16_t *b = xmalloc((n < ACT_BOUNCE ? n : ACT_BOUNCE) * sizeof *b + 1);
    for (size_t at = 0; at < n; at += ACT_BOUNCE) {
        size_t k = n - at < ACT_BOUNCE ? n - at : ACT_BOUNCE;
        for (size_t i = 0; i < k; i++) b[i] = bf16_from_f32(src[at + i]);
        be->upload(act_at(be, dst, at), b, k * sizeof *b);
    }
    free(b);
}

void act_download(const Backend *be, float *dst, const void *src, size_t n) {
    if (be->act_bytes == sizeof(float)) { be->download(dst, src, n * sizeof(float)); return; }
    check(be->act_bytes == 2, "backend '%s': act_bytes %zu is neither fp32 nor bf16", be->name, be->act_bytes);
    uint16_t *b = xmalloc((n < ACT_BOUNCE ? n : ACT_BOUNCE) * sizeof *b + 1);
    for (size_t at = 0; at < n; at += ACT_BOUNCE) {
        size_t k = n - at < ACT_BOUNCE ? n - at : ACT_BOUNCE;
        be->download(b, act_at(be, src, at), k * sizeof *b);
        for (size_t i = 0; i < k; i++) dst[at + i] = f32_from_bf16(b[i]);
    }
    free(b);
}
