// DPO on a prepared recommendation dataset (method.md section 2, "DPO-RN"):
//   1. pairs: [dpo] n_pairs seeded train rows (0 = all); chosen = the row's own
//      completion (the true next item), rejected = a catalogue item drawn by
//      [dpo] negatives: random (uniform, != target), popular (proportional to
//      popularity, != target) or self (the starting model's constrained greedy
//      recommendation, its next-best item when that is the target);
//   2. reference: the starting model's log-probs of both sides, computed ONCE
//      (dpo_pair_logprobs, the same micro-batches as the steps, so with
//      reference == policy the first loss is exactly log 2); pairs and
//      reference go to run.out_dir/pairs.h5 before the first step, so a resumed
//      run reuses them and is bit-identical;
//   3. steps: micro-batches of batch_size consecutive pairs, grad_accum per
//      optimizer step (each pair weighted n_micro / n_step, so the step's loss
//      is the mean over its pairs), AdamW, clipping, the [train] schedule.
// Design: docs/training.md; the objective: docs/dpo.md.
#include <string.h>
#include "train.h"
#include "dpo_pairs.h"
#include "train_run.h"
#include "base/dist/dist.h"
#include "base/fileio.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "io/dataset.h"
#include "dpo.h"
#include "rec/recdata.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "base/rng.h"

// The pairs' rows and negatives (reference log-probs are filled in later).
// gen: the starting policy (negatives = self only; LoRA adapters need no merge).
static void pairs_sample(DpoPairs *p, const RecData *d, const Config *cfg, Model *gen) {
    const RecSplit *sp = &d->split[SPLIT_TRAIN];
    const int V = d->n_items;
    if (V < 2) fail("%s: DPO needs a catalogue of at least 2 items (has %d)", cfg->data.dataset, V);
    int *elig = xmalloc((size_t)(sp->n > 0 ? sp->n : 1) * sizeof(int)), ne = 0;
    for (int r = 0; r < sp->n; r++) if (sp->target[r] >= 0) elig[ne++] = r;
    if (ne == 0) fail("%s: the train split has no row whose target is in the catalogue", cfg->data.dataset);
    const int n = cfg->dpo.n_pairs > 0 && cfg->dpo.n_pairs < ne ? cfg->dpo.n_pairs : ne;
    Rng rng;
    rng_seed(&rng, cfg->dpo.seed);
    for (int i = 0; i < n; i++) {   // seeded partial Fisher-Yates: the sample and the training order
        int j = i + (int)rng_below(&rng, (uint64_t)(ne - i));
        int t = elig[i]; elig[i] = elig[j]; elig[j] = t;
    }
    if (!strcmp(cfg->dpo.weighting, "spdpo")) {   // k self negatives per prompt, weighted
        int *chosen = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
        for (int i = 0; i < n; i++) chosen[i] = sp->target[elig[i]];
        dpo_spdpo_negatives(gen, d, elig, chosen, n, cfg->dpo.spdpo_k, cfg->dpo.beams, p);
        free(chosen);
        free(elig);
        return;
    }
    dpo_pairs_alloc(p, n);
    for (int i = 0; i < n; i++) { p->row[i] = elig[i]; p->chosen[i] = sp->target[elig[i]]; }
    free(elig);

    const char *neg = cfg->dpo.negatives;
    if (strcmp(neg, "random") == 0) {
        for (int i = 0; i < n; i++) {
            int it;
            do it = (int)rng_below(&rng, (uint64_t)V); while (it == p->chosen[i]);
            p->rejected[i] = it;
        }
    } else if (strcmp(neg, "popular") == 0) {
        double *cum = xmalloc((size_t)V * sizeof(double)), tot = 0;
        for (int i = 0; i < V; i++) cum[i] = (tot += d->popularity[i]);
        for (int i = 0; i < n; i++) {
            const int c = p->chosen[i];
            int it;
            if (tot - d->popularity[c] <= 0) {   // only the target is ever popular: uniform instead
                do it = (int)rng_below(&rng, (uint64_t)V); while (it == c);
            } else {
                do {
                    double u = rng_uniform(&rng) * tot;
                    int lo = 0, hi = V - 1;
                    while (lo < hi) { int mid = (lo + hi) / 2; if (cum[mid] > u) hi = mid; else lo = mid + 1; }
                    it = lo;
                } while (it == c);
            }
            p->rejected[i] = it;
        }
        free(cum);
    } else {   // self: the model's own recommendation, next-best when it is the target
        dpo_self_negatives(gen, d, p, cfg->dpo.beams);
    }
}

