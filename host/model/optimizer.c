// AdamW over the flat parameter buffer in one fused launch with a per-tensor
// decay flag (so norms and biases can skip weight decay), global-norm clipping
// as PyTorch's clip_grad_norm_ does it, and the learning-rate schedules of HF
// transformers.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optimizer.h"
#include "base/dist.h"
#include "kernels/errors.h"
#include "lora.h"

void adamw_create(AdamW *o, const Model *model, float beta1, float beta2, float eps,
                  float weight_decay, float grad_clip, int decay_norms) {
    memset(o, 0, sizeof *o);
    // with LoRA only the adapters are trainable: moments for them alone
    o->numel = model->lora ? model->lora->numel : model->numel;
    o->m = model->be->alloc(o->numel * sizeof(float));
    o->v = model->be->alloc(o->numel * sizeof(float));
    o->beta1 = beta1; o->beta2 = beta2; o->eps = eps;
    o->weight_decay = weight_decay; o->grad_clip = grad_clip; o->decay_norms = decay_norms;
    // the device table adamw_multi walks: every trainable tensor and whether it decays
    const ParamInfo *table = model->lora ? model->lora->table : model->table;
    o->n_tensors = model->lora ? model->lora->n_params : model->n_params;
    AdamwTensor *t = xcalloc((size_t)o->n_tensors, sizeof *t);
    for (int i = 0; i < o->n_tensors; i++)
        t[i] = (AdamwTensor){.offset = table[i].offset, .numel = table[i].numel,
                             .decay = table[i].decay || decay_norms};
    o->tensors = model->be->alloc((size_t)o->n_tensors * sizeof *t);
    model->be->upload(o->tensors, t, (size_t)o->n_tensors * sizeof *t);
    free(t);
}

void adamw_free(AdamW *o, const Model *model) {
    model->be->free(o->m);
    model->be->free(o->v);
    model->be->free(o->tensors);
    memset(o, 0, sizeof *o);
}

double adamw_step(AdamW *o, Model *model, float lr) {
    const Backend *be = model->be;
    const Lora *lo = model->lora;
    check(o->numel == (lo ? lo->numel : model->numel),
          "optimizer was created for %zu values, the model trains %zu (LoRA enabled after adamw_create?)", o->numel,
          lo ? lo->numel : model->numel);
    // data parallel: every rank steps with the sum of all ranks' gradients
    dist_sum_device(dist_world(), be, lo ? lo->grads : model->grads, o->numel);
    double norm = model_grad_norm(model);
    if (!isfinite(norm)) fail("gradient norm is %g at step %ld: training diverged (lower train.lr?)", norm, o->step + 1);
    // PyTorch clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is < 1
    float scale = 1.0f;
    if (o->grad_clip > 0 && norm > 0) {
        double coef = o->grad_clip / (norm + 1e-6);
        if (coef < 1.0) scale = (float)coef;
    }
    o->step++;
    const float bc1 = 1.0f - powf(o->beta1, (float)o->step);
    const float bc2 = 1.0f - powf(o->beta2, (float)o->step);
    float *params = lo ? lo->params : model->params, *grads = lo ? lo->grads : model->grads;
    void *compute = lo ? lo->wc : model->wc;   // refreshed in the same pass
    be->adamw_multi(params, compute, grads, o->m, o->v, o->numel, o->tensors, o->n_tensors, lr, o->beta1, o->beta2,
                    o->eps, o->weight_decay, bc1, bc2, scale);
    return norm;
}

// Same shapes as transformers' get_{constant,linear,cosine}_schedule_with_warmup
// (step 0 of a warm-up has lr 0), decaying to min_lr instead of 0.
float lr_at(int step, int total_steps, int warmup, float peak, float min_lr, const char *schedule) {
    if (warmup > 0 && step < warmup) return peak * (float)step / (float)warmup;
    if (strcmp(schedule, "constant") == 0) return peak;
    double span = total_steps - warmup;
    double progress = span > 0 ? (double)(step - warmup) / span : 1.0;
    if (progress > 1.0) progress = 1.0;
    double factor = strcmp(schedule, "cosine") == 0 ? 0.5 * (1.0 + cos(M_PI * progress)) : 1.0 - progress;
    return (float)(min_lr + (peak - min_lr) * factor);
}
