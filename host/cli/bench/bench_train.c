// sprec bench --mode sft, forward, dpo: training steps and the forward on random tokens.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "bench.h"
#include "train/dpo.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "train/sft_step.h"

// ---- sft ---------------------------------------------------------------------------------

// The trainer's own step (train/sft_step.h: micro-batches of --micro-batch rows
// shared over the ranks, the gradient sum, AdamW) on --batch random rows.
void bench_sft(Bench *bn) {
    const Backend *be = bn->be;
    const int B = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    ModelConfig c = bn->c;
    Model m;
    AdamW opt;
    bench_train_model(bn, &m, &opt);
    Batch batch;
    Rng r;
    rng_seed(&r, 7);
    random_batch(&batch, B, T, c.vocab_size, bn->loss_frac, &r, NULL);
    const Dataset data = {.N = B, .T = T, .tokens = batch.tokens, .mask = batch.mask, .lengths = batch.lengths};
    int *ids = xmalloc((size_t)B * sizeof(int));
    for (int i = 0; i < B; i++) ids[i] = i;
    double *times = xmalloc((size_t)steps * sizeof(double)), loss = 0;
    RankMark before = rank_mark();
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) before = rank_mark();
        double t0 = now_seconds(), gnorm, mask_sum;
        loss = sft_step(&m, &opt, &data, ids, B, bn->micro, 0, 1e-4f, &gnorm, &mask_sum, NULL);
        device_sync(be, m.params);
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    const Stats st = stats_of(times, steps);
    char *ranks = rank_fields(bn, &before, steps, steps, st.mean);
    const double flops_tok = flops_per_token(&c, T);
    const double tokens = (double)B * T;   // per step
    // the CPU line is the contract's original one; a device backend adds its memory and MFU
    char mfu[96] = "null", extra[512] = "";
    long peak = host_peak_bytes();
    if (backend_supports(be, BACKEND_MEM_STATS)) {
        BackendMemStats ms;
        be->mem_stats(&ms);
        double bf16;
        const double rate = flops_tok * tokens / st.median / dist_world()->world;   // per GPU
        const int have_peak = gpu_peak_bf16(ms.device_name, &bf16);
        if (have_peak) snprintf(mfu, sizeof mfu, "%.4f", rate / (bf16 * 1e12));
        snprintf(extra, sizeof extra, ", \"mode\": \"sft\", \"host_peak_bytes\": %ld, \"gpu\": \"%.200s\", "
                 "\"peak_tflops_bf16\": %s", peak, ms.device_name, have_peak ? "" : "null");
        if (have_peak) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%.1f", bf16);
        peak = (long)ms.peak;
    }
    printf("{\"name\": \"%s\", \"impl\": \"sprec\", \"device\": \"%s\", \"storage\": \"%s\", \"threads\": %d, "
           "\"dim\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"ffn\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, \"loss_frac\": %.3f, "
           "\"tokens_per_s\": %.1f, \"ms_per_step\": %.2f, \"ms_per_step_mean\": %.2f, \"ms_per_step_min\": %.2f, "
           "\"peak_bytes\": %ld, \"gflops\": %.2f, \"mfu\": %s, \"final_loss\": %.6f, \"micro_batch\": %d, %s%s}\n",
           bn->name, be->name, storage_name(be), omp_get_max_threads(), c.dim, c.n_layers, c.n_heads, c.n_kv_heads,
           c.ffn_dim, c.vocab_size, T, B, bn->loss_frac, tokens / st.median, 1e3 * st.median, 1e3 * st.mean,
           1e3 * st.min, peak, flops_tok * tokens / st.median / 1e9, mfu, loss, bn->micro, ranks, extra);
    if (dist_is_root(dist_world())) print_sgemm_line();
    free(ranks); free(ids); free(times); batch_free(&batch);
    adamw_free(&opt, &m);
    model_free(&m);
}

// ---- forward ------------------------------------------------------------------------------

// The forward alone over --batch sequences of --seq (a reference pass or a
// prefill): model_forward with the head on the last --loss-frac of each.
// FLOPs: the model's own count of that forward (model_forward_flops: the head
// on the scored rows only); then the same run's sgemm line.
void bench_forward(Bench *bn) {
    const Backend *be = bn->be;
    const int B = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    Model m;
    model_create(&m, &bn->c, be);
    model_init_random(&m, 1, 0.02f);
    Batch batch;
    Rng r;
    rng_seed(&r, 7);
    random_batch(&batch, B, T, bn->c.vocab_size, bn->loss_frac, &r, NULL);
    double *times = xmalloc((size_t)steps * sizeof(double));
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_forward(&m, &batch, 0);   // downloads the log-probs: synchronised
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    const Stats st = stats_of(times, steps);
    print_head(bn);
    printf("\"seq\": %d, \"batch\": %d, \"loss_frac\": %.3f, ", T, B, bn->loss_frac);
    print_tail(be, &st, (double)B * T, m.last_fwd_flops, -1, -1);
    if (!backend_supports(be, BACKEND_MEM_STATS)) print_sgemm_line();
    free(times); batch_free(&batch);
    model_free(&m);
}

// ---- dpo ---------------------------------------------------------------------------------

// --batch pairs: 2*batch sequences of --seq per step (chosen, rejected), the
// completion (mask) on the last --loss-frac of each; reference log-probs are
// computed once before timing by the initial policy (as a DPO epoch's
// reference pass does), so a step is the policy's forward + backward + AdamW.
void bench_dpo(Bench *bn) {
    const Backend *be = bn->be;
    const int P = bn->B, T = bn->T, steps = bn->steps, warmup = bn->warmup;
    ModelConfig c = bn->c;
    Model m;
    AdamW opt;
    bench_train_model(bn, &m, &opt);
    Batch chosen, rejected;
    Rng r;
    rng_seed(&r, 7);
    random_batch(&chosen, P, T, c.vocab_size, bn->loss_frac, &r, NULL);
    random_batch(&rejected, P, T, c.vocab_size, bn->loss_frac, &r, NULL);
    double *ref_c = xmalloc((size_t)P * sizeof(double)), *ref_r = xmalloc((size_t)P * sizeof(double));
    dpo_pair_logprobs(&m, &chosen, &rejected, ref_c, ref_r);
    double *times = xmalloc((size_t)steps * sizeof(double)), loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        model_zero_grad(&m);
        loss = dpo_step(&m, &chosen, &rejected, ref_c, ref_r, NULL, 0.1, NULL);
        adamw_step(&opt, &m, 1e-4f);
        device_sync(be, m.params);
        if (s >= warmup) times[s - warmup] = now_seconds() - t0;
    }
    const Stats st = stats_of(times, steps);
    const double tokens = 2.0 * P * T;
    print_head(bn);
    printf("\"seq\": %d, \"batch\": %d, \"pairs\": %d, \"loss_frac\": %.3f, \"beta\": 0.1, \"ref\": \"precomputed\", "
           "\"final_loss\": %.6f, ", T, P, P, bn->loss_frac, loss);
    print_tail(be, &st, tokens, flops_per_token(&c, T) * tokens, -1, -1);
    free(times); free(ref_c); free(ref_r);
    batch_free(&chosen); batch_free(&rejected);
    adamw_free(&opt, &m);
    model_free(&m);
}
