// The KV cache of generation: per layer, the rotated keys and the values of
// every position seen so far, for R rows (sequences, or beams) of up to P
// positions each. The storage lives behind the Backend (fp32 on CPU, bf16 on
// CUDA): the host only knows how many positions each row holds.
#ifndef SPREC_KV_CACHE_H
#define SPREC_KV_CACHE_H

#include "model/model.h"

typedef struct {
    int R, P;                    // capacity: rows, positions per row
    int n_layers, W;             // W = n_kv_heads * head_dim
    void **k, **v;               // [n_layers] device buffers [R, P, NKV, D]
    int *len;                    // host [R]: positions filled in each row
    float *rope_cos, *rope_sin;  // device [P, D/2], the same tables as the training forward
} KVCache;

// P <= the model's max_seq_len. Rows start empty.
void kv_cache_create(KVCache *kv, const Model *m, int R, int P);
void kv_cache_free(KVCache *kv, const Backend *be);
// Forget everything (rows empty); the storage is kept.
void kv_cache_reset(KVCache *kv);
// Beam reorder: row i becomes a copy of old row src[i] (host array, i < n),
// lengths included. Only the filled positions are copied.
void kv_cache_reorder(KVCache *kv, const Backend *be, const int *src, int n);


#endif
