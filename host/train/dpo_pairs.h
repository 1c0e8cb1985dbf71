// DPO pairs over the train split of a prepared dataset and what is done with
// them: made by the DPO trainer and by every SPRec iteration, each with its
// reference log-probs and pair weights, then trained on step by step.
#ifndef SPREC_DPO_PAIRS_H
#define SPREC_DPO_PAIRS_H

#include "dpo.h"
#include "model/optimizer.h"
#include "rec/recdata.h"
#include "io/config.h"

// DPO pairs over the train split of a prepared dataset, in training order.
typedef struct {
    int n;                   // pairs
    int *row;                // [n] train row (prompt, chosen tokens)
    int *chosen, *rejected;  // [n] catalogue items
    double *ref_c, *ref_r;   // [n] reference log-probs (sums over the completion)
    double *pair_w;          // [n] SPDPO pair weights, or NULL (every pair weighs 1)
    int eos;                 // token appended to both completions (data.completion_eos), -1 = none
} DpoPairs;

void dpo_pairs_alloc(DpoPairs *p, int n);   // eos = -1, pair_w = NULL
void dpo_pairs_free(DpoPairs *p);
// The pairs (with reference log-probs and pair weights) as an HDF5 file,
// written to a temporary name and renamed; negatives = what made them, checked
// on load (a mismatch is a one-line error).
void dpo_pairs_save(const DpoPairs *p, const char *path, const char *negatives);
void dpo_pairs_load(DpoPairs *p, const char *path, const char *negatives);
// rejected[i] = gen's recommendation for row[i]'s prompt: beams = 1, the
// constrained greedy item (where that is chosen[i], the other of a width-2
// beam's two best); beams >= 2, the best item of a constrained beam of that
// width, its next-best when that equals chosen[i]. gen may carry LoRA
// adapters: generation runs them unmerged, without dropout.
void dpo_self_negatives(Model *gen, const RecData *d, DpoPairs *p, int beams);
// dpo.weighting = spdpo: for each of the n prompts (train rows rows[i], chosen
// item chosen[i]) the k best items of gen's constrained beam (width
// max(beams, k + 1)) other than chosen[i] become k consecutive pairs, weighted
// by dpo_spdpo_weights from their generation log-probs (the normalised
// probability pi_t(y|x) within the prompt's group). Allocates p (n * k pairs,
// pair_w set). gen as above.
void dpo_spdpo_negatives(Model *gen, const RecData *d, const int *rows, const int *chosen, int n, int k, int beams,
                         DpoPairs *p);
// data.completion_eos: the EOS id of m's tokenizer (a one-line error when it
// has none); -1 when the key is off.
int dpo_completion_eos(const Model *m, int enabled);
// Pairs per DPO micro-batch for a batch of batch_size: SPDPO with
// [dpo] spdpo_batch = prompts counts prompts, each with its k pairs.
int dpo_pairs_per_micro(const Config *cfg, int batch_size);
// The reference pass: ref_c/ref_r under m (no dropout), in micro-batches of
// bs consecutive pairs, the layout of dpo_pairs_step.
void dpo_pairs_reference(Model *m, const RecData *d, DpoPairs *p, int bs);
// One DPO optimizer step over pairs [a0, a1) in micro-batches of bs (each pair
// weighted so the loss is the mean over the step's pairs); micro0 = global
// index of the first micro-batch (LoRA dropout). *s = the step's statistics,
// *gnorm = the gradient norm. Returns the loss.
double dpo_pairs_step(Model *m, AdamW *opt, const RecData *d, const DpoPairs *p, int a0, int a1, int bs,
                      uint64_t micro0, double beta, float lr, DpoStats *s, double *gnorm);

#endif
