// The SFT trainer behind `sprec train`.
#ifndef SPREC_TRAIN_SFT_H
#define SPREC_TRAIN_SFT_H

#include "io/config.h"
#include "io/dataset.h"
#include "model/optimizer.h"

// Trains per cfg, writing run.out_dir/{config.ini, train_log.jsonl, checkpoint.h5}.
// resume: continue from run.out_dir/checkpoint.h5. stop_at > 0: stop (with a
// checkpoint) after that step, as an interrupted run would.
void sft_train(const Config *cfg, int resume, int stop_at);


// One SFT optimizer step over rows ids[0..n_ids) of data, in micro-batches of
// batch_size (the last may be shorter): zero the gradients, forward/backward
// with token weights mask / (the step's mask sum), AdamW at lr. micro0 = the
// global index of the first micro-batch (LoRA dropout masks). Returns the
// loss; *gnorm = the gradient norm, *mask_sum = the scored-token weight (0:
// nothing done); *tokens (may be NULL) += the rows' lengths.
double sft_step(Model *m, AdamW *opt, const Dataset *data, const int *ids, int n_ids, int batch_size,
                uint64_t micro0, float lr, double *gnorm, double *mask_sum, long *tokens);

#endif
