// SPRec (method.md section 2): start from the SFT model; for t = 1..T
//   1. draw n train prompts (seeded by t);
//   2. negatives: the current model's own constrained recommendation (greedy
//      with dpo.beams = 1), its next-best item when that is the logged next
//      item (the chosen one);
//   3. SFT epoch on the n positives (sprec.sft_lr; sprec.eval_sft: evaluated);
//   4. reference = the model right after that SFT epoch: its log-probs of every
//      chosen/rejected completion, computed once (no second model in memory);
//   5. DPO epoch on the n pairs (sprec.dpo_lr, dpo.beta);
//   6. evaluate on the test rows, log the metrics, checkpoint.
// sprec_train's loop is that list, one function per step below. The steps are
// the SFT and DPO trainers' own (sft_step, dpo_pairs_step). Each
// stage gets a fresh AdamW (as the reference code's per-stage trainers) and
// its own schedule and batch ([sprec] sft_* / dpo_*, config_stage).
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
#include "stage_time.h"
#include "io/checkpoint.h"
#include "rec/evaluate.h"
#include "model/lora.h"
#include "base/progress.h"
#include "base/atomic_write.h"
#include "kernels/errors.h"
#include "base/rng.h"
#include "base/dist/dist.h"
#include "base/fileio.h"

#define MAX_KS 16

// One SPRec run: its data, the policy, and where its files go.
typedef struct {
    const Config *cfg;
    RecData d;
    Dataset train;               // the train split's token rows (views into d)
    Model model;                 // the policy: the model after iteration t-1, then t
    TrainState st;               // step (global over stages), epoch = completed iterations, stage
    int n, T;                    // prompts per iteration, iterations
    StageOpt so_sft, so_dpo;     // each stage's lr, schedule, batch (config_stage)
    float *sft_mask;             // sft.loss_on = all: the train rows' whole-text mask (x->train's), else NULL
    int ne, *elig, *chosen;      // train rows with a catalogue target; [n] drawn rows, their items
    int spdpo;                   // dpo.weighting = spdpo
    int eos;                     // data.completion_eos: the token DPO appends to both completions, else -1
    const char *neg_label;       // what made pairs.h5 (checked when a resume reloads it)
    int ks[MAX_KS], n_ks, beams, eval_rows, eval_valid, eval_sft;
    int root;                    // rank 0: writes the run folder (base/dist.h); the other ranks only compute
    FILE *log, *mf, *vf;         // train_log.jsonl, metrics.jsonl, metrics-valid.jsonl (NULL: not written here)
    TrainLoop sft_loop, dpo_loop;
    TrainTb *tb;                 // run.tensorboard (NULL: off)
    long tokens_run;             // the model's forward tokens so far (model.h work_tokens): tokens_per_s
    char ckpt_path[4096], pairs_path[4096];
} Sprec;

// On resume: keep the log lines of completed iterations and, of the
// interrupted iteration `done + 1`, those of its stages already checkpointed
// (the lines holding keep[0] or keep[1]; NULL: none); the rest is redone, so
// its partial lines go.
typedef struct { long done; const char *keep[2]; } LogKeep;
static int iteration_done(const char *line, size_t len, const void *arg) {
    (void)len;
    const LogKeep *k = arg;
    const char *q = strstr(line, "\"iteration\": ");
    if (!q) return 0;
    const long it = atol(q + strlen("\"iteration\": "));
    return it <= k->done || (it == k->done + 1 && ((k->keep[0] && strstr(line, k->keep[0])) ||
                                                   (k->keep[1] && strstr(line, k->keep[1]))));
}

// 1. n train rows, drawn by a seed that depends on the iteration only
static void draw_prompts(Sprec *x, int t) {
    const RecSplit *sp = &x->d.split[SPLIT_TRAIN];
    for (int r = 0, k = 0; r < sp->n; r++) if (sp->target[r] >= 0) x->elig[k++] = r;
    Rng rng;
    rng_seed(&rng, x->cfg->sprec.seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)t));
    for (int i = 0; i < x->n; i++) {
        int j = i + (int)rng_below(&rng, (uint64_t)(x->ne - i));
        int tmp = x->elig[i]; x->elig[i] = x->elig[j]; x->elig[j] = tmp;
    }
    for (int i = 0; i < x->n; i++) x->chosen[i] = sp->target[x->elig[i]];
}

