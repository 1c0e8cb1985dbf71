// DPO on a prepared recommendation dataset (SPREC.md section 2, "DPO-RN"):
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
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include "train_dpo.h"
#include "base/dist.h"
#include "train_sft.h"
#include "train_run.h"
#include "base/fileio.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "io/dataset.h"
#include "model/device.h"
#include "dpo.h"
#include "rec/recdata.h"
#include "rec/recommend.h"
#include "rec/trie.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "base/rng.h"
#include "base/h5io.h"


void dpo_pairs_alloc(DpoPairs *p, int n) {
    p->n = n;
    p->row = xmalloc((size_t)n * sizeof(int));
    p->chosen = xmalloc((size_t)n * sizeof(int));
    p->rejected = xmalloc((size_t)n * sizeof(int));
    p->ref_c = xmalloc((size_t)n * sizeof(double));
    p->ref_r = xmalloc((size_t)n * sizeof(double));
    p->pair_w = NULL;
}

void dpo_pairs_free(DpoPairs *p) {
    free(p->row); free(p->chosen); free(p->rejected); free(p->ref_c); free(p->ref_r); free(p->pair_w);
}


// float64 datasets (h5io has f32/i32 only; the reference log-probs are kept exactly)
static void write_f64(hid_t f, const char *name, long n, const double *x) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) fail("cannot write %s", name);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void read_f64(hid_t f, const char *path, const char *name, long n, double *x) {
    long dims[8];
    if (!h5_exists(f, name) || h5_shape(f, path, name, dims) != 1 || dims[0] != n)
        fail("%s: /%s missing or not %ld values", path, name, n);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0 || H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) fail("%s: cannot read /%s", path, name);
    H5Dclose(ds);
}

void dpo_pairs_save(const DpoPairs *p, const char *path, const char *negatives) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = h5_create(tmp);
    long d[1] = {p->n};
    h5_write_i32(f, "row", 1, d, p->row);
    h5_write_i32(f, "chosen", 1, d, p->chosen);
    h5_write_i32(f, "rejected", 1, d, p->rejected);
    write_f64(f, "ref_chosen", p->n, p->ref_c);
    write_f64(f, "ref_rejected", p->n, p->ref_r);
    if (p->pair_w) write_f64(f, "pair_weight", p->n, p->pair_w);
    h5_attr_write_str(f, "negatives", negatives);
    h5_close(f);
    if (rename(tmp, path) != 0) fail("cannot rename %s to %s: %s", tmp, path, strerror(errno));
}

void dpo_pairs_load(DpoPairs *p, const char *path, const char *negatives) {
    hid_t f = h5_open_read(path);
    char neg[32];
    h5_attr_read_str(f, path, "negatives", neg, sizeof neg);
    if (strcmp(neg, negatives) != 0)
        fail("%s holds negatives = %s but [dpo] negatives = %s; resume with the run's own config.ini", path, neg, negatives);
    long d[1] = {-1};
    int *row = h5_read_i32(f, path, "row", 1, d);
    dpo_pairs_alloc(p, (int)d[0]);
    memcpy(p->row, row, (size_t)p->n * sizeof(int));
    free(row);
    int *c = h5_read_i32(f, path, "chosen", 1, d), *r = h5_read_i32(f, path, "rejected", 1, d);
    memcpy(p->chosen, c, (size_t)p->n * sizeof(int));
    memcpy(p->rejected, r, (size_t)p->n * sizeof(int));
    free(c); free(r);
    read_f64(f, path, "ref_chosen", p->n, p->ref_c);
    read_f64(f, path, "ref_rejected", p->n, p->ref_r);
    if (h5_exists(f, "pair_weight")) {
        p->pair_w = xmalloc((size_t)p->n * sizeof(double));
        read_f64(f, path, "pair_weight", p->n, p->pair_w);
    }
    h5_close(f);
}

