// The DPO objective: sequence log-probs, the sigmoid loss with its gradient
// weights and TRL's reward statistics, SPDPO pair weights, and the two-pass
// step (one forward over chosen + rejected rows, then one backward with
// per-token weights derived from the whole pair). See docs/dpo.md.
#include <math.h>
#include <string.h>
#include "dpo.h"
#include "io/dataset.h"
#include "kernels/errors.h"

// Device arrays of one DPO call, carved from one allocation: the head rows'
// sequence index and mask (from the batch), the sequence log-probs, and for the
// loss the reference log-probs, pair weights, gradient weights and statistics.
typedef struct {
    void *base;
    int *seq; float *mask;       // [n_head] each
    double *lp, *ref, *pw, *w;   // [S] [S] [S/2] [S]  (S = rows of the batch = 2n for pairs)
    double *out;                 // [DPO_OUT_COUNT]
} DpoDev;

static size_t carve(size_t *at, size_t bytes) {
    const size_t off = *at;
    *at += (bytes + 63) / 64 * 64;
    return off;
}

static void dpo_dev_alloc(DpoDev *d, const Backend *be, int n_head, int S) {
    const size_t nh = (size_t)(n_head > 0 ? n_head : 1);
    size_t at = 0, o_seq = carve(&at, nh * sizeof(int)), o_mask = carve(&at, nh * sizeof(float)),
           o_lp = carve(&at, (size_t)S * sizeof(double)), o_ref = carve(&at, (size_t)S * sizeof(double)),
           o_pw = carve(&at, (size_t)S * sizeof(double)), o_w = carve(&at, (size_t)S * sizeof(double)),
           o_out = carve(&at, DPO_OUT_COUNT * sizeof(double));
    char *base = be->alloc(at);
    *d = (DpoDev){.base = base, .seq = (int *)(base + o_seq), .mask = (float *)(base + o_mask),
                  .lp = (double *)(base + o_lp), .ref = (double *)(base + o_ref), .pw = (double *)(base + o_pw),
                  .w = (double *)(base + o_w), .out = (double *)(base + o_out)};
}

// Forward of batch, then d->lp[b] = sum_t mask * logprob of every row on the
// device (be->seq_logprob), the head rows' sequence index and mask left in d
// for the loss. Returns the number of head rows.
static int forward_sequence_logprobs(Model *m, const Batch *batch, DpoDev *d) {
    const Backend *be = m->be;
    const int n = model_forward(m, batch, 0);
    dpo_dev_alloc(d, be, n, batch->B);
    int *seq = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    float *mask = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int i = 0; i < n; i++) {
        seq[i] = m->head_pos[i] / batch->T;
        mask[i] = batch->mask[m->head_pos[i]];
    }
    if (n > 0) {
        be->upload(d->seq, seq, (size_t)n * sizeof(int));
        be->upload(d->mask, mask, (size_t)n * sizeof(float));
    }
    free(seq); free(mask);
    be->seq_logprob(d->lp, m->acts.head_lp, d->mask, d->seq, n, batch->B);
    return n;
}

void dpo_sequence_logprobs(Model *m, const Batch *batch, double *seq_lp) {
    DpoDev d;
    forward_sequence_logprobs(m, batch, &d);
    m->be->download(seq_lp, d.lp, (size_t)batch->B * sizeof(double));
    m->be->free(d.base);
}

// copies src's rows to out rows row0.., checking each has completion tokens
static void copy_rows(Batch *out, int row0, const Batch *src) {
    for (int b = 0; b < src->B; b++) {
        const int len = src->lengths[b];
        if (len < 0 || len > src->T) fail("dpo: lengths[%d] = %d outside [0, %d]", b, len, src->T);
        int *tok = out->tokens + (size_t)(row0 + b) * out->T;
        float *mask = out->mask + (size_t)(row0 + b) * out->T;
        memcpy(tok, src->tokens + (size_t)b * src->T, (size_t)len * sizeof(int));
        memcpy(mask, src->mask + (size_t)b * src->T, (size_t)len * sizeof(float));
        out->lengths[row0 + b] = len;
        double msum = 0;
        for (int t = 1; t < len; t++) msum += mask[t];
        if (!(msum > 0))
            fail("dpo: pair %d: the %s sequence has no completion tokens (mask sums to %g over its %d tokens)",
                 b, row0 ? "rejected" : "chosen", msum, len);
    }
}

void dpo_concat_pairs(const Batch *chosen, const Batch *rejected, Batch *out) {
    check(chosen->B == rejected->B, "dpo: %d chosen rows but %d rejected rows", chosen->B, rejected->B);
    const int n = chosen->B;
    int T = 1;   // trimmed to the longest row of either side
    for (int b = 0; b < n; b++) {
        if (chosen->lengths[b] > T) T = chosen->lengths[b];
        if (rejected->lengths[b] > T) T = rejected->lengths[b];
    }
    out->B = 2 * n; out->T = T;
    out->tokens = xcalloc((size_t)2 * n * T, sizeof(int));
    out->mask = xcalloc((size_t)2 * n * T, sizeof(float));
    out->lengths = xcalloc((size_t)2 * n, sizeof(int));
    copy_rows(out, 0, chosen);
    copy_rows(out, n, rejected);
}