// 2. the current model's own recommendations as the rejected items (next-best
// when equal to the chosen item; spdpo: its spdpo_k best other items, weighted
// by their normalised probability)
static void self_negatives(Sprec *x, DpoPairs *p) {
    const Config *cfg = x->cfg;
    if (x->spdpo) {
        dpo_spdpo_negatives(&x->model, &x->d, x->elig, x->chosen, x->n, cfg->dpo.spdpo_k, cfg->dpo.beams, p);
    } else {
        dpo_pairs_alloc(p, x->n);
        for (int i = 0; i < x->n; i++) { p->row[i] = x->elig[i]; p->chosen[i] = x->chosen[i]; }
        dpo_self_negatives(&x->model, &x->d, p, cfg->dpo.beams);
    }
}

// 3. SFT on the n positives (sprec.sft_epochs passes, the drawn order), a
// fresh AdamW, the stage's schedule from sprec.sft_lr
static void sft_stage(Sprec *x, int t) {
    AdamW opt;
    train_optimizer(x->cfg, &x->model, &opt);
    const StageOpt *o = &x->so_sft;
    const int per_step = o->batch_size * o->grad_accum, per_epoch = (x->n + per_step - 1) / per_step;
    const int steps = stage_steps(o, x->n);
    double sft_loss = 0, gnorm, mask_sum;
    for (int k = 0; k < steps; k++) {   // epochs x per_epoch steps, every epoch in the drawn order
        const int a = k % per_epoch * per_step, m = a + per_step < x->n ? per_step : x->n - a;
        const float lr = lr_at(k, steps, o->warmup_steps, o->lr, o->min_lr, o->schedule);
        double l = sft_step(&x->model, &opt, &x->train, x->elig + a, m, o->batch_size,
                            (uint64_t)x->st.step * o->grad_accum, lr, &gnorm, &mask_sum, NULL);
        x->st.step++;
        sft_loss += l;
        x->tokens_run = (long)x->model.work_tokens;
        train_loop_step(&x->sft_loop, "{\"iteration\": %d, \"stage\": \"sft\", \"step\": %ld, \"loss\": %.17g, \"grad_norm\": %.17g, "
                        "\"lr\": %.9g, \"scored\": %.17g}", t, x->st.step, l, gnorm, lr, mask_sum);
    }
    adamw_free(&opt, &x->model);
    if (x->model.lora) lora_set_train(&x->model, 0, 0);
    printf("sprec %d/%d: sft %d steps, mean loss %.4f\n", t, x->T, steps, sft_loss / steps);
}

// 5. DPO on the pairs (sprec.dpo_epochs passes), a fresh AdamW, the stage's
// schedule from sprec.dpo_lr (4., the reference pass, has filled p's
// reference log-probs)
static void dpo_stage(Sprec *x, int t, const DpoPairs *p) {
    AdamW opt;
    train_optimizer(x->cfg, &x->model, &opt);
    const StageOpt *o = &x->so_dpo;
    const int bs = dpo_pairs_per_micro(x->cfg, o->batch_size), per_step = bs * o->grad_accum;
    const int per_epoch = (p->n + per_step - 1) / per_step;
    const int steps = stage_steps(o, (long)p->n * o->batch_size / bs);   // pairs, or prompts (spdpo_batch)
    DpoStats s, sum = {0};
    double gnorm;
    for (int k = 0; k < steps; k++) {   // epochs x per_epoch steps, every epoch in the pairs' order
        const int a = k % per_epoch * per_step, b = a + per_step < p->n ? a + per_step : p->n;
        const float lr = lr_at(k, steps, o->warmup_steps, o->lr, o->min_lr, o->schedule);
        dpo_pairs_step(&x->model, &opt, &x->d, p, a, b, bs, (uint64_t)x->st.step * o->grad_accum, x->cfg->dpo.beta,
                       lr, &s, &gnorm);
        x->st.step++;
        x->tokens_run = (long)x->model.work_tokens;
        train_loop_step(&x->dpo_loop, "{\"iteration\": %d, \"stage\": \"dpo\", \"step\": %ld, \"loss\": %.17g, "
                        "\"rewards/chosen\": %.17g, \"rewards/rejected\": %.17g, \"rewards/margins\": %.17g, "
                        "\"rewards/accuracies\": %.17g, \"grad_norm\": %.17g, \"lr\": %.9g, \"pairs\": %d}", t, x->st.step, s.loss,
                        s.rewards_chosen, s.rewards_rejected, s.rewards_margins, s.rewards_accuracies, gnorm, lr, b - a);
        sum.loss += s.loss; sum.rewards_margins += s.rewards_margins; sum.rewards_accuracies += s.rewards_accuracies;
    }
    adamw_free(&opt, &x->model);
    if (x->model.lora) lora_set_train(&x->model, 0, 0);
    printf("sprec %d/%d: dpo %d steps on %d pairs, mean loss %.4f, margin %+.4f, accuracy %.3f\n", t, x->T, steps, p->n,
           sum.loss / steps, sum.rewards_margins / steps, sum.rewards_accuracies / steps);
    x->st.last_loss = sum.loss / steps;
}

