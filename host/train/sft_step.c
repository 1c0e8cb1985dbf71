// One SFT optimizer step (sft_step.h): the SFT trainer's step, and the SPRec
// loop's SFT stage.
#include "sft_step.h"
#include "base/dist/dist.h"
#include "model/lora.h"
#include "kernels/errors.h"

double sft_step(Model *m, AdamW *opt, const Dataset *data, const int *ids, int n_ids, int batch_size,
                uint64_t micro0, float lr, double *gnorm, double *mask_sum_out, long *tokens) {
    double mask_sum = 0;
    for (int i = 0; i < n_ids; i++)
        for (int t = 0; t < data->T; t++) mask_sum += data->mask[(size_t)ids[i] * data->T + t];
    *mask_sum_out = mask_sum;
    if (mask_sum <= 0) return 0;
    model_zero_grad(m);
    double loss = 0;
    // this rank's micro-batches of the step (the mask sum above is the whole step's)
    const Dist *dist = dist_world();
    int mlo, mhi;
    dist_share(dist, (n_ids + batch_size - 1) / batch_size, &mlo, &mhi);
    for (int mb = mlo, a = mlo * batch_size; mb < mhi; a += batch_size, mb++) {
        Batch batch;
        dataset_batch(data, ids + a, a + batch_size < n_ids ? batch_size : n_ids - a, &batch);
        // dropout masks keyed by the global micro-batch index: a resumed run redraws the same ones
        if (m->lora) lora_set_train(m, 1, micro0 + (uint64_t)mb);
        // the loss weights are known before the forward: the head's gradient comes with it
        const int N = batch.B * batch.T;
        float *w = xmalloc((size_t)N * sizeof(float));
        for (int i = 0; i < N; i++) w[i] = (float)(batch.mask[i] / mask_sum);
        if (mb == mhi - 1) adamw_sum_begin(opt, m);   // the gradients summed as this backward finishes them
        int n = model_forward_with_head_grad(m, &batch, w);
        for (int i = 0; i < n; i++) loss -= (double)w[m->head_pos[i]] * m->head_lp[i];
        model_backward(m, NULL);
        if (tokens) for (int b = 0; b < batch.B; b++) *tokens += batch.lengths[b];
        free(w);
        batch_free(&batch);
    }
    dist_sum_host(dist, &loss, 1);
    *gnorm = adamw_step(opt, m, lr);
    return loss;
}
