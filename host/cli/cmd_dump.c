// sprec dump --model CKPT.h5 --batch BATCH.h5 -o OUT.h5 [--device cpu|cpu-bf16|cuda]
// The debugging / oracle entry (DESIGN.md contract): logits, per-token
// log-probs, sequence log-probs, the masked mean loss and its gradient for
// every parameter under its Hugging Face name.
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "io/dataset.h"
#include "model/device.h"
#include "base/atomic_write.h"
#include "base/h5io.h"
#include "kernels/errors.h"

int cmd_dump(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec dump --model CKPT.h5 --batch BATCH.h5 -o OUT.h5 [--device cpu|cpu-bf16|cuda] [--threads N]\n"
               "BATCH.h5: tokens int32 [B,T], mask float32 [B,T] (column 0 is 0), optional lengths int32 [B].\n"
               "OUT.h5:   logits [B,T,V], logprobs [B,T], seq_logprob [B], loss (scalar),\n"
               "          grad/NAME for every parameter (gradient of loss), all float32.\n");
        return 0;
    }
    const char *model_path = NULL, *batch_path = NULL, *out_path = NULL, *device = "cpu";
    int threads = 0;   // 0: OpenMP's default
    const CliFlag flags[] = {ARG_PATH("--model CKPT.h5", &model_path, CLI_REQUIRED),
                             ARG_PATH("--batch BATCH.h5", &batch_path, CLI_REQUIRED),
                             ARG_PATH("-o OUT.h5", &out_path, CLI_REQUIRED), ARG_STR("--device", &device),
                             ARG_INT("--threads", &threads, 0, 4096), ARG_END};
    cli_parse("dump", argc, argv, flags);
    const Backend *be = device_open(device, threads);

    ModelConfig mc;
    checkpoint_read_config(model_path, &mc);
    Model m;
    model_create(&m, &mc, be);
    checkpoint_load(model_path, &m, NULL, NULL);
    if (m.lora) {   // the contract is gradients of the model's own weights: dump the merged model
        model_merge_lora(&m);
        fprintf(stderr, "dump: %s has LoRA adapters; merged them into the base weights\n", model_path);
    }
    Dataset d;
    dataset_load(&d, batch_path, mc.vocab_size);
    if (d.T > mc.max_seq_len) fail("%s: %d positions exceed the model's max_seq_len %d", batch_path, d.T, mc.max_seq_len);
    Batch batch = {.B = d.N, .T = d.T, .tokens = d.tokens, .mask = d.mask, .lengths = d.lengths};
    const int B = d.N, T = d.T, V = mc.vocab_size;

    const int n = model_forward(&m, &batch, 1);
    float *logprobs = xcalloc((size_t)B * T, sizeof(float)), *seq = xcalloc((size_t)B, sizeof(float));
    double mask_sum = 0, weighted = 0;
    for (int i = 0; i < n; i++) {
        const int p = m.head_pos[i];
        logprobs[p] = m.head_lp[i];
        mask_sum += d.mask[p];
        weighted += (double)d.mask[p] * m.head_lp[i];
    }
    if (mask_sum <= 0) fail("%s: mask sums to 0 over the valid positions: no loss to differentiate", batch_path);
    double seq_acc[B];
    memset(seq_acc, 0, sizeof seq_acc);
    for (int i = 0; i < n; i++) seq_acc[m.head_pos[i] / T] += (double)d.mask[m.head_pos[i]] * m.head_lp[i];
    for (int b = 0; b < B; b++) seq[b] = (float)seq_acc[b];
    const float loss = (float)(-weighted / mask_sum);
    float *logits = xmalloc((size_t)B * T * V * sizeof(float));
    model_logits(&m, &batch, logits);

    float *w = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int i = 0; i < n; i++) w[i] = (float)(d.mask[m.head_pos[i]] / mask_sum);
    model_zero_grad(&m);
    model_backward(&m, w);

    AtomicFile *out = atomic_begin(out_path, NULL);
    hid_t f = h5_create(out->tmp);
    long dims[3] = {B, T, V};
    h5_write_f32(f, "logits", 3, dims, logits);
    h5_write_f32(f, "logprobs", 2, dims, logprobs);
    h5_write_f32(f, "seq_logprob", 1, dims, seq);
    h5_write_f32(f, "loss", 0, dims, &loss);
    hid_t g = h5_group(f, "grad");
    for (int i = 0; i < m.n_params; i++) {
        const ParamInfo *p = &m.table[i];
        float *host = xmalloc(p->numel * sizeof(float));
        be->download(host, m.grads + p->offset, p->numel * sizeof(float));
        long pd[2] = {p->shape[0], p->shape[1]};
        h5_write_f32(g, p->name, p->rank, pd, host);
        free(host);
    }
    h5_group_close(g);
    h5_close(f);
    atomic_commit(out);
    printf("dump: %s (B=%d T=%d V=%d, %d scored positions, loss %.6f)\n", out_path, B, T, V, n, loss);
    free(w); free(logits); free(logprobs); free(seq);
    dataset_free(&d);
    model_free(&m);
    return 0;
}