// 6. evaluate on one split, append its metrics line (label: "sprec" after
// the DPO stage, "sprec-sft" after the SFT stage) and print its table; the
// ranked lists go to topk-SPLIT-iterT.jsonl (topk-SPLIT-iterT-sft.jsonl after
// the SFT stage; sprec eval's format), so every model can be rescored outside
static void eval_split(Sprec *x, int t, const char *split, FILE *out, const char *label, const char *label_fmt) {
    Metrics met[MAX_KS];
    const Config *cfg = x->cfg;
    char topk_path[4096];
    snprintf(topk_path, sizeof topk_path, "%s/topk-%s-iter%d%s.jsonl", cfg->run.out_dir, split, t,
             strcmp(label, "sprec-sft") ? "" : "-sft");
    AtomicFile *topk = x->root ? atomic_begin(topk_path, NULL) : NULL;
    evaluate_split_mode(&x->model, &x->d, split, x->ks, x->n_ks, x->beams, cfg->eval.batch, x->eval_rows,
                        cfg->eval.mode, cfg->eval.mode == EVAL_PAPER ? cfg->data.dataset : NULL,
                        &(PaperOpts){cfg->eval.encoder, cfg->data.tokenizer}, topk ? atomic_fopen(topk, "w") : NULL,
                        met);
    if (topk) atomic_commit(topk);
    if (out) {
        metrics_write_jsonl(out, label, t, met, x->n_ks);
        log_flush(out);
    }
    if (x->tb) {   // the metrics line as TensorBoard scalars LABEL/SPLIT/METRIC@K at step = iteration
        char *line, prefix[48];
        size_t len;
        FILE *m = open_memstream(&line, &len);
        metrics_write_jsonl(m, label, t, met, x->n_ks);
        fclose(m);
        snprintf(prefix, sizeof prefix, "%s/%s", label, split);
        train_tb_json(x->tb, prefix, t, line);
        free(line);
    }
    char title[48];
    snprintf(title, sizeof title, label_fmt, t);
    metrics_print_table(stdout, title, met, x->n_ks);
}

// 6. (and 3. with sprec.eval_sft) the test split, and the valid split unless
// sprec.eval_valid = false
static void eval_stage(Sprec *x, int t, const char *label) {
    const int sft = !strcmp(label, "sprec-sft");
    eval_split(x, t, "test", x->mf, label, sft ? "sprec %d after SFT" : "sprec %d");
    if (x->eval_valid) eval_split(x, t, "valid", x->vf, label, sft ? "sprec %d after SFT, valid" : "sprec %d valid");
}

// the decoding work of eval_stage's splits, for the evaluation stage's FLOPs
static void stage_add_eval(StageClock *clk, const Sprec *x) {
    stage_add_decode(clk, STAGE_EVAL, &x->model, &x->d, SPLIT_TEST, NULL, x->eval_rows, NULL, 0, x->beams);
    if (x->eval_valid) stage_add_decode(clk, STAGE_EVAL, &x->model, &x->d, SPLIT_VALID, NULL, x->eval_rows, NULL, 0, x->beams);
}

