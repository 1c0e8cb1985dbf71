// One transformer layer's forward, written once for the training forward
// (forward.c: whole [B,T] sequences, activations kept for the backward) and
// the KV-cache decode step (gen/generate.c: blocks of new tokens appended to
// cached sequences, activations in scratch). The two differ only in the
// attention step and in the buffers; which is which comes in a LayerMode, so
// model/ needs nothing from gen/.
#ifndef SPREC_LAYER_H
#define SPREC_LAYER_H

#include "model.h"

typedef struct {
    const float *rope_cos, *rope_sin;   // device [positions, D/2]
    // k_cache NULL: whole sequences, B rows of T positions, lengths device [B];
    // rope_fwd and attention_fwd (which keeps lse for the backward)
    int B, T; const int *lengths;
    // k_cache set: this layer's cache k, v [R,P,NKV,D]; R rows of S new
    // tokens, row r's first at position start[r], n_new[r] of them real, pos
    // [R*S] each token's position (device); rope_at_fwd, kv_write and
    // attention_cached_fwd
    void *k_cache, *v_cache; const int *start, *n_new, *pos; int R, S, P;
    // LoRA intermediates (lora_fwd's scratch): NULL while training (kept for
    // the backward), lora_scratch_numel(m, N) act elements while decoding
    void *lora_scratch;
} LayerMode;

// Layer l on N token rows: reads L->x (the residual stream) and L->ln1 (its
// norm, computed by the caller); writes q, k, v, att (and lse for whole
// sequences), x2 = x + attention, ln2/rstd2, gate, up, act, and leaves the
// MLP branch's output in tmp [N,C]. The residual add x' = x2 + tmp is the
// caller's, fused with the norm that reads it (the next layer's ln1, or the
// final norm: the two callers differ there). LoRA adapters add their path
// after each targeted matmul.
void layer_forward(Model *m, int l, const LayerActs *L, void *tmp, const LayerMode *mode, int N);

#endif
