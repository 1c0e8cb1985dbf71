// KV cache allocation, rotary tables, beam reorder.
#include <math.h>
#include <string.h>
#include "kv_cache.h"
#include "kernels/errors.h"

void kv_cache_create(KVCache *kv, const Model *m, int R, int P) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    check(R >= 1 && P >= 1, "kv cache of %d rows x %d positions", R, P);
    if (P > c->max_seq_len) fail("generation needs %d positions but the model's max_seq_len is %d", P, c->max_seq_len);
    memset(kv, 0, sizeof *kv);
    kv->R = R; kv->P = P; kv->n_layers = c->n_layers; kv->W = c->n_kv_heads * c->head_dim;
    kv->k = xcalloc((size_t)c->n_layers, sizeof(void *));
    kv->v = xcalloc((size_t)c->n_layers, sizeof(void *));
    const size_t n = (size_t)R * P * kv->W;
    for (int l = 0; l < c->n_layers; l++) { kv->k[l] = be->kv_alloc(n); kv->v[l] = be->kv_alloc(n); }
    kv->len = xcalloc((size_t)R, sizeof(int));
    const size_t tab = (size_t)P * (c->head_dim / 2);
    float *cs = xmalloc(tab * sizeof(float)), *sn = xmalloc(tab * sizeof(float));
    rope_tables_host(c, P, cs, sn);
    kv->rope_cos = be->alloc(tab * sizeof(float));
    kv->rope_sin = be->alloc(tab * sizeof(float));
    be->upload(kv->rope_cos, cs, tab * sizeof(float));
    be->upload(kv->rope_sin, sn, tab * sizeof(float));
    free(cs); free(sn);
}

void kv_cache_free(KVCache *kv, const Backend *be) {
    for (int l = 0; l < kv->n_layers; l++) { be->free(kv->k[l]); be->free(kv->v[l]); }
    free(kv->k); free(kv->v); free(kv->len);
    be->free(kv->rope_cos); be->free(kv->rope_sin);
    memset(kv, 0, sizeof *kv);
}

void kv_cache_reset(KVCache *kv) { memset(kv->len, 0, (size_t)kv->R * sizeof(int)); }

void kv_cache_reorder(KVCache *kv, const Backend *be, const int *src, int n) {
    check(n <= kv->R, "reorder of %d rows in a cache of %d", n, kv->R);
    int maxlen = 0, *len = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        check(src[i] >= 0 && src[i] < kv->R, "reorder source row %d outside [0, %d)", src[i], kv->R);
        len[i] = kv->len[src[i]];
        maxlen = len[i] > maxlen ? len[i] : maxlen;
    }
    if (maxlen > 0) {
        int *dsrc = be->alloc((size_t)n * sizeof(int));
        be->upload(dsrc, src, (size_t)n * sizeof(int));
        for (int l = 0; l < kv->n_layers; l++) {
            be->kv_gather(kv->k[l], dsrc, n, maxlen, kv->P, kv->W);
            be->kv_gather(kv->v[l], dsrc, n, maxlen, kv->P, kv->W);
        }
        be->free(dsrc);
    }
    memcpy(kv->len, len, (size_t)n * sizeof(int));
    free(len);
}