// a stage's checkpoint: the policy (no optimizer: each stage starts a fresh
// one) and where the iteration stands
static void stage_checkpoint(Sprec *x, const char *stage) {
    snprintf(x->st.stage, sizeof x->st.stage, "%s", stage);
    if (!x->root) return;
    log_flush(x->log);
    checkpoint_save(x->ckpt_path, &x->model, NULL, &x->st);
}

// After a checkpoint the loop resumes from (a stage's, an iteration's): SIGUSR1
// on any rank (train_signal_stop) stops the run here. These are the finest
// points a SPRec checkpoint resumes from (no optimizer state inside a stage), so
// the signal waits for the end of the stage it came in (docs/training.md "Signals").
static int stop_on_signal(const Sprec *x, int t, const char *where) {
    if (!train_signal_stop()) return 0;
    printf("sprec: SIGUSR1 in iteration %d/%d: checkpoint written %s, stopping; --resume continues\n", t, x->T, where);
    return 1;
}

// Everything before the loop: the dataset, the policy (resumed, train.init or
// random; x->st.stage says where a resumed run stopped), the drawn-row
// buffers, the run folder's files.
static void sprec_begin(Sprec *x, const Config *cfg, int resume) {
    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    x->root = dist_is_root(dist_world());
    const Backend *be = train_start(cfg);
    const LoraConfig lc = train_lora_config(cfg);
    int max_k = 0;
    char kerr[128];
    x->n_ks = evaluate_parse_ks(cfg->eval.ks, x->ks, MAX_KS, kerr, sizeof kerr);
    if (x->n_ks == 0) fail("[eval] ks = %s: %s", cfg->eval.ks, kerr);
    for (int i = 0; i < x->n_ks; i++) if (x->ks[i] > max_k) max_k = x->ks[i];
    x->beams = cfg->eval.beams > max_k ? cfg->eval.beams : max_k;
    const char *out = cfg->run.out_dir;
    char log_path[4096], met_path[4096], valid_path[4096];
    train_prepare_run_dir(out, resume, x->ckpt_path, sizeof x->ckpt_path);
    snprintf(log_path, sizeof log_path, "%s/train_log.jsonl", out);
    snprintf(met_path, sizeof met_path, "%s/metrics.jsonl", out);
    snprintf(valid_path, sizeof valid_path, "%s/metrics-valid.jsonl", out);
    snprintf(x->pairs_path, sizeof x->pairs_path, "%s/pairs.h5", out);

    RecData *d = &x->d;
    recdata_load(d, cfg->data.dataset);
    if (!d->tokenized)
        fail("%s has no token ids: prepare it with a [data] tokenizer (the model's) to train on it", cfg->data.dataset);
    const RecSplit *sp = &d->split[SPLIT_TRAIN];
    x->train = (Dataset){.N = sp->n, .T = sp->T, .tokens = sp->tokens, .mask = sp->mask, .lengths = sp->lengths};

    // the model after iteration t-1: the run's checkpoint, else train.init (the SFT model), else random
    Model *model = &x->model;
    TrainState *st = &x->st;
    const char *source = train_create_model(cfg, be, &lc, x->ckpt_path, resume, model);
    if (source) checkpoint_load(source, model, NULL, resume ? st : NULL);
    else model_init_random(model, cfg->init_seed, cfg->init_std);
    if (model->lora && !cfg->lora.enabled) model_merge_lora(model);
    if (resume && strncmp(st->stage, "sprec", 5) != 0) fail("%s is not a SPRec run (stage '%s')", x->ckpt_path, st->stage);
    if (!resume) snprintf(st->stage, sizeof st->stage, "sprec");
    x->spdpo = !strcmp(cfg->dpo.weighting, "spdpo");
    x->eos = dpo_completion_eos(model, cfg->data.completion_eos);

    x->elig = xmalloc((size_t)(sp->n > 0 ? sp->n : 1) * sizeof(int));
    for (int r = 0; r < sp->n; r++) if (sp->target[r] >= 0) x->elig[x->ne++] = r;
    if (x->ne == 0 || d->n_items < 2)
        fail("%s: SPRec needs train rows with catalogue targets and >= 2 items", cfg->data.dataset);
    x->n = cfg->sprec.n < x->ne ? cfg->sprec.n : x->ne;
    x->T = cfg->sprec.iterations;
    x->so_sft = config_stage(cfg, TRAIN_STAGE_SPREC_SFT);
    x->so_dpo = config_stage(cfg, TRAIN_STAGE_SPREC_DPO);
    if (!strcmp(cfg->sft.loss_on, "all")) {   // the SFT stage's loss on the whole text; DPO keeps the completion mask
        x->sft_mask = xmalloc((size_t)x->train.N * (size_t)x->train.T * sizeof(float));
        x->train.mask = x->sft_mask;
        dataset_mask_all(&x->train);
    }
    x->eval_rows = cfg->sprec.eval_rows > 0 ? cfg->sprec.eval_rows : cfg->eval.max_rows;
    x->eval_valid = cfg->sprec.eval_valid && d->split[SPLIT_VALID].n > 0;
    x->eval_sft = cfg->sprec.eval_sft;
    x->chosen = xmalloc((size_t)(x->n > 0 ? x->n : 1) * sizeof(int));
    train_record_config(cfg, resume);
    // where an interrupted iteration stopped: "sprec" = between iterations,
    // "sprec:sft" / "sprec:dpo" = that stage of iteration st.epoch + 1 is done
    const int done_sft = !strcmp(st->stage, "sprec:sft"), done_dpo = !strcmp(st->stage, "sprec:dpo");
    if (resume && x->root) {   // the SFT stage's lines (and its evaluation's, sprec.eval_sft) precede its checkpoint
        const char *sft_done = done_sft || done_dpo ? "\"stage\": \"sft\"" : NULL;
        const char *sft_eval = done_sft || done_dpo ? "\"label\": \"sprec-sft\"" : NULL;
        const LogKeep stages = {st->epoch, {sft_done, done_dpo ? "\"stage\": \"dpo\"" : NULL}};
        const LogKeep evals = {st->epoch, {sft_eval, NULL}};
        train_filter_log(log_path, iteration_done, &stages);
        train_filter_log(met_path, iteration_done, &evals);
        train_filter_log(valid_path, iteration_done, &evals);
    }
    x->log = train_open_log(cfg, "train_log.jsonl", resume, -1);
    x->mf = train_open_log(cfg, "metrics.jsonl", resume, -1);
    x->vf = x->eval_valid ? train_open_log(cfg, "metrics-valid.jsonl", resume, -1) : NULL;
    const StageOpt *so = &x->so_sft, *dp = &x->so_dpo;
    printf("sprec: %s | %d iterations of %d prompts%s | sft: lr %g %s, %d warm-up, %d x %d rows, %d epoch(s) | "
           "dpo: lr %g %s, %d warm-up, %d x %d %s, %d epoch(s), beta %g%s\n", cfg->data.dataset, x->T, x->n,
           x->spdpo ? " x spdpo_k negatives" : "", (double)so->lr, so->schedule, so->warmup_steps, so->batch_size,
           so->grad_accum, so->epochs, (double)dp->lr, dp->schedule, dp->warmup_steps, dp->batch_size, dp->grad_accum,
           dpo_pairs_per_micro(cfg, 1) > 1 ? "prompts" : "pairs", dp->epochs, (double)cfg->dpo.beta,
           model->lora ? " | LoRA" : "");
    if (resume) printf("sprec: resuming %s after iteration %ld%s\n", x->ckpt_path, st->epoch,
                       done_dpo ? " + its SFT and DPO stages" : done_sft ? " + its SFT stage" : "");
    // the stages' steps log through the trainers' step tail; their checkpoints are per stage
    x->tb = train_open_tb(cfg);
    x->sft_loop = (TrainLoop){.name = "sprec.sft", .log = x->log, .st = st, .tb = x->tb, .tokens = &x->tokens_run};
    x->dpo_loop = (TrainLoop){.name = "sprec.dpo", .log = x->log, .st = st, .tb = x->tb, .tokens = &x->tokens_run};
    x->neg_label = x->spdpo ? "self+spdpo" : "self";
}

