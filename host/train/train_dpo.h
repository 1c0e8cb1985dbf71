// The DPO trainer behind `sprec train` with [train] method = dpo (DPO-RN and
// friends, SPREC.md section 2; design in docs/training.md).
#ifndef SPREC_TRAIN_DPO_H
#define SPREC_TRAIN_DPO_H

#include "io/config.h"

// Builds the pairs of [dpo] (train rows of [data] dataset, chosen = the row's
// completion, rejected by [dpo] negatives), computes the reference log-probs
// once with the starting model, writes them to run.out_dir/pairs.h5, then
// trains with the sigmoid DPO loss. Writes run.out_dir/{config.ini,
// pairs.h5, train_log.jsonl, checkpoint.h5}. resume: continue from
// run.out_dir/checkpoint.h5 with the stored pairs. stop_at > 0: stop (with a
// checkpoint) after that step.
void dpo_train(const Config *cfg, int resume, int stop_at);

#endif
