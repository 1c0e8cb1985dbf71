// SPRec (SPREC.md section 2): start from the SFT model; for t = 1..T
//   1. draw n train prompts (seeded by t);
//   2. negatives: the current model's own constrained greedy recommendation,
//      its next-best item when that is the logged next item (the chosen one);
//   3. SFT epoch on the n positives (sprec.sft_lr);
//   4. reference = the model right after that SFT epoch: its log-probs of every
//      chosen/rejected completion, computed once (no second model in memory);
//   5. DPO epoch on the n pairs (sprec.dpo_lr, dpo.beta);
//   6. evaluate on the test rows, log the metrics, checkpoint.
// The steps are the SFT and DPO trainers' own (sft_step, dpo_pairs_step). Each
// stage gets a fresh AdamW (as the reference code's per-stage trainers) at a
// constant learning rate, effective batch train.batch_size x train.grad_accum.
// An iteration is a pure function of (the model after t-1, t), so resuming
// after the last completed iteration is exact.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "train.h"
#include "sft_step.h"
#include "dpo_pairs.h"
#include "train_run.h"
#include "io/checkpoint.h"
#include "rec/evaluate.h"
#include "model/lora.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "base/rng.h"
#include "base/atomic_write.h"

#define MAX_KS 16

// On resume: keep the log lines of completed iterations and, of the
// interrupted iteration `done + 1`, those of its stages already checkpointed
// (keep_sft, keep_dpo); the rest is redone, so its partial lines go.
static void truncate_log(const char *path, long done, int keep_sft, int keep_dpo) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    AtomicFile *a = atomic_begin(path, NULL);
    FILE *o = atomic_fopen(a, "w");
    while (fgets(line, sizeof line, f)) {
        const char *q = strstr(line, "\"iteration\": ");
        if (!q) continue;
        const long it = atol(q + strlen("\"iteration\": "));
        const int keep = it <= done || (it == done + 1 && ((keep_sft && strstr(line, "\"stage\": \"sft\"")) ||
                                                           (keep_dpo && strstr(line, "\"stage\": \"dpo\""))));
        if (keep) fputs(line, o);
    }
    fclose(f);
    atomic_commit(a);
}

