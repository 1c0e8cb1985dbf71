// AdamW with decoupled weight decay, bias correction, global-norm clipping and
// a warm-up + decay learning-rate schedule. Moments live on the device; a step
// is one gradient-norm reduction and one fused AdamW launch over the buffer.
#ifndef SPREC_OPTIMIZER_H
#define SPREC_OPTIMIZER_H

#include "model.h"

typedef struct {
    float *m, *v;                // [numel] each, device
    size_t numel;                // model->numel, or model->lora->numel with LoRA
    AdamwTensor *tensors;        // [n_tensors] device: the trainable tensors and their decay flags
    int n_tensors;
    long step;                   // optimizer steps taken
    float beta1, beta2, eps, weight_decay, grad_clip;
    int decay_norms;
} AdamW;

void adamw_create(AdamW *o, const Model *model, float beta1, float beta2, float eps,
                  float weight_decay, float grad_clip, int decay_norms);
void adamw_free(AdamW *o, const Model *model);
// The moments cover the trainable set: model->params, or only the LoRA adapters
// when model->lora is set at adamw_create (enable LoRA first).
// One step on the trainable parameters with their gradients (already summed over
// micro-batches); with LoRA the base parameters are never touched.
// Returns the gradient norm before clipping.
double adamw_step(AdamW *o, Model *model, float lr);

// Learning rate at step (0-based): linear warm-up to peak, then constant,
// linear or cosine decay to min_lr at total_steps.
float lr_at(int step, int total_steps, int warmup, float peak, float min_lr, const char *schedule);

#endif
