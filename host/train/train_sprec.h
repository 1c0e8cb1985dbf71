// The SPRec self-play loop behind `sprec train` with [train] method = sprec
// (SPREC.md section 2; docs/training.md).
#ifndef SPREC_TRAIN_SPREC_H
#define SPREC_TRAIN_SPREC_H

#include "io/config.h"

// T = [sprec] iterations of: n seeded train prompts, self-generated negatives,
// an SFT epoch on the positives, the reference pass, a DPO epoch, evaluation on
// the test split (a "sprec" line with the iteration in run.out_dir/metrics.jsonl)
// and a checkpoint. resume: continue after the last completed iteration;
// stop_at > 0: stop after that iteration.
void sprec_train(const Config *cfg, int resume, int stop_at);

#endif