void dpo_pair_logprobs(Model *m, const Batch *chosen, const Batch *rejected, double *lp_c, double *lp_r) {
    Batch both;
    dpo_concat_pairs(chosen, rejected, &both);
    const int n = chosen->B;
    double *lp = xmalloc((size_t)2 * n * sizeof(double));
    dpo_sequence_logprobs(m, &both, lp);
    memcpy(lp_c, lp, (size_t)n * sizeof(double));
    memcpy(lp_r, lp + n, (size_t)n * sizeof(double));
    free(lp);
    batch_free(&both);
}

static void stats_from_out(DpoStats *stats, const double *out, int n_pairs) {
    stats->loss = out[DPO_OUT_LOSS];
    stats->rewards_chosen = out[DPO_OUT_REWARDS_CHOSEN];
    stats->rewards_rejected = out[DPO_OUT_REWARDS_REJECTED];
    stats->rewards_margins = out[DPO_OUT_REWARDS_MARGINS];
    stats->rewards_accuracies = out[DPO_OUT_REWARDS_ACCURACIES];
    stats->logps_chosen = out[DPO_OUT_LOGPS_CHOSEN];
    stats->logps_rejected = out[DPO_OUT_LOGPS_REJECTED];
    stats->n_pairs = n_pairs;
}

// The host entry of the loss: the CPU backend's dpo_loss on host arrays (the
// one implementation of the arithmetic; dpo_step runs the model's backend's).
double dpo_loss_and_weights(int n_pairs, const double *lp_c, const double *lp_r, const double *ref_c,
                            const double *ref_r, const double *pair_weight, double beta, DpoStats *stats,
                            double *w_c, double *w_r) {
    check(n_pairs > 0, "dpo: no pairs");
    const size_t n = (size_t)n_pairs;
    double *lp = xmalloc(2 * n * sizeof(double)), *ref = xmalloc(2 * n * sizeof(double)),
           *w = xmalloc(2 * n * sizeof(double)), out[DPO_OUT_COUNT];
    memcpy(lp, lp_c, n * sizeof(double)); memcpy(lp + n, lp_r, n * sizeof(double));
    memcpy(ref, ref_c, n * sizeof(double)); memcpy(ref + n, ref_r, n * sizeof(double));
    backend_cpu()->dpo_loss(out, w, NULL, lp, ref, pair_weight, beta, n_pairs, NULL, NULL, 0);
    if (w_c) memcpy(w_c, w, n * sizeof(double));
    if (w_r) memcpy(w_r, w + n, n * sizeof(double));
    if (stats) stats_from_out(stats, out, n_pairs);
    free(lp); free(ref); free(w);
    return out[DPO_OUT_LOSS];
}

int dpo_spdpo_weights(int n_groups, const int *group_size, const double *gen_lp, double *pw) {
    int i0 = 0;
    for (int g = 0; g < n_groups; g++) {
        const int k = group_size[g];
        check(k > 0, "dpo: SPDPO group %d has %d pairs", g, k);
        double mx = -INFINITY;
        for (int i = i0; i < i0 + k; i++) {
            if (!(gen_lp[i] <= 0) && !isinf(gen_lp[i]))   // NaN or a positive log-probability
                fail("dpo: SPDPO generation log-prob %g of pair %d is not a log-probability", gen_lp[i], i);
            if (gen_lp[i] > mx) mx = gen_lp[i];
        }
        if (isinf(mx)) fail("dpo: SPDPO group %d: every negative has probability 0", g);
        double sum = 0;
        for (int i = i0; i < i0 + k; i++) sum += exp(gen_lp[i] - mx);
        for (int i = i0; i < i0 + k; i++) pw[i] = k * exp(gen_lp[i] - mx) / sum;
        i0 += k;
    }
    return i0;
}

double dpo_step(Model *m, const Batch *chosen, const Batch *rejected, const double *ref_c, const double *ref_r,
                const double *pair_weight, double beta, DpoStats *stats) {
    const Backend *be = m->be;
    const int n = chosen->B;
    check(n > 0, "dpo: no pairs");
    Batch both;
    dpo_concat_pairs(chosen, rejected, &both);
    // pass 1: policy log-probs of all 2n sequences, on the device (activations kept for pass 2)
    DpoDev d;
    const int nh = forward_sequence_logprobs(m, &both, &d);
    be->upload(d.ref, ref_c, (size_t)n * sizeof(double));
    be->upload(d.ref + n, ref_r, (size_t)n * sizeof(double));
    if (pair_weight) be->upload(d.pw, pair_weight, (size_t)n * sizeof(double));
    // loss, statistics, sequence weights and, per head row, the token weight
    // tw = -w_seq * mask of pass 2 (model_backward adds d(-sum_t tw_t * lp_t)),
    // written straight into the backward's weight buffer
    be->dpo_loss(d.out, d.w, m->acts.head_w, d.lp, d.ref, pair_weight ? d.pw : NULL, beta, n, d.seq, d.mask, nh);
    double out[DPO_OUT_COUNT];
    be->download(out, d.out, sizeof out);
    if (stats) stats_from_out(stats, out, n);
    // pass 2
    model_backward(m, NULL);
    be->free(d.base);
    batch_free(&both);
    return out[DPO_OUT_LOSS];
}
