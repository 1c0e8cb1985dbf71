// LoRA adapters (Hu et al. 2021, as Hugging Face PEFT implements them) on the
// linear layers of a Model: y = x W^T + (alpha/r) * (dropout(x) A^T) B^T with
// A [r, in], B [out, r]. While adapters are enabled the base parameters are
// frozen (no gradients computed, no optimizer state). Design: docs/lora.md.
#ifndef SPREC_LORA_H
#define SPREC_LORA_H

#include <stdint.h>
#include "model.h"

// Target modules, in table order. LORA_TARGETS_ALL = q,k,v,o,gate,up,down.
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_N_TARGETS };
#define LORA_TARGETS_ALL ((1u << LORA_N_TARGETS) - 1)

typedef struct {
    int rank;                    // r >= 1
    float alpha;                 // scaling = alpha / r (PEFT's lora_alpha, no rsLoRA)
    float dropout;               // on the adapter input, 0 <= dropout < 1; only while training
    unsigned targets;            // bitmask: 1u << LORA_Q | ...
    uint64_t seed;               // A's initialisation and the dropout masks
} LoraConfig;

// A [r,in], B [out,r]; NULL when not targeted. The elements are the buffer's:
// act in the compute views, fp32 in the master and gradient views.
typedef struct { void *A, *B; int in, out; } LoraPair;

typedef struct Lora {
    LoraConfig cfg;
    float scale;                 // alpha / rank
    ParamInfo *table; int n_params; size_t numel;   // PEFT names, layer by layer, A then B
    float *params, *grads;       // flat device buffers, numel floats each (master, gradients)
    void *wc;                    // compute copy of params (act; == params when act_bytes is 4)
    LoraPair *w, *g, *master;    // [n_layers * LORA_N_TARGETS] views into wc / grads / params
    int training;                // 1: dropout active (see lora_set_train)
    uint64_t key;                // dropout key of the current micro-batch
    // activations: h[l][t] = scale * (dropout(x) A^T) [N, r], kept for the backward
    int cap_N;
    void *h;                     // act [n_layers * LORA_N_TARGETS, cap_N, r]
    void *xd, *ybuf;             // act scratch [N, max in], [N, max out]
    float *dxd, *dh;             // fp32 scratch [N, max in], [N, r]
} Lora;

// Short names "q","k","v","o","gate","up","down" and their module paths.
extern const char *const LORA_TARGET_NAMES[LORA_N_TARGETS];
// Parses "q,k,v,o,gate,up,down" (any subset, or "all") into a bitmask;
// returns 0 on success, -1 (with the bad word in err) otherwise.
int lora_parse_targets(const char *list, unsigned *targets, char *err, size_t cap);
// Writes the bitmask as a comma list ("q,k,v") into buf.
void lora_targets_str(unsigned targets, char *buf, size_t cap);
// Checks ranges; on a problem fails naming `where`.
void lora_config_validate(const LoraConfig *c, const char *where);

// Allocates the adapters (A ~ U(-1/sqrt(in), 1/sqrt(in)) as PEFT's
// kaiming_uniform_(a=sqrt(5)), B = 0), freezes the base. Fails if already enabled.
void model_enable_lora(Model *m, const LoraConfig *c);
// W += (alpha/r) B A for every adapter, then frees the adapters: the model is a
// plain (unfrozen) model again whose forward equals the adapted one.
void model_merge_lora(Model *m);
// Its first half (lora.c): the fp32 master weights gain the adapters, which are
// freed; the compute copy is left stale (model_merge_lora refreshes it).
void lora_merge_into_base(Model *m);
// Frees the adapters without merging (model_free calls it).
void lora_free(Model *m);
// The adapters' compute copy from their master weights (model_sync_compute).
void lora_sync_compute(Model *m);
// lo->params = params and the master views into it (model_set_trainable_master).
void lora_set_master(Model *m, float *params);
// Dropout switch for the next forward/backward pair: training = 1 applies
// dropout with the mask of micro-batch `micro_index` (use the global micro-batch
// count, step * grad_accum + micro, so a resumed run redraws the same masks);
// training = 0 (the default: evaluation, reference log-probs) is the identity.
// Generation never applies dropout (lora_fwd with scratch), whatever this says.
void lora_set_train(Model *m, int training, uint64_t micro_index);

// Called by layer.c: adds the adapter path of (layer, target) into out[N,out];
// no-op when that module is not targeted. out, inp act.
// - scratch NULL (training): the adapter's hidden state goes to the kept
//   activations (Lora.h, sized by lora_acts_ensure(m, N) first) for lora_bwd,
//   and dropout applies as lora_set_train says.
// - scratch set (inference: the KV-cache decode step): an act buffer of
//   lora_scratch_numel(m, N) elements takes the intermediates, and there is
//   no dropout whatever lora_set_train said. Nothing the backward reads is
//   touched, so a generation between a forward and its backward would not
//   corrupt it (the trainers generate only between optimizer steps anyway).
void lora_acts_ensure(Model *m, int N);
size_t lora_scratch_numel(const Model *m, int N);
void lora_fwd(Model *m, int layer, int target, void *out, const void *inp, int N, void *scratch);
// Called by forward.c: adds d inp and the adapter gradients; inp must be the
// same buffer contents as in the forward. dinp, dout fp32.
void lora_bwd(Model *m, int layer, int target, float *dinp, const float *dout, const void *inp, int N);

#endif
