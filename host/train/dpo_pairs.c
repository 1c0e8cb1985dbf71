// The DPO pairs (dpo_pairs.h): storage, self-generated negatives, the
// reference pass and the step, shared by the DPO trainer and the SPRec loop.
#include <errno.h>
#include <string.h>
#include "dpo_pairs.h"
#include "base/dist/dist.h"
#include "io/dataset.h"
#include "model/lora.h"
#include "rec/recommend.h"
#include "rec/trie.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "base/h5io.h"
#include "base/atomic_write.h"
#include "base/fault.h"
#include "tokenizer/tokenizer.h"

void dpo_pairs_alloc(DpoPairs *p, int n) {
    p->n = n;
    p->row = xmalloc((size_t)n * sizeof(int));
    p->chosen = xmalloc((size_t)n * sizeof(int));
    p->rejected = xmalloc((size_t)n * sizeof(int));
    p->ref_c = xmalloc((size_t)n * sizeof(double));
    p->ref_r = xmalloc((size_t)n * sizeof(double));
    p->pair_w = NULL;
    p->eos = -1;
}

void dpo_pairs_free(DpoPairs *p) {
    free(p->row); free(p->chosen); free(p->rejected); free(p->ref_c); free(p->ref_r); free(p->pair_w);
}


// the reference log-probs are kept exactly, as float64
static void read_f64(hid_t f, const char *path, const char *name, long n, double *x) {
    long dims[1] = {n};
    double *v = h5_read_f64(f, path, name, 1, dims);
    memcpy(x, v, (size_t)n * sizeof(double));
    free(v);
}

void dpo_pairs_save(const DpoPairs *p, const char *path, const char *negatives) {
    AtomicFile *a = atomic_begin(path, NULL);
    hid_t f = h5_create_checksummed(a->tmp);
    long d[1] = {p->n};
    h5_write_i32(f, "row", 1, d, p->row);
    h5_write_i32(f, "chosen", 1, d, p->chosen);
    h5_write_i32(f, "rejected", 1, d, p->rejected);
    h5_write_f64(f, "ref_chosen", 1, d, p->ref_c);
    static long saves;   // this process's, for SPREC_FAULT=kill@pairs.write:N (docs/testing.md)
    fault_point("pairs.write", ++saves);
    h5_write_f64(f, "ref_rejected", 1, d, p->ref_r);
    if (p->pair_w) h5_write_f64(f, "pair_weight", 1, d, p->pair_w);
    h5_attr_write_str(f, "negatives", negatives);
    h5_close(f);
    atomic_commit(a);
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
    const int eos = p->eos >= 0;   // one more completion token on either side
    for (int i = 0; i < B; i++) {
        int r = p->row[a + i], it = p->rejected[a + i];
        len[i] = eos + (side == 0 ? sp->lengths[r] : sp->prompt_len[r] + d->item_tok_offsets[it + 1] - d->item_tok_offsets[it]);
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
        const int n = len[i] - eos;
        if (side == 0) {
            memcpy(tk, sp->tokens + (size_t)r * sp->T, (size_t)n * sizeof(int));
            memcpy(mk, sp->mask + (size_t)r * sp->T, (size_t)n * sizeof(float));
        } else {
            const int it = p->rejected[a + i];
            memcpy(tk, sp->tokens + (size_t)r * sp->T, (size_t)pl * sizeof(int));
            memcpy(tk + pl, d->item_tok + d->item_tok_offsets[it], (size_t)(n - pl) * sizeof(int));
            for (int t = pl; t < n; t++) mk[t] = 1;
        }
        if (eos) { tk[n] = p->eos; mk[n] = 1; }
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

// beams = 1: the constrained greedy item of each prompt (recommend_topk with
// K = W = 1: the greedy path, which a wider beam's best may not be); the
// prompts whose greedy item is the chosen one get the other of a width-2
// beam's two best instead (recommend_next_best on those prompts only).
static void greedy_negatives(Model *gen, const Trie *trie, const int **prompts, const int *plens, int n,
                             const int *chosen, int *out, float *scores) {
    recommend_topk(gen, trie, prompts, plens, n, 1, 1, out, scores);
    int *hit = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int)), nh = 0;
    for (int i = 0; i < n; i++) if (out[i] == chosen[i]) hit[nh++] = i;
    if (nh > 0) {
        const int **hp = xmalloc((size_t)nh * sizeof(int *));
        int *hl = xmalloc((size_t)nh * sizeof(int)), *hc = xmalloc((size_t)nh * sizeof(int)),
            *ho = xmalloc((size_t)nh * sizeof(int));
        float *hs = xmalloc((size_t)nh * sizeof(float));
        for (int j = 0; j < nh; j++) { hp[j] = prompts[hit[j]]; hl[j] = plens[hit[j]]; hc[j] = chosen[hit[j]]; }
        recommend_next_best(gen, trie, hp, hl, nh, hc, 2, ho, hs);
        for (int j = 0; j < nh; j++) { out[hit[j]] = ho[j]; scores[hit[j]] = hs[j]; }
        free(hp); free(hl); free(hc); free(ho); free(hs);
    }
    free(hit);
}