static void sprec_end(Sprec *x) {
    log_close(x->log);
    log_close(x->mf);
    log_close(x->vf);
    train_tb_close(x->tb);
    free(x->elig);
    free(x->chosen);
    free(x->sft_mask);
    recdata_free(&x->d);
    model_free(&x->model);
}

void sprec_train(const Config *cfg, int resume, int stop_at) {
    Sprec x;
    sprec_begin(&x, cfg, resume);
    FILE *times = train_open_log(cfg, "stage_times.jsonl", resume, -1);   // stage_time.h
    StageClock clk;
    const int done_sft = !strcmp(x.st.stage, "sprec:sft"), done_dpo = !strcmp(x.st.stage, "sprec:dpo");
    const int first_t = (int)x.st.epoch + 1;   // only this iteration can be partly done (a resume)
    for (int t = first_t; t <= x.T; t++) {
        double t0 = now_seconds();
        const int resumed = resume && t == first_t;
        DpoPairs p;
        stage_clock_reset(&clk);
        draw_prompts(&x, t);                                        // 1.
        if (!(resumed && (done_sft || done_dpo))) {
            stage_begin(&clk, &x.model);
            self_negatives(&x, &p);                                 // 2.
            stage_add_decode(&clk, STAGE_NEGATIVES, &x.model, &x.d, SPLIT_TRAIN, x.elig, x.n, p.rejected, p.n,
                             x.cfg->dpo.beams);
            stage_end(&clk, STAGE_NEGATIVES, &x.model);
            stage_begin(&clk, &x.model);
            sft_stage(&x, t);                                       // 3.
            stage_end(&clk, STAGE_SFT, &x.model);
            if (x.eval_sft) {   // SFT_t's evaluation: timed with the evaluation stage
                stage_begin(&clk, &x.model);
                eval_stage(&x, t, "sprec-sft");
                stage_add_eval(&clk, &x);
                stage_end(&clk, STAGE_EVAL, &x.model);
            }
            // stage checkpoint: the model after SFT + the pairs (negatives of the model before it)
            if (x.root) dpo_pairs_save(&p, x.pairs_path, x.neg_label);
            stage_checkpoint(&x, "sprec:sft");
            if (stop_on_signal(&x, t, "after its SFT stage")) { dpo_pairs_free(&p); break; }
        } else {
            dpo_pairs_load(&p, x.pairs_path, x.neg_label);
        }
        p.eos = x.eos;
        if (!(resumed && done_dpo)) {
            stage_begin(&clk, &x.model);
            // 4. reference = the model after SFT, once, in the DPO steps' micro-batches
            dpo_pairs_reference(&x.model, &x.d, &p, dpo_pairs_per_micro(cfg, x.so_dpo.batch_size));
            stage_end(&clk, STAGE_REFERENCE, &x.model);
            stage_begin(&clk, &x.model);
            dpo_stage(&x, t, &p);                                   // 5.
            stage_end(&clk, STAGE_DPO, &x.model);
            stage_checkpoint(&x, "sprec:dpo");
            if (stop_on_signal(&x, t, "after its DPO stage")) { dpo_pairs_free(&p); break; }
        }
        dpo_pairs_free(&p);
        stage_begin(&clk, &x.model);
        eval_stage(&x, t, "sprec");                                 // 6.
        stage_add_eval(&clk, &x);
        stage_end(&clk, STAGE_EVAL, &x.model);
        x.st.epoch = t;
        snprintf(x.st.stage, sizeof x.st.stage, "sprec");
        if (x.root) {
            checkpoint_save(x.ckpt_path, &x.model, NULL, &x.st);
            remove(x.pairs_path);
        }
        stage_clock_log(&clk, times, t);
        printf("sprec %d/%d: done in %.1f s, checkpoint %s\n", t, x.T, now_seconds() - t0, x.ckpt_path);
        fflush(stdout);
        if (t == stop_at) { printf("sprec: stopped after iteration %d as asked (--stop-at)\n", t); break; }
        if (t < x.T && stop_on_signal(&x, t, "at its end")) break;
    }
    if (times) fclose(times);
    sprec_end(&x);
}
