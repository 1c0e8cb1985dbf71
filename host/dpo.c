// The DPO objective: sequence log-probs, the sigmoid loss with its gradient
// weights and TRL's reward statistics, SPDPO pair weights, and the two-pass
// step (one forward over chosen + rejected rows, then one backward with
// per-token weights derived from the whole pair). See docs/dpo.md.
#include <math.h>
#include <string.h>
#include "dpo.h"
#include "dataset.h"
#include "check.h"

double dpo_log_sigmoid(double x) {
    // log sigmoid(x) = -log(1 + exp(-x)) = min(x, 0) - log1p(exp(-|x|))
    return (x < 0 ? x : 0.0) - log1p(exp(-fabs(x)));
}

double dpo_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

void dpo_sequence_logprobs(Model *m, const Batch *batch, double *seq_lp) {
    const int n = model_forward(m, batch, 0);
    for (int b = 0; b < batch->B; b++) seq_lp[b] = 0.0;
    for (int i = 0; i < n; i++) {
        const int p = m->head_pos[i];
        seq_lp[p / batch->T] += (double)batch->mask[p] * (double)m->head_lp[i];
    }
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

double dpo_loss_and_weights(int n_pairs, const double *lp_c, const double *lp_r, const double *ref_c,
                            const double *ref_r, const double *pair_weight, double beta, DpoStats *stats,
                            double *w_c, double *w_r) {
    check(n_pairs > 0, "dpo: no pairs");
    double loss = 0, rc = 0, rr = 0, acc = 0, lc = 0, lr = 0;
    for (int i = 0; i < n_pairs; i++) {
        const double reward_c = beta * (lp_c[i] - ref_c[i]), reward_r = beta * (lp_r[i] - ref_r[i]);
        const double z = reward_c - reward_r;          // beta * margin
        const double pw = pair_weight ? pair_weight[i] : 1.0;
        loss -= pw * dpo_log_sigmoid(z);
        // d(-log sigmoid(z))/dz = -sigmoid(-z); dz/dlp_c = beta, dz/dlp_r = -beta
        const double g = -beta * dpo_sigmoid(-z) * pw / n_pairs;
        if (w_c) w_c[i] = g;
        if (w_r) w_r[i] = -g;
        rc += reward_c; rr += reward_r; acc += reward_c > reward_r;
        lc += lp_c[i]; lr += lp_r[i];
    }
    loss /= n_pairs;
    if (stats) {
        stats->loss = loss;
        stats->rewards_chosen = rc / n_pairs;
        stats->rewards_rejected = rr / n_pairs;
        stats->rewards_margins = (rc - rr) / n_pairs;
        stats->rewards_accuracies = acc / n_pairs;
        stats->logps_chosen = lc / n_pairs;
        stats->logps_rejected = lr / n_pairs;
        stats->n_pairs = n_pairs;
    }
    return loss;
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
    const int n = chosen->B;
    Batch both;
    dpo_concat_pairs(chosen, rejected, &both);
    // pass 1: policy log-probs of all 2n sequences (activations kept for pass 2)
    double *lp = xmalloc((size_t)2 * n * sizeof(double)), *w = xmalloc((size_t)2 * n * sizeof(double));
    dpo_sequence_logprobs(m, &both, lp);
    const double loss = dpo_loss_and_weights(n, lp, lp + n, ref_c, ref_r, pair_weight, beta, stats, w, w + n);
    // pass 2: model_backward adds d(-sum_t tw_t * lp_t); with lp_seq = sum_t mask_t * lp_t
    // and dL/dlp_seq = w_seq, the token weight is tw_t = -w_seq * mask_t
    const int nh = m->n_head;
    float *tw = xmalloc((size_t)(nh > 0 ? nh : 1) * sizeof(float));
    for (int i = 0; i < nh; i++) {
        const int p = m->head_pos[i];
        tw[i] = (float)(-w[p / both.T] * (double)both.mask[p]);
    }
    model_backward(m, tw);
    free(tw); free(w); free(lp);
    batch_free(&both);
    return loss;
}