void dpo_self_negatives(Model *gen, const RecData *d, DpoPairs *p, int beams) {
    const int n = p->n;
    Trie trie;
    const int **prompts;
    int *plens;
    negatives_setup(d, p->row, n, &trie, &prompts, &plens);
    float *scores = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    double t0 = now_seconds();
    const Dist *dist = dist_world();   // this rank's share of the prompts (by cost), then all ranks get every negative
    int lo, hi;
    recommend_share(&trie, plens, n, beams, &lo, &hi);
    double t_last = t0;
    for (int a = lo; a < hi; a += NEGATIVES_CHUNK) {   // in chunks, for the progress line
        const int b = a + NEGATIVES_CHUNK < hi ? a + NEGATIVES_CHUNK : hi;
        if (beams == 1) greedy_negatives(gen, &trie, prompts + a, plens + a, b - a, p->chosen + a, p->rejected + a, scores + a);
        else recommend_next_best(gen, &trie, prompts + a, plens + a, b - a, p->chosen + a, beams, p->rejected + a, scores + a);
        progress_line("dpo negatives", b - lo, hi - lo, "prompts", t0, &t_last);
    }
    dist_log_balance(dist, "dpo negatives", now_seconds() - t0);
    dist_gather(dist, p->rejected, sizeof(int), lo, hi, n);
    printf("dpo: %d self-generated negatives (%s %d) in %.1f s\n", n, beams == 1 ? "greedy, width" : "beam", beams,
           now_seconds() - t0);
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
    const Dist *dist = dist_world();   // this rank's share of the prompts (by cost), then all ranks get every list
    int lo, hi;
    recommend_share(&trie, plens, n, W, &lo, &hi);
    double t_last = t0;
    for (int a = lo; a < hi; a += NEGATIVES_CHUNK) {   // in chunks, for the progress line
        const int b = a + NEGATIVES_CHUNK < hi ? a + NEGATIVES_CHUNK : hi;
        recommend_topk(gen, &trie, prompts + a, plens + a, b - a, K, W, items + (size_t)a * K, scores + (size_t)a * K);
        progress_line("dpo negatives", b - lo, hi - lo, "prompts", t0, &t_last);
    }
    dist_log_balance(dist, "dpo negatives", now_seconds() - t0);
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

int dpo_completion_eos(const Model *m, int enabled) {
    if (!enabled) return -1;
    if (!m->tokenizer_json) fail("[data] completion_eos = true needs the model's tokenizer, and the model has none");
    Tokenizer *t = tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, m->tokenizer_config_json,
                                       m->tokenizer_config_json_len, "the model's tokenizer");
    const int eos = tokenizer_eos_id(t);
    tokenizer_free(t);
    if (eos < 0 || eos >= m->cfg.vocab_size)
        fail("[data] completion_eos = true: the model's tokenizer has no EOS token inside the vocabulary (%d)", m->cfg.vocab_size);
    return eos;
}

int dpo_pairs_per_micro(const Config *cfg, int batch_size) {
    const int prompts = !strcmp(cfg->dpo.weighting, "spdpo") && !strcmp(cfg->dpo.spdpo_batch, "prompts");
    return prompts ? batch_size * cfg->dpo.spdpo_k : batch_size;
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
        if (mb == mhi - 1) adamw_sum_begin(opt, m);   // the gradients summed as this backward finishes them
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
