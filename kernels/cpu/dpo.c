// DPO on the CPU backend: the segmented sum of head log-probs into sequence
// log-probs and the loss with its reweighting (contracts in kernels/backend.h,
// formulas in docs/dpo.md). All in double, sequential in index order: this is
// the arithmetic host/train/dpo.c has always used, and the oracle for kernels/cuda/dpo.cu.
#include "../backend.h"
#include "cpu_ops.h"

// seq_lp[S] = per-sequence sums of mask * lp over rows i (any order), in increasing i
void cpu_seq_logprob(double *seq_lp, const float *lp, const float *mask, const int *seq, int n, int S) {
    for (int s = 0; s < S; s++) seq_lp[s] = 0.0;
    for (int i = 0; i < n; i++) seq_lp[seq[i]] += (double)mask[i] * (double)lp[i];
}

void cpu_dpo_loss(double *out, double *w, float *tw, const double *lp, const double *ref,
                  const double *pair_weight, double beta, int n, const int *seq, const float *mask,
                  int n_rows) {
    double loss = 0, rc = 0, rr = 0, acc = 0, lc = 0, lr = 0;
    for (int i = 0; i < n; i++) {
        const double reward_c = beta * (lp[i] - ref[i]), reward_r = beta * (lp[n + i] - ref[n + i]);
        const double z = reward_c - reward_r;          // beta * margin
        const double pw = pair_weight ? pair_weight[i] : 1.0;
        loss -= pw * dpo_log_sigmoid(z);
        // d(-log sigmoid(z))/dz = -sigmoid(-z); dz/dlp_c = beta, dz/dlp_r = -beta
        const double g = -beta * dpo_sigmoid(-z) * pw / n;
        w[i] = g;
        w[n + i] = -g;
        rc += reward_c; rr += reward_r; acc += reward_c > reward_r;
        lc += lp[i]; lr += lp[n + i];
    }
    out[DPO_OUT_LOSS] = loss / n;
    out[DPO_OUT_REWARDS_CHOSEN] = rc / n;
    out[DPO_OUT_REWARDS_REJECTED] = rr / n;
    out[DPO_OUT_REWARDS_MARGINS] = (rc - rr) / n;
    out[DPO_OUT_REWARDS_ACCURACIES] = acc / n;
    out[DPO_OUT_LOGPS_CHOSEN] = lc / n;
    out[DPO_OUT_LOGPS_REJECTED] = lr / n;
    // dL/dtheta = sum_seq w_seq * sum_t mask_t * dlogprob_t/dtheta, and logprob_bwd
    // takes the gradient of -sum_r tw_r * logprob_r: tw_r = -w_seq * mask_r
    for (int r = 0; r < n_rows; r++) tw[r] = (float)(-w[seq[r]] * (double)mask[r]);
}