// Rows [a, b) of the pairs as a batch: side 0 = the rows' own tokens (prompt +
// chosen completion, the prepared layout), side 1 = prompt + the rejected
// item's completion tokens, mask 1 on the completion.
static void pairs_batch(const RecData *d, const DpoPairs *p, int a, int b, int side, Batch *out) {
    const RecSplit *sp = &d->split[SPLIT_TRAIN];
    const int B = b - a;
    int T = 1;
    int *len = xmalloc((size_t)B * sizeof(int));
    for (int i = 0; i < B; i++) {
        int r = p->row[a + i], it = p->rejected[a + i];
        len[i] = side == 0 ? sp->lengths[r] : sp->prompt_len[r] + d->item_tok_offsets[it + 1] - d->item_tok_offsets[it];
        if (len[i] > T) T = len[i];
    }
    out->B = B;
    out->T = T;
    out->lengths = len;
    out->tokens = xcalloc((size_t)B * T, sizeof(int));
    out->mask = xcalloc((size_t)B * T, sizeof(float));
    for (int i = 0; i < B; i++) {
        const int r = p->row[a + i], pl = sp->prompt_len[r];
        int *tk = out->tokens + (size_t)i * T;
        float *mk = out->mask + (size_t)i * T;
        if (side == 0) {
            memcpy(tk, sp->tokens + (size_t)r * sp->T, (size_t)len[i] * sizeof(int));
            memcpy(mk, sp->mask + (size_t)r * sp->T, (size_t)len[i] * sizeof(float));
        } else {
            const int it = p->rejected[a + i];
            memcpy(tk, sp->tokens + (size_t)r * sp->T, (size_t)pl * sizeof(int));
            memcpy(tk + pl, d->item_tok + d->item_tok_offsets[it], (size_t)(len[i] - pl) * sizeof(int));
            for (int t = pl; t < len[i]; t++) mk[t] = 1;
        }
    }
}

// Prompts per recommend call while generating negatives: a progress line after
// each (the KV cache holds at most 256 rows anyway, so nothing is lost).
#define NEGATIVES_CHUNK 64

// The catalogue trie and the prompts of rows[0..n) (views into d; free the arrays and the trie after).
static void negatives_setup(const RecData *d, const int *rows, int n, Trie *trie, const int ***prompts, int **plens) {
    const RecSplit *sp = &d->split[SPLIT_TRAIN];
    const int V = d->n_items;
    const int **seqs = xmalloc((size_t)V * sizeof(int *));
    int *lens = xmalloc((size_t)V * sizeof(int));
    for (int i = 0; i < V; i++) {
        seqs[i] = d->item_tok + d->item_tok_offsets[i];
        lens[i] = d->item_tok_offsets[i + 1] - d->item_tok_offsets[i];
    }
    trie_build(trie, seqs, lens, V, (const char *const *)d->titles);
    free(seqs); free(lens);
    *prompts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int *));
    *plens = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++) {
        (*prompts)[i] = sp->tokens + (size_t)rows[i] * sp->T;
        (*plens)[i] = sp->prompt_len[rows[i]];
    }
}

void dpo_self_negatives(Model *gen, const RecData *d, DpoPairs *p, int beams) {
    const int n = p->n;
    Trie trie;
    const int **prompts;
    int *plens;
    negatives_setup(d, p->row, n, &trie, &prompts, &plens);
    float *scores = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    double t0 = now_seconds();
    const Dist *dist = dist_world();   // this rank's share of the prompts, then all ranks get every negative
    int lo, hi;
    dist_share(dist, n, &lo, &hi);
    double t_last = t0;
    for (int a = lo; a < hi; a += NEGATIVES_CHUNK) {   // in chunks, for the progress line
        const int b = a + NEGATIVES_CHUNK < hi ? a + NEGATIVES_CHUNK : hi;
        recommend_next_best(gen, &trie, prompts + a, plens + a, b - a, p->chosen + a, beams, p->rejected + a, scores + a);
        progress_line("dpo negatives", b - lo, hi - lo, "prompts", t0, &t_last);
    }
    dist_gather(dist, p->rejected, sizeof(int), lo, hi, n);
    printf("dpo: %d self-generated negatives (beam %d) in %.1f s\n", n, beams, now_seconds() - t0);
    free(scores); free(prompts); free(plens);
    trie_free(&trie);
}

