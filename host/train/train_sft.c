// Supervised fine-tuning: minimise -sum(mask * log p) / sum(mask) over each
// optimizer step's rows (token-weighted over the whole step, so the loss does
// not depend on how the step is split into micro-batches), with AdamW, clipping,
// a warm-up + decay schedule, periodic checkpoints and exact resumption.
// Data: a token file ([data] train) or a split of a prepared recommendation
// dataset ([data] dataset, [sft] split); loss on the mask or on the whole text
// ([sft] loss_on); all weights or LoRA adapters ([lora]). Design: docs/training.md.
#include <string.h>
#include "train.h"
#include "sft_step.h"
#include "train_run.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "io/dataset.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "base/rng.h"

// The row order of an epoch depends only on (seed, epoch), so a resumed run
// rebuilds it from the checkpointed cursor.
static void epoch_order(int *perm, int N, uint64_t seed, long epoch, int shuffle) {
    for (int i = 0; i < N; i++) perm[i] = i;
    if (!shuffle) return;
    Rng r;
    rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(epoch + 1)));
    for (int i = N - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}

void sft_train(const Config *cfg, int resume, int stop_at) {
    const Backend *be = train_start(cfg);
    // data: a token file wins over a split of the prepared dataset
    const char *data_path = cfg->data.train[0] ? cfg->data.train : cfg->data.dataset;
    const char *data_group = cfg->data.train[0] ? NULL : cfg->sft.split;
    if (!data_path[0])
        fail("no training data: set [data] train = TOKENS.h5 or [data] dataset = PREPARED.h5 (with [sft] split)");
    char data_name[CONFIG_PATH_MAX + 32];
    snprintf(data_name, sizeof data_name, "%s%s%s", data_path, data_group ? ":/" : "", data_group ? data_group : "");
    const int loss_all = strcmp(cfg->sft.loss_on, "all") == 0;
    const LoraConfig lc = train_lora_config(cfg);

    char ckpt_path[4096];
    train_prepare_run_dir(cfg->run.out_dir, resume, ckpt_path, sizeof ckpt_path);

    // model: resumed run, a starting checkpoint, or a fresh random init
    Model model;
    AdamW opt;
    TrainState st;   // the data order derives from train.seed
    train_begin(cfg, be, &lc, ckpt_path, resume, "sft", cfg->train.seed, "train.seed", &model, &opt, &st);
    const ModelConfig mc = model.cfg;

    Dataset data;
    dataset_load_group(&data, data_path, data_group, mc.vocab_size);
    if (data.T > mc.max_seq_len) fail("%s: sequences of %d positions exceed the model's max_seq_len %d", data_name, data.T, mc.max_seq_len);
    double scored_all = 0;
    if (loss_all) scored_all = dataset_mask_all(&data);
    else for (size_t k = 0; k < (size_t)data.N * data.T; k++) scored_all += data.mask[k];
    const int rows_per_step = cfg->train.batch_size * cfg->train.grad_accum;
    const int steps_per_epoch = (data.N + rows_per_step - 1) / rows_per_step;
    const int total = cfg->train.max_steps > 0 ? cfg->train.max_steps : cfg->train.epochs * steps_per_epoch;
    train_record_config(cfg, resume);   // a resume with changed settings stops here
    if (st.step >= total) {
        printf("sft: checkpoint is at step %ld of %d: nothing to do\n", st.step, total);
        goto done;
    }

    long tokens_run = 0, tokens_logged = 0;   // tokens trained by this process; at the last progress line
    const TrainLoop loop = {.name = "sft", .log = train_open_log(cfg, "train_log.jsonl", resume, st.step), .ckpt_path = ckpt_path,
                            .m = &model, .opt = &opt, .st = &st, .total = total, .stop_at = stop_at,
                            .ckpt_every = cfg->train.ckpt_every, .tb = train_open_tb(cfg), .tokens = &tokens_run};

    printf("sft: %s | %d rows x %d positions | loss on %s (%.0f scored tokens) | %zu parameters | %d steps of %d rows "
           "(%d x %d) | device %s\n", data_name, data.N, data.T, cfg->sft.loss_on, scored_all, model.numel, total,
           rows_per_step, cfg->train.batch_size, cfg->train.grad_accum, be->name);
    if (model.lora) {
        char tg[64];
        lora_targets_str(model.lora->cfg.targets, tg, sizeof tg);
        printf("sft: LoRA rank %d, alpha %g, dropout %g, targets %s: %zu trainable parameters, base frozen\n",
               model.lora->cfg.rank, model.lora->cfg.alpha, model.lora->cfg.dropout, tg, model.lora->numel);
    }
    if (resume) printf("sft: resuming %s at step %ld (epoch %ld, row %ld)\n", ckpt_path, st.step, st.epoch, st.epoch_pos);

    int *perm = xmalloc((size_t)data.N * sizeof(int)), *ids = xmalloc((size_t)rows_per_step * sizeof(int));
    epoch_order(perm, data.N, cfg->train.seed, st.epoch, cfg->data.shuffle);
    double t_start = now_seconds(), t_window = t_start;
    long step0 = st.step;
    double loss_window = 0;
    int window_steps = 0;

    while (st.step < total) {
        for (int i = 0; i < rows_per_step; i++) {
            if (st.epoch_pos == data.N) {
                st.epoch++;
                st.epoch_pos = 0;
                epoch_order(perm, data.N, cfg->train.seed, st.epoch, cfg->data.shuffle);
            }
            ids[i] = perm[st.epoch_pos++];
        }
        double mask_sum, gnorm;
        const float lr = lr_at((int)st.step, total, cfg->train.warmup_steps, cfg->train.lr, cfg->train.min_lr,
                               cfg->train.schedule);
        const double loss = sft_step(&model, &opt, &data, ids, rows_per_step, cfg->train.batch_size,
                                     (uint64_t)st.step * (uint64_t)cfg->train.grad_accum, lr, &gnorm, &mask_sum,
                                     &tokens_run);
        if (mask_sum <= 0) fail("%s: step %ld has rows whose mask sums to 0 (no completion tokens)", data_name, st.step + 1);
        st.step++;
        st.last_loss = loss;
        loss_window += loss;
        window_steps++;
        if (st.step % cfg->train.log_every == 0 || train_loop_last(&loop) || st.step == step0 + 1) {
            double t = now_seconds(), rate = (double)(tokens_run - tokens_logged) / (t - t_window + 1e-9);
            double per_step = (t - t_start) / (double)(st.step - step0);
            char eta[32];
            printf("step %5ld/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s\n", st.step, total,
                   loss_window / window_steps, lr, gnorm, rate,
                   fmt_duration(per_step * (double)(total - st.step), eta, sizeof eta));
            fflush(stdout);
            t_window = t; tokens_logged = tokens_run; loss_window = 0; window_steps = 0;
        }
        if (train_loop_step(&loop, "{\"step\": %ld, \"loss\": %.17g, \"lr\": %.9g, \"grad_norm\": %.17g, \"scored\": %.17g}",
                            st.step, loss, lr, gnorm, mask_sum))
            break;
    }
    train_loop_end(&loop);
    free(perm); free(ids);
done:
    dataset_free(&data);
    adamw_free_model(&opt, &model);
}
