// AdamW with decoupled weight decay, bias correction, global-norm clipping and
// a warm-up + decay learning-rate schedule. Moments live on the device; a step
// is one gradient-norm reduction and one fused AdamW launch over the buffer.
// ZeRO-1 ([train] zero = 1): each rank holds the moments of its shard of the
// trainable buffer only (dist_shard) and steps that shard; the ranks then
// all-gather the updated weights. Where the compute copy is separate from the
// fp32 master (act_bytes 2: cpu-bf16, CUDA) the master is sharded too: each rank
// keeps its shard's fp32 master, steps it, writes its shard of the compute copy,
// and the ranks all-gather the compute copy (bf16) alone.
#ifndef SPREC_OPTIMIZER_H
#define SPREC_OPTIMIZER_H

#include "model.h"

typedef struct {
    float *m, *v;                // [hi - lo] each, device: the moments of elements lo .. hi-1
    float *master;               // [hi - lo] device: ZeRO-1's shard of the fp32 master weights while the model's
                                 // is NULL (model_trainable_master); NULL: the model holds them whole
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

void adamw_create(AdamW *o, Model *model, float beta1, float beta2, float eps,
                  float weight_decay, float grad_clip, int decay_norms);
// The same with zero = 1: ZeRO-1 over the ranks of dist_world() (one rank: the
// shard is everything, the same steps). With several ranks and a separate compute
// copy it takes the model's trainable master weights, keeping this rank's shard
// (create it after loading or merging them). Its collectives run over MPI on
// host-memory backends and over NCCL on CUDA (base/dist/dist.h).
void adamw_create_zero(AdamW *o, Model *model, float beta1, float beta2, float eps, float weight_decay,
                       float grad_clip, int decay_norms, int zero);
// Gives a sharded master back to the model whole (an all-gather: a collective).
void adamw_free(AdamW *o, Model *model);
// adamw_free and model_free at a trainer's end: a sharded master is dropped, not
// gathered (nothing reads it again; gathering it would be the run's memory peak).
void adamw_free_model(AdamW *o, Model *model);
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

// Checkpoints hold the whole moments and master: the same format with and without
// ZeRO, so a run resumes at any rank count and either zero. checkpoint_save streams
// the shards to rank 0 tensor by tensor; checkpoint_load keeps this rank's shard.
// model_sync_compute for a model whose master o may hold as shards: each rank
// converts its shard, then the ranks all-gather the compute copy (a collective).
void adamw_sync_compute(const AdamW *o, Model *model);

// Learning rate at step (0-based): linear warm-up to peak, then constant,
// linear or cosine decay to min_lr at total_steps.
float lr_at(int step, int total_steps, int warmup, float peak, float min_lr, const char *schedule);

#endif
