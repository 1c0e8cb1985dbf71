// AdamW with decoupled weight decay, bias correction, global-norm clipping and
// a warm-up + decay learning-rate schedule. Moments live on the device; a step
// is one gradient-norm reduction and one fused AdamW launch over the buffer.
// ZeRO-1 ([train] zero = 1): each rank holds the moments of its shard of the
// trainable buffer only (dist_shard) and steps that shard; the ranks then
// all-gather the updated weights.
#ifndef SPREC_OPTIMIZER_H
#define SPREC_OPTIMIZER_H

#include "model.h"

typedef struct {
    float *m, *v;                // [hi - lo] each, device: the moments of elements lo .. hi-1
    size_t numel;                // model->numel, or model->lora->numel with LoRA
    int zero;                    // ZeRO-1: [lo, hi) is this rank's shard; else [0, numel)
    size_t lo, hi;
    AdamwTensor *tensors;        // [n_tensors] device: the trainable tensors within [lo, hi) (offsets from lo)
                                 // and their decay flags
    int n_tensors;
    long step;                   // optimizer steps taken
    float beta1, beta2, eps, weight_decay, grad_clip;
    int decay_norms;
    int sum_begun;               // adamw_sum_begin started the gradient sum; adamw_step ends it
} AdamW;

void adamw_create(AdamW *o, const Model *model, float beta1, float beta2, float eps,
                  float weight_decay, float grad_clip, int decay_norms);
// The same with zero = 1: ZeRO-1 over the ranks of dist_world() (one rank: the
// shard is everything, the same steps). Refused (one line) for a backend whose
// memory is not host memory with several ranks: NCCL ZeRO is not implemented.
void adamw_create_zero(AdamW *o, const Model *model, float beta1, float beta2, float eps, float weight_decay,
                       float grad_clip, int decay_norms, int zero);
void adamw_free(AdamW *o, const Model *model);
// The moments cover the trainable set: model->params, or only the LoRA adapters
// when model->lora is set at adamw_create (enable LoRA first).
// One step on the trainable parameters with their gradients (already summed over
// micro-batches); with LoRA the base parameters are never touched.
// Returns the gradient norm before clipping.
double adamw_step(AdamW *o, Model *model, float lr);
// Call before this rank's last backward of the step: the gradient sum over ranks
// (dist_sum_begin) then starts during that backward, bucket by bucket as it
// finishes them (model->grads_final), and the next adamw_step ends it. Without
// it adamw_step sums after the backward. ZeRO-1: nothing (its reduce-scatter
// runs in adamw_step).
void adamw_sum_begin(AdamW *o, Model *model);

// Checkpoints hold the whole moments: the same format with and without ZeRO,
// so a run resumes at any rank count and either zero. Where o's moments are
// whole already (no ZeRO, or one rank) these return o itself and the others
// do nothing.
// For checkpoint_save on rank 0: whole = o with the ranks' shards of the
// moments gathered there (a collective); adamw_gather_free frees them.
const AdamW *adamw_gather(const AdamW *o, const Model *model, AdamW *whole);
void adamw_gather_free(const AdamW *o, const Model *model, AdamW *whole);
// For checkpoint_load on every rank: whole = o with whole-size moments to load
// into; adamw_scatter then takes this rank's shard and the step from them and
// frees them.
AdamW *adamw_whole(AdamW *o, const Model *model, AdamW *whole);
void adamw_scatter(AdamW *o, const Model *model, AdamW *whole);

// Learning rate at step (0-based): linear warm-up to peak, then constant,
// linear or cosine decay to min_lr at total_steps.
float lr_at(int step, int total_steps, int warmup, float peak, float min_lr, const char *schedule);

#endif
