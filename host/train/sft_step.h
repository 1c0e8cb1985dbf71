// One SFT optimizer step, shared by the SFT trainer and the SPRec loop's SFT stage.
#ifndef SPREC_SFT_STEP_H
#define SPREC_SFT_STEP_H

#include "io/dataset.h"
#include "model/optimizer.h"

// One SFT optimizer step over rows ids[0..n_ids) of data, in micro-batches of
// batch_size (the last may be shorter): zero the gradients, forward/backward
// with token weights mask / (the step's mask sum), AdamW at lr. micro0 = the
// global index of the first micro-batch (LoRA dropout masks). Returns the
// loss; *gnorm = the gradient norm, *mask_sum = the scored-token weight (0:
// nothing done); *tokens (may be NULL) += the rows' lengths.
double sft_step(Model *m, AdamW *opt, const Dataset *data, const int *ids, int n_ids, int batch_size,
                uint64_t micro0, float lr, double *gnorm, double *mask_sum, long *tokens);

#endif