void sprec_train(const Config *cfg, int resume, int stop_at) {
    const Backend *be = train_start(cfg);
    const LoraConfig lc = train_lora_config(cfg);
    int ks[MAX_KS], max_k = 0;
    char kerr[128];
    const int n_ks = evaluate_parse_ks(cfg->eval.ks, ks, MAX_KS, kerr, sizeof kerr);
    if (n_ks == 0) fail("[eval] ks = %s: %s", cfg->eval.ks, kerr);
    for (int i = 0; i < n_ks; i++) if (ks[i] > max_k) max_k = ks[i];
    const char *out = cfg->run.out_dir;
    char ckpt_path[4096], log_path[4096], met_path[4096], valid_path[4096], pairs_path[4096];
    train_prepare_run_dir(out, resume, ckpt_path, sizeof ckpt_path);
    snprintf(log_path, sizeof log_path, "%s/train_log.jsonl", out);
    snprintf(met_path, sizeof met_path, "%s/metrics.jsonl", out);
    snprintf(valid_path, sizeof valid_path, "%s/metrics-valid.jsonl", out);
    snprintf(pairs_path, sizeof pairs_path, "%s/pairs.h5", out);

    RecData d;
    recdata_load(&d, cfg->data.dataset);
    if (!d.tokenized)
        fail("%s has no token ids: prepare it with a [data] tokenizer (the model's) to train on it", cfg->data.dataset);
    const RecSplit *sp = &d.split[SPLIT_TRAIN];
    Dataset train = {.N = sp->n, .T = sp->T, .tokens = sp->tokens, .mask = sp->mask, .lengths = sp->lengths};

    // the model after iteration t-1: the run's checkpoint, else train.init (the SFT model), else random
    Model model;
    const char *source = train_create_model(cfg, be, &lc, ckpt_path, resume, &model);
    TrainState st;
    memset(&st, 0, sizeof st);
    if (source) checkpoint_load(source, &model, NULL, resume ? &st : NULL);
    else model_init_random(&model, cfg->init_seed, cfg->init_std);
    if (model.lora && !cfg->lora.enabled) model_merge_lora(&model);
    if (resume && strncmp(st.stage, "sprec", 5) != 0) fail("%s is not a SPRec run (stage '%s')", ckpt_path, st.stage);
    if (!resume) snprintf(st.stage, sizeof st.stage, "sprec");
    const int spdpo = !strcmp(cfg->dpo.weighting, "spdpo");

    int *elig = xmalloc((size_t)(sp->n > 0 ? sp->n : 1) * sizeof(int)), ne = 0;
    for (int r = 0; r < sp->n; r++) if (sp->target[r] >= 0) elig[ne++] = r;
    if (ne == 0 || d.n_items < 2) fail("%s: SPRec needs train rows with catalogue targets and >= 2 items", cfg->data.dataset);
    const int n = cfg->sprec.n < ne ? cfg->sprec.n : ne, T = cfg->sprec.iterations;
    const int bs = cfg->train.batch_size, ga = cfg->train.grad_accum, per_step = bs * ga;
    const int eval_rows = cfg->sprec.eval_rows > 0 ? cfg->sprec.eval_rows : cfg->eval.max_rows;
    const int eval_valid = cfg->sprec.eval_valid && d.split[SPLIT_VALID].n > 0;
    int *chosen = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    train_write_config(cfg);
    // where an interrupted iteration stopped: "sprec" = between iterations,
    // "sprec:sft" / "sprec:dpo" = that stage of iteration st.epoch + 1 is done
    const int done_sft = !strcmp(st.stage, "sprec:sft"), done_dpo = !strcmp(st.stage, "sprec:dpo");
    if (resume) {
        truncate_log(log_path, st.epoch, done_sft || done_dpo, done_dpo);
        truncate_log(met_path, st.epoch, 0, 0);
        truncate_log(valid_path, st.epoch, 0, 0);
    }
    FILE *log = train_open_log(cfg, "train_log.jsonl", resume), *mf = train_open_log(cfg, "metrics.jsonl", resume);
    FILE *vf = eval_valid ? train_open_log(cfg, "metrics-valid.jsonl", resume) : NULL;
    printf("sprec: %s | %d iterations of %d prompts%s | steps of %d rows (%d x %d) | sft lr %g, dpo lr %g, beta %g%s\n",
           cfg->data.dataset, T, n, spdpo ? " x spdpo_k negatives" : "", per_step, bs, ga, (double)cfg->sprec.sft_lr,
           (double)cfg->sprec.dpo_lr, (double)cfg->dpo.beta, model.lora ? " | LoRA" : "");
    if (resume) printf("sprec: resuming %s after iteration %ld%s\n", ckpt_path, st.epoch,
                       done_dpo ? " + its SFT and DPO stages" : done_sft ? " + its SFT stage" : "");

    // the stages' steps log through the trainers' step tail; their checkpoints are per stage
    const TrainLoop sft_loop = {.name = "sprec.sft", .log = log, .st = &st};
    const TrainLoop dpo_loop = {.name = "sprec.dpo", .log = log, .st = &st};
    const char *neg_label = spdpo ? "self+spdpo" : "self";
    const int first_t = (int)st.epoch + 1;   // only this iteration can be partly done (a resume)
    for (int t = first_t; t <= T; t++) {
        double t0 = now_seconds();
        const int resumed = resume && t == first_t;
        const int skip_sft = resumed && (done_sft || done_dpo), skip_dpo = resumed && done_dpo;
        // 1. n prompts, seeded by the iteration
        for (int r = 0, k = 0; r < sp->n; r++) if (sp->target[r] >= 0) elig[k++] = r;
        Rng rng;
        rng_seed(&rng, cfg->sprec.seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)t));
        for (int i = 0; i < n; i++) {
            int j = i + (int)rng_below(&rng, (uint64_t)(ne - i));
            int tmp = elig[i]; elig[i] = elig[j]; elig[j] = tmp;
        }
        for (int i = 0; i < n; i++) chosen[i] = sp->target[elig[i]];
        DpoPairs p;
        double gnorm, mask_sum;
        int steps = 0;
        if (!skip_sft) {
            // 2. self-generated negatives of the current model (next-best when equal to the chosen item;
            //    spdpo: its spdpo_k best other items, weighted by their normalised probability)
            if (spdpo) {
                dpo_spdpo_negatives(&model, &d, elig, chosen, n, cfg->dpo.spdpo_k, cfg->dpo.beams, &p);
            } else {
                dpo_pairs_alloc(&p, n);
                for (int i = 0; i < n; i++) { p.row[i] = elig[i]; p.chosen[i] = chosen[i]; }
                dpo_self_negatives(&model, &d, &p, cfg->dpo.beams);
            }
            // 3. an SFT epoch on the n positives
            AdamW opt;
            train_optimizer(cfg, &model, &opt);
            double sft_loss = 0;
            for (int a = 0; a < n; a += per_step, steps++) {
                const int m = a + per_step < n ? per_step : n - a;
                double l = sft_step(&model, &opt, &train, elig + a, m, bs, (uint64_t)st.step * ga, cfg->sprec.sft_lr,
                                    &gnorm, &mask_sum, NULL);
                st.step++;
                sft_loss += l;
                train_loop_step(&sft_loop, "{\"iteration\": %d, \"stage\": \"sft\", \"step\": %ld, \"loss\": %.17g, \"grad_norm\": %.17g}",
                                t, st.step, l, gnorm);
            }
            adamw_free(&opt, &model);
            if (model.lora) lora_set_train(&model, 0, 0);
            printf("sprec %d/%d: sft %d steps, mean loss %.4f\n", t, T, steps, sft_loss / steps);
            // stage checkpoint: the model after SFT + the pairs (negatives of the model before it)
            dpo_pairs_save(&p, pairs_path, neg_label);
            fflush(log);
            snprintf(st.stage, sizeof st.stage, "sprec:sft");
            checkpoint_save(ckpt_path, &model, NULL, &st);
        } else {
            dpo_pairs_load(&p, pairs_path, neg_label);
        }
        if (!skip_dpo) {
            // 4. reference = the model after the SFT epoch, computed once
            dpo_pairs_reference(&model, &d, &p, bs);
            // 5. a DPO epoch on the pairs
            AdamW opt;
            train_optimizer(cfg, &model, &opt);
            DpoStats s, sum = {0};
            steps = 0;
            for (int a = 0; a < p.n; a += per_step, steps++) {
                const int b = a + per_step < p.n ? a + per_step : p.n;
                dpo_pairs_step(&model, &opt, &d, &p, a, b, bs, (uint64_t)st.step * ga, cfg->dpo.beta, cfg->sprec.dpo_lr,
                               &s, &gnorm);
                st.step++;
                train_loop_step(&dpo_loop, "{\"iteration\": %d, \"stage\": \"dpo\", \"step\": %ld, \"loss\": %.17g, "
                                "\"rewards/chosen\": %.17g, \"rewards/rejected\": %.17g, \"rewards/margins\": %.17g, "
                                "\"rewards/accuracies\": %.17g, \"grad_norm\": %.17g}", t, st.step, s.loss, s.rewards_chosen,
                                s.rewards_rejected, s.rewards_margins, s.rewards_accuracies, gnorm);
                sum.loss += s.loss; sum.rewards_margins += s.rewards_margins; sum.rewards_accuracies += s.rewards_accuracies;
            }
            adamw_free(&opt, &model);
            if (model.lora) lora_set_train(&model, 0, 0);
            printf("sprec %d/%d: dpo %d steps on %d pairs, mean loss %.4f, margin %+.4f, accuracy %.3f\n", t, T, steps, p.n,
                   sum.loss / steps, sum.rewards_margins / steps, sum.rewards_accuracies / steps);
            st.last_loss = sum.loss / steps;
            fflush(log);
            snprintf(st.stage, sizeof st.stage, "sprec:dpo");
            checkpoint_save(ckpt_path, &model, NULL, &st);
        }
        dpo_pairs_free(&p);
        // 6. evaluate (test, and valid unless sprec.eval_valid = false), log, checkpoint
        Metrics met[MAX_KS];
        const int beams = cfg->eval.beams > max_k ? cfg->eval.beams : max_k;
        evaluate_split_mode(&model, &d, "test", ks, n_ks, beams, cfg->eval.batch, eval_rows, cfg->eval.mode, NULL, NULL, met);
        metrics_write_jsonl(mf, "sprec", t, met, n_ks);
        fflush(mf);
        char label[32];
        snprintf(label, sizeof label, "sprec %d", t);
        metrics_print_table(stdout, label, met, n_ks);
        if (vf) {
            evaluate_split_mode(&model, &d, "valid", ks, n_ks, beams, cfg->eval.batch, eval_rows, cfg->eval.mode, NULL, NULL, met);
            metrics_write_jsonl(vf, "sprec", t, met, n_ks);
            fflush(vf);
            snprintf(label, sizeof label, "sprec %d valid", t);
            metrics_print_table(stdout, label, met, n_ks);
        }
        st.epoch = t;
        snprintf(st.stage, sizeof st.stage, "sprec");
        checkpoint_save(ckpt_path, &model, NULL, &st);
        remove(pairs_path);
        printf("sprec %d/%d: done in %.1f s, checkpoint %s\n", t, T, now_seconds() - t0, ckpt_path);
        fflush(stdout);
        if (t == stop_at) { printf("sprec: stopped after iteration %d as asked (--stop-at)\n", t); break; }
    }
    fclose(log);
    fclose(mf);
    if (vf) fclose(vf);
    free(elig);
    free(chosen);
    recdata_free(&d);
    model_free(&model);
}
