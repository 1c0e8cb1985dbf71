// AdamW over the flat parameter buffer in one fused launch with a per-tensor
// decay flag (so norms and biases can skip weight decay), global-norm clipping
// as PyTorch's clip_grad_norm_ does it, and the learning-rate schedules of HF
// transformers.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "optimizer.h"
#include "base/dist/dist.h"
#include "kernels/errors.h"
#include "lora.h"

void adamw_create(AdamW *o, Model *model, float beta1, float beta2, float eps,
                  float weight_decay, float grad_clip, int decay_norms) {
    adamw_create_zero(o, model, beta1, beta2, eps, weight_decay, grad_clip, decay_norms, 0);
}

void adamw_create_zero(AdamW *o, Model *model, float beta1, float beta2, float eps, float weight_decay,
                       float grad_clip, int decay_norms, int zero) {
    const Dist *d = dist_world();   // (several ranks on CUDA: dist_check_backend has set up NCCL or refused)
    memset(o, 0, sizeof *o);
    // with LoRA only the adapters are trainable: moments for them alone
    o->numel = model->lora ? model->lora->numel : model->numel;
    o->zero = zero;
    o->hi = o->numel;
    if (zero) dist_shard(d, o->numel, &o->lo, &o->hi);
    const size_t len = o->hi - o->lo;
    // the fp32 master too where the ops read a separate compute copy (which stays whole); first, so that the
    // whole master is gone before the moments come
    float *whole = model_trainable_master(model);
    const int shard_master = len < o->numel && model->be->act_bytes != sizeof(float);
    if (shard_master) {
        o->master = model->be->alloc(len * sizeof(float));
        model->be->copy(o->master, whole + o->lo, len * sizeof(float));
        model_set_trainable_master(model, NULL);
        model->be->free(whole);
    }
    o->m = model->be->alloc(len * sizeof(float));
    o->v = model->be->alloc(len * sizeof(float));
    o->beta1 = beta1; o->beta2 = beta2; o->eps = eps;
    o->weight_decay = weight_decay; o->grad_clip = grad_clip; o->decay_norms = decay_norms;
    // the device table adamw_multi walks: every trainable tensor (its part in the shard) and whether it decays
    const ParamInfo *table = model->lora ? model->lora->table : model->table;
    const int n_table = model->lora ? model->lora->n_params : model->n_params;
    AdamwTensor *t = xcalloc((size_t)n_table, sizeof *t);
    for (int i = 0; i < n_table; i++) {
        const size_t a = table[i].offset > o->lo ? table[i].offset : o->lo;
        const size_t b = table[i].offset + table[i].numel < o->hi ? table[i].offset + table[i].numel : o->hi;
        if (a < b) t[o->n_tensors++] = (AdamwTensor){.offset = a - o->lo, .numel = b - a,
                                                     .decay = table[i].decay || decay_norms};
    }
    o->tensors = model->be->alloc((size_t)(o->n_tensors ? o->n_tensors : 1) * sizeof *t);
    model->be->upload(o->tensors, t, (size_t)o->n_tensors * sizeof *t);
    free(t);
    if (zero && dist_is_root(d))
        printf("zero: AdamW moments sharded over %d ranks%s: %.2f MB per rank (%.2f MB unsharded)\n", d->world,
               shard_master ? ", fp32 master weights too" : "", (2.0 + shard_master) * (double)len * sizeof(float) / 1e6,
               (2.0 + shard_master) * (double)o->numel * sizeof(float) / 1e6);
}

void adamw_free(AdamW *o, Model *model) {
    const Backend *be = model->be;
    be->free(o->m);
    be->free(o->v);
    be->free(o->tensors);
    if (o->master) {   // the ranks' shards make the whole master again
        float *whole = be->alloc(o->numel * sizeof(float));
        be->copy(whole + o->lo, o->master, (o->hi - o->lo) * sizeof(float));
        be->free(o->master);
        dist_allgather_device(dist_world(), be, whole, o->numel, sizeof(float));
        model_set_trainable_master(model, whole);
    }
    memset(o, 0, sizeof *o);
}

void adamw_free_model(AdamW *o, Model *model) {
    model->be->free(o->master);
    o->master = NULL;
    adamw_free(o, model);
    model_free(model);
}

double adamw_step(AdamW *o, Model *model, float lr) {
    const Backend *be = model->be;
    const Lora *lo = model->lora;
    check(o->numel == (lo ? lo->numel : model->numel),
          "optimizer was created for %zu values, the model trains %zu (LoRA enabled after adamw_create?)", o->numel,
          lo ? lo->numel : model->numel);
    const Dist *d = dist_world();
    float *grads = lo ? lo->grads : model->grads;
    float *params = o->master ? o->master : model_trainable_master(model) + o->lo;   // this rank's [lo, hi)
    double norm;
    if (!o->zero) {   // data parallel: every rank steps with the sum of all ranks' gradients
        if (o->sum_begun) { dist_sum_end(); model->grads_final = NULL; o->sum_begun = 0; }
        else dist_sum_device(d, be, grads, o->numel);
        norm = model_grad_norm(model);
    } else {          // ZeRO-1: the sum of this rank's shard only; the global norm from the shards' squares
        dist_reduce_scatter_device(d, be, grads, o->numel);
        double sumsq = be->sumsq(grads + o->lo, o->hi - o->lo);
        dist_sum_host(d, &sumsq, 1);
        norm = sqrt(sumsq);
    }
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
    void *compute = lo ? lo->wc : model->wc;   // refreshed in the same pass
    be->adamw_multi(params, (char *)compute + o->lo * be->act_bytes, grads + o->lo, o->m, o->v, o->hi - o->lo,
                    o->tensors, o->n_tensors, lr, o->beta1, o->beta2, o->eps, o->weight_decay, bc1, bc2, scale);
    // every rank gets the others' updated shards of what the ops read (with act_bytes 4: the master itself;
    // else the compute copy, the master staying sharded)
    if (o->zero) dist_allgather_device(d, be, compute, o->numel, be->act_bytes);
    return norm;
}

void adamw_sync_compute(const AdamW *o, Model *model) {
    if (!o->master) { model_sync_compute(model); return; }
    const Backend *be = model->be;
    Lora *lo = model->lora;
    if (lo) be->act_from_f32(model->wc, model->params, model->numel);   // the frozen base is whole
    void *wc = lo ? lo->wc : model->wc;
    be->act_from_f32((char *)wc + o->lo * be->act_bytes, o->master, o->hi - o->lo);
    dist_allgather_device(dist_world(), be, wc, o->numel, be->act_bytes);
}

void adamw_sum_begin(AdamW *o, Model *model) {
    if (o->zero) return;
    dist_sum_begin(dist_world(), model->be, model->lora ? model->lora->grads : model->grads, o->numel);
    model->grads_final = dist_sum_ready;
    o->sum_begun = 1;
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