void dpo_spdpo_negatives(Model *gen, const RecData *d, const int *rows, const int *chosen, int n, int k, int beams,
                         DpoPairs *p) {
    if (k + 1 > d->n_items) fail("dpo.spdpo_k = %d needs a catalogue of at least %d items (has %d)", k, k + 1, d->n_items);
    const int K = k + 1, W = beams > K ? beams : K;
    Trie trie;
    const int **prompts;
    int *plens;
    negatives_setup(d, rows, n, &trie, &prompts, &plens);
    int *items = xmalloc((size_t)n * K * sizeof(int));
    float *scores = xmalloc((size_t)n * K * sizeof(float));
    double t0 = now_seconds();
    const Dist *dist = dist_world();   // this rank's share of the prompts, then all ranks get every list
    int lo, hi;
    dist_share(dist, n, &lo, &hi);
    double t_last = t0;
    for (int a = lo; a < hi; a += NEGATIVES_CHUNK) {   // in chunks, for the progress line
        const int b = a + NEGATIVES_CHUNK < hi ? a + NEGATIVES_CHUNK : hi;
        recommend_topk(gen, &trie, prompts + a, plens + a, b - a, K, W, items + (size_t)a * K, scores + (size_t)a * K);
        progress_line("dpo negatives", b - lo, hi - lo, "prompts", t0, &t_last);
    }
    dist_gather(dist, items, (size_t)K * sizeof(int), lo, hi, n);
    dist_gather(dist, scores, (size_t)K * sizeof(float), lo, hi, n);
    dpo_pairs_alloc(p, n * k);
    p->pair_w = xmalloc((size_t)n * k * sizeof(double));
    double *gen_lp = xmalloc((size_t)n * k * sizeof(double));
    int *group = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        group[i] = k;
        for (int j = 0, o = i * k; j < K && o < (i + 1) * k; j++) {   // the k best that are not the chosen item
            if (items[i * K + j] == chosen[i]) continue;
            p->row[o] = rows[i];
            p->chosen[o] = chosen[i];
            p->rejected[o] = items[i * K + j];
            gen_lp[o++] = scores[i * K + j];
        }
    }
    dpo_spdpo_weights(n, group, gen_lp, p->pair_w);
    printf("dpo: %d prompts x %d self-generated negatives (spdpo, beam %d) in %.1f s\n", n, k, W, now_seconds() - t0);
    free(items); free(scores); free(gen_lp); free(group); free(prompts); free(plens);
    trie_free(&trie);
}

void dpo_pairs_reference(Model *m, const RecData *d, DpoPairs *p, int bs) {
    if (m->lora) lora_set_train(m, 0, 0);
    // this rank's micro-batches, then every rank gets all reference log-probs
    const Dist *dist = dist_world();
    int mlo, mhi;
    dist_share(dist, (p->n + bs - 1) / bs, &mlo, &mhi);
    const int lo = mlo * bs < p->n ? mlo * bs : p->n, hi = mhi * bs < p->n ? mhi * bs : p->n;
    const double t0 = now_seconds();
    double t_last = t0;
    for (int a = lo; a < hi; a += bs) {
        const int b = a + bs < hi ? a + bs : hi;
        Batch c, r;
        pairs_batch(d, p, a, b, 0, &c);
        pairs_batch(d, p, a, b, 1, &r);
        dpo_pair_logprobs(m, &c, &r, p->ref_c + a, p->ref_r + a);
        batch_free(&c); batch_free(&r);
        progress_line("dpo reference", b - lo, hi - lo, "pairs", t0, &t_last);
    }
    dist_gather(dist, p->ref_c, sizeof(double), lo, hi, p->n);
    dist_gather(dist, p->ref_r, sizeof(double), lo, hi, p->n);
}

