// The DPO objective (sigmoid loss, Rafailov et al. 2023) with precomputed
// reference log-probs and optional SPDPO pair weights (method.md sections 2-3;
// formulas and conventions in docs/dpo.md).
//
//   lp      = SUM over completion tokens of mask * log p(token | prefix)
//   margin  = (lp_c - ref_c) - (lp_r - ref_r)
//   loss    = (1/n) * sum_i pw_i * -log sigmoid(beta * margin_i)     (pw = 1 when NULL)
//
// The reference log-probs come from one forward-only pass of the frozen
// reference model before the DPO epoch (dpo_pair_logprobs), so no second model
// is held in memory during training.
#ifndef SPREC_DPO_H
#define SPREC_DPO_H

#include "model/model.h"

// What TRL's DPOTrainer logs, over the pairs of one call (all plain means
// over pairs, unweighted, except loss which is the weighted objective).
typedef struct {
    double loss;                 // the objective above
    double rewards_chosen;       // mean beta * (lp_c - ref_c)
    double rewards_rejected;     // mean beta * (lp_r - ref_r)
    double rewards_margins;      // mean of chosen - rejected reward
    double rewards_accuracies;   // fraction of pairs with chosen reward > rejected reward (strict)
    double logps_chosen;         // mean lp_c (policy)
    double logps_rejected;       // mean lp_r (policy)
    int n_pairs;
} DpoStats;

// dpo_log_sigmoid(x) and dpo_sigmoid(x), the stable forms every backend uses,
// are in kernels/backend.h (included through model.h).

// Forward only: seq_lp[b] = sum_t mask[b,t] * log p(tokens[b,t] | tokens[b,<t])
// over the scored positions (1 <= t < lengths[b], mask != 0), accumulated in
// double. Clobbers the model's activations (a later model_backward would see
// this batch).
void dpo_sequence_logprobs(Model *m, const Batch *batch, double *seq_lp);

// The rows of chosen (n_pairs rows) followed by the rows of rejected (n_pairs
// rows) as one right-padded batch of T = max(chosen->T, rejected->T); the layout
// dpo_step runs. Free with batch_free (dataset.h).
void dpo_concat_pairs(const Batch *chosen, const Batch *rejected, Batch *out);

// Sequence log-probs of both sides of the pairs in exactly the batch layout
// dpo_step uses (one concatenated forward), so a reference pass with the policy
// itself reproduces dpo_step's own log-probs bit for bit. This is the
// reference pass: call it with the frozen reference model before the epoch.
void dpo_pair_logprobs(Model *m, const Batch *chosen, const Batch *rejected, double *lp_c, double *lp_r);

// Loss, statistics and the per-sequence gradient weights
//   w_c[i] = dL/d lp_c[i] = -beta * sigmoid(-beta * margin_i) * pw_i / n
//   w_r[i] = dL/d lp_r[i] = -w_c[i]
// pair_weight NULL means 1 for every pair. stats, w_c, w_r may be NULL.
// Returns the loss.
double dpo_loss_and_weights(int n_pairs, const double *lp_c, const double *lp_r, const double *ref_c,
                            const double *ref_r, const double *pair_weight, double beta, DpoStats *stats,
                            double *w_c, double *w_r);

// SPDPO pair weights (dpo.weighting = spdpo): pairs come in groups of
// consecutive pairs sharing a prompt (group_size[g] pairs each, summing to
// n_pairs); gen_lp[i] is the log-probability pi_t(y_i | x) under the model
// that generated negative y_i. Within a group:
//   pw_i = group_size * exp(gen_lp_i) / sum_{j in group} exp(gen_lp_j)
// i.e. the normalised sequence probability, scaled so a group's weights sum to
// its size: the mean over pairs of pw * loss is then the mean over prompts of
// sum_y pi_t(y|x) * loss(y), the estimator of method.md section 3. A group of one
// gets weight 1 (plain DPO). Returns the number of pairs covered (checks it).
int dpo_spdpo_weights(int n_groups, const int *group_size, const double *gen_lp, double *pw);

// One DPO step's gradient: forwards chosen and rejected rows as one batch
// (policy), computes the loss against ref_c/ref_r, and runs model_backward with
// per-token weights -w_seq * mask so that m->grads gains dL/dtheta. The caller
// zeroes m->grads before and steps the optimizer after (several calls
// accumulate: fold 1/G for G micro-batches into pair_weight). chosen and
// rejected hold n_pairs = chosen->B = rejected->B rows each. Returns the loss.
double dpo_step(Model *m, const Batch *chosen, const Batch *rejected, const double *ref_c, const double *ref_r,
                const double *pair_weight, double beta, DpoStats *stats);

#endif