void dpo_train(const Config *cfg, int resume, int stop_at) {
    const Backend *be = train_start(cfg);
    if (cfg->data.train[0]) fail("[train] method = dpo needs a prepared dataset ([data] dataset), not a token file ([data] train)");
    const LoraConfig lc = train_lora_config(cfg);
    char ckpt_path[4096], pairs_path[4096];
    train_prepare_run_dir(cfg->run.out_dir, resume, ckpt_path, sizeof ckpt_path);
    snprintf(pairs_path, sizeof pairs_path, "%s/pairs.h5", cfg->run.out_dir);
    const int spdpo = !strcmp(cfg->dpo.weighting, "spdpo");
    if (spdpo && strcmp(cfg->dpo.negatives, "self") != 0)
        fail("[dpo] weighting = spdpo weights self-generated negatives: set [dpo] negatives = self (it is %s)", cfg->dpo.negatives);

    RecData d;
    recdata_load(&d, cfg->data.dataset);
    if (!d.tokenized)
        fail("%s has no token ids: prepare it with a [data] tokenizer (the model's) to train on it", cfg->data.dataset);

    // the policy: as in SFT (docs/training.md: LoRA enabled before any weights are loaded)
    Model model;
    AdamW opt;
    TrainState st;
    train_begin(cfg, be, &lc, ckpt_path, resume, "dpo", cfg->dpo.seed, "dpo.seed", &model, &opt, &st);
    const ModelConfig mc = model.cfg;
    const RecSplit *sp = &d.split[SPLIT_TRAIN];
    const StageOpt so = config_stage(cfg, TRAIN_STAGE_DPO);   // [dpo] lr, batch_size, ... (-1: [train]'s)
    const int bs = dpo_pairs_per_micro(cfg, so.batch_size), ga = so.grad_accum;

    // pairs and the reference pass (fresh run), or the stored ones (resume)
    DpoPairs p;
    if (resume) {   // train_begin has checked that the checkpoint is a DPO run's
        if (!file_exists(pairs_path)) fail("--resume: no pairs at %s (a DPO run writes them before its first step)", pairs_path);
        dpo_pairs_load(&p, pairs_path, cfg->dpo.negatives);
        p.eos = dpo_completion_eos(&model, cfg->data.completion_eos);
        if (spdpo != (p.pair_w != NULL))
            fail("%s was made with dpo.weighting = %s; resume with the run's own config.ini", pairs_path, spdpo ? "none" : "spdpo");
    } else {
        pairs_sample(&p, &d, cfg, &model);   // self negatives: the starting policy's own, adapters included
        p.eos = dpo_completion_eos(&model, cfg->data.completion_eos);
        int maxlen = 0, maxitem = 0;
        for (int i = 0; i < p.n; i++) {
            const int r = p.row[i], it = p.rejected[i];
            const int lr = sp->prompt_len[r] + d.item_tok_offsets[it + 1] - d.item_tok_offsets[it] + (p.eos >= 0);
            if (sp->lengths[r] + (p.eos >= 0) > maxlen) maxlen = sp->lengths[r] + (p.eos >= 0);
            if (lr > maxlen) maxlen = lr;
            if (it > maxitem) maxitem = it;
        }
        if (maxlen > mc.max_seq_len) fail("%s: pairs of %d positions exceed the model's max_seq_len %d", cfg->data.dataset, maxlen, mc.max_seq_len);
        for (size_t k = 0; k < (size_t)sp->n * sp->T; k++)
            if (sp->tokens[k] >= mc.vocab_size) fail("%s: token id %d outside the model's vocabulary (%d)", cfg->data.dataset, sp->tokens[k], mc.vocab_size);
        // reference = the starting policy, in exactly the micro-batches of the steps
        double t0 = now_seconds();
        dpo_pairs_reference(&model, &d, &p, bs);
        printf("dpo: reference log-probs of %d pairs in %.1f s\n", p.n, now_seconds() - t0);
        if (dist_is_root(dist_world())) dpo_pairs_save(&p, pairs_path, cfg->dpo.negatives);
    }
    const int n_micro = (p.n + bs - 1) / bs;
    const int steps_per_epoch = (n_micro + ga - 1) / ga;
    const int total = stage_steps(&so, (long)p.n * so.batch_size / bs);   // pairs, or prompts (spdpo_batch)
    const int log_every = cfg->dpo.log_every > 0 ? cfg->dpo.log_every : cfg->train.log_every;
    train_record_config(cfg, resume);   // a resume with changed settings stops here
    if (st.step >= total) {
        printf("dpo: checkpoint is at step %ld of %d: nothing to do\n", st.step, total);
        goto done;
    }
    long tokens_run = 0;   // the model's forward tokens so far (model.h work_tokens): TensorBoard's tokens_per_s
    const TrainLoop loop = {.name = "dpo", .log = train_open_log(cfg, "train_log.jsonl", resume, st.step), .tb = train_open_tb(cfg), .ckpt_path = ckpt_path,
                            .m = &model, .opt = &opt, .st = &st, .total = total, .stop_at = stop_at,
                            .ckpt_every = cfg->train.ckpt_every, .tokens = &tokens_run};
    printf("dpo: %s:/train | %d pairs, negatives %s%s%s | beta %g | %zu parameters | %d steps of %d pairs (%d x %d) | "
           "lr %g, %s, %d warm-up | device %s\n", cfg->data.dataset, p.n, cfg->dpo.negatives, spdpo ? " (spdpo weights)" : "",
           p.eos >= 0 ? ", completions + EOS" : "", (double)cfg->dpo.beta, model.numel, total, bs * ga, bs, ga,
           (double)so.lr, so.schedule, so.warmup_steps, be->name);
    if (model.lora) printf("dpo: LoRA rank %d: %zu trainable parameters, base frozen\n", model.lora->cfg.rank, model.lora->numel);
    if (resume) printf("dpo: resuming %s at step %ld\n", ckpt_path, st.step);

    DpoStats win = {0};
    int win_steps = 0;
    double t_start = now_seconds();
    const long step0 = st.step;
    while (st.step < total) {
        // this step's micro-batches: k0 .. k1-1 of the epoch's n_micro (the last step of an epoch may have fewer)
        const int k0 = (int)(st.step % steps_per_epoch) * ga, k1 = k0 + ga < n_micro ? k0 + ga : n_micro;
        const int a0 = k0 * bs, a1 = k1 * bs < p.n ? k1 * bs : p.n, n_step = a1 - a0;
        const float lr = lr_at((int)st.step, total, so.warmup_steps, so.lr, so.min_lr, so.schedule);
        DpoStats s;
        double gnorm;
        dpo_pairs_step(&model, &opt, &d, &p, a0, a1, bs, (uint64_t)st.step * (uint64_t)ga, cfg->dpo.beta, lr, &s, &gnorm);
        st.step++;
        st.epoch = (st.step) / steps_per_epoch;
        st.last_loss = s.loss;
        win.loss += s.loss; win.rewards_chosen += s.rewards_chosen; win.rewards_rejected += s.rewards_rejected;
        win.rewards_margins += s.rewards_margins; win.rewards_accuracies += s.rewards_accuracies;
        win_steps++;
        if (st.step % log_every == 0 || train_loop_last(&loop) || st.step == step0 + 1) {
            char eta[32];
            const double per_step = (now_seconds() - t_start) / (double)(st.step - step0);
            printf("step %5ld/%d | loss %.4f | rewards chosen %+.4f rejected %+.4f margin %+.4f acc %.3f | lr %.2e | "
                   "grad norm %.3f | ETA %s\n", st.step, total, win.loss / win_steps, win.rewards_chosen / win_steps,
                   win.rewards_rejected / win_steps, win.rewards_margins / win_steps, win.rewards_accuracies / win_steps,
                   lr, gnorm, fmt_duration(per_step * (double)(total - st.step), eta, sizeof eta));
            fflush(stdout);
            memset(&win, 0, sizeof win);
            win_steps = 0;
        }
        tokens_run = (long)model.work_tokens;
        if (train_loop_step(&loop, "{\"step\": %ld, \"loss\": %.17g, \"rewards/chosen\": %.17g, \"rewards/rejected\": %.17g, "
                            "\"rewards/margins\": %.17g, \"rewards/accuracies\": %.17g, \"logps/chosen\": %.17g, "
                            "\"logps/rejected\": %.17g, \"lr\": %.9g, \"grad_norm\": %.17g, \"pairs\": %d}", st.step, s.loss,
                            s.rewards_chosen, s.rewards_rejected, s.rewards_margins, s.rewards_accuracies, s.logps_chosen,
                            s.logps_rejected, lr, gnorm, n_step))
            break;
    }
    train_loop_end(&loop);
done:
    dpo_pairs_free(&p);
    recdata_free(&d);
    adamw_free_model(&opt, &model);
}