double dpo_pairs_step(Model *m, AdamW *opt, const RecData *d, const DpoPairs *p, int a0, int a1, int bs,
                      uint64_t micro0, double beta, float lr, DpoStats *s, double *gnorm) {
    const int n_step = a1 - a0;
    double pw[bs];
    memset(s, 0, sizeof *s);
    model_zero_grad(m);
    // this rank's micro-batches of the step; statistics and gradients are summed over ranks
    const Dist *dist = dist_world();
    int mlo, mhi;
    dist_share(dist, (n_step + bs - 1) / bs, &mlo, &mhi);
    for (int mb = mlo, a = a0 + mlo * bs; mb < mhi; a += bs, mb++) {
        const int b = a + bs < a1 ? a + bs : a1, nb = b - a;
        // the step's loss = the mean over its pairs (of pair_w * loss with SPDPO)
        for (int i = 0; i < nb; i++) pw[i] = (double)nb / n_step * (p->pair_w ? p->pair_w[a + i] : 1.0);
        Batch c, r;
        pairs_batch(d, p, a, b, 0, &c);
        pairs_batch(d, p, a, b, 1, &r);
        if (m->lora) lora_set_train(m, 1, micro0 + (uint64_t)mb);
        DpoStats ms;
        s->loss += dpo_step(m, &c, &r, p->ref_c + a, p->ref_r + a, pw, beta, &ms);
        const double f = (double)nb / n_step;
        s->rewards_chosen += f * ms.rewards_chosen;
        s->rewards_rejected += f * ms.rewards_rejected;
        s->rewards_margins += f * ms.rewards_margins;
        s->rewards_accuracies += f * ms.rewards_accuracies;
        s->logps_chosen += f * ms.logps_chosen;
        s->logps_rejected += f * ms.logps_rejected;
        batch_free(&c); batch_free(&r);
    }
    double sums[7] = {s->loss, s->rewards_chosen, s->rewards_rejected, s->rewards_margins, s->rewards_accuracies,
                      s->logps_chosen, s->logps_rejected};
    dist_sum_host(dist, sums, 7);
    s->loss = sums[0]; s->rewards_chosen = sums[1]; s->rewards_rejected = sums[2]; s->rewards_margins = sums[3];
    s->rewards_accuracies = sums[4]; s->logps_chosen = sums[5]; s->logps_rejected = sums[6];
    s->n_pairs = n_step;
    *gnorm = adamw_step(opt, m, lr);
    return s->loss;
}

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
        int *chosen = xmalloc((size_t)n * sizeof(int));
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
    const Backend *be = backend_select(cfg->run.device);
    set_threads(cfg->run.threads);
    if (cfg->data.train[0]) fail("[train] method = dpo needs a prepared dataset ([data] dataset), not a token file ([data] train)");
    const LoraConfig lc = train_lora_config(cfg);
    char ckpt_path[4096], pairs_path[4096];
    train_prepare_run_dir(cfg->run.out_dir, resume, ckpt_path, sizeof ckpt_path);
    snprintf(pairs_path, sizeof pairs_path, "%s/pairs.h5", cfg->run.out_dir);
    if (resume && !file_exists(pairs_path)) fail("--resume: no pairs at %s", pairs_path);
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
    const int bs = cfg->train.batch_size, ga = cfg->train.grad_accum;

    // pairs and the reference pass (fresh run), or the stored ones (resume)
    DpoPairs p;
    if (resume) {
        dpo_pairs_load(&p, pairs_path, cfg->dpo.negatives);
        if (spdpo != (p.pair_w != NULL))
            fail("%s was made with dpo.weighting = %s; resume with the run's own config.ini", pairs_path, spdpo ? "none" : "spdpo");
    } else {
        pairs_sample(&p, &d, cfg, &model);   // self negatives: the starting policy's own, adapters included
        int maxlen = 0, maxitem = 0;
        for (int i = 0; i < p.n; i++) {
            const int r = p.row[i], it = p.rejected[i];
            const int lr = sp->prompt_len[r] + d.item_tok_offsets[it + 1] - d.item_tok_offsets[it];
            if (sp->lengths[r] > maxlen) maxlen = sp->lengths[r];
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
        dpo_pairs_save(&p, pairs_path, cfg->dpo.negatives);
    }
    const int n_micro = (p.n + bs - 1) / bs;
    const int steps_per_epoch = (n_micro + ga - 1) / ga;
    const int total = cfg->train.max_steps > 0 ? cfg->train.max_steps : cfg->train.epochs * steps_per_epoch;
    const int log_every = cfg->dpo.log_every > 0 ? cfg->dpo.log_every : cfg->train.log_every;
    if (st.step >= total) {
        printf("dpo: checkpoint is at step %ld of %d: nothing to do\n", st.step, total);
        goto done;
    }
    train_write_config(cfg);
    FILE *log = train_open_log(cfg, "train_log.jsonl", resume);
    printf("dpo: %s:/train | %d pairs, negatives %s%s | beta %g | %zu parameters | %d steps of %d pairs (%d x %d) | device %s\n",
           cfg->data.dataset, p.n, cfg->dpo.negatives, spdpo ? " (spdpo weights)" : "", (double)cfg->dpo.beta, model.numel, total, bs * ga, bs, ga, be->name);
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
        const float lr = lr_at((int)st.step, total, cfg->train.warmup_steps, cfg->train.lr, cfg->train.min_lr,
                               cfg->train.schedule);
        DpoStats s;
        double gnorm;
        dpo_pairs_step(&model, &opt, &d, &p, a0, a1, bs, (uint64_t)st.step * (uint64_t)ga, cfg->dpo.beta, lr, &s, &gnorm);
        st.step++;
        st.epoch = (st.step) / steps_per_epoch;
        st.last_loss = s.loss;
        fprintf(log, "{\"step\": %ld, \"loss\": %.17g, \"rewards/chosen\": %.17g, \"rewards/rejected\": %.17g, "
                "\"rewards/margins\": %.17g, \"rewards/accuracies\": %.17g, \"logps/chosen\": %.17g, \"logps/rejected\": %.17g, "
                "\"lr\": %.9g, \"grad_norm\": %.17g, \"pairs\": %d}\n", st.step, s.loss, s.rewards_chosen, s.rewards_rejected,
                s.rewards_margins, s.rewards_accuracies, s.logps_chosen, s.logps_rejected, lr, gnorm, n_step);
        win.loss += s.loss; win.rewards_chosen += s.rewards_chosen; win.rewards_rejected += s.rewards_rejected;
        win.rewards_margins += s.rewards_margins; win.rewards_accuracies += s.rewards_accuracies;
        win_steps++;
        const int last = st.step == total || st.step == stop_at;
        if (st.step % log_every == 0 || last || st.step == step0 + 1) {
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
        if (last || (cfg->train.ckpt_every > 0 && st.step % cfg->train.ckpt_every == 0)) {
            fflush(log);
            checkpoint_save(ckpt_path, &model, &opt, &st);
        }
        if (st.step == stop_at) { printf("dpo: stopped at step %d as asked (--stop-at)\n", stop_at); break; }
    }
    fclose(log);
    if (model.lora) lora_set_train(&model, 0, 0);
    printf("dpo: checkpoint %s (step %ld, loss %.4f)\n", ckpt_path, st.step, st.last_loss);
done:
    dpo_pairs_free(&p);
    recdata_free(&d);
    adamw_free(&opt, &model);
    model_free(&model);
}
