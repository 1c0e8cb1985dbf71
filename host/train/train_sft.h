// The SFT trainer behind `sprec train`.
#ifndef SPREC_TRAIN_SFT_H
#define SPREC_TRAIN_SFT_H

#include "io/config.h"

// Trains per cfg, writing run.out_dir/{config.ini, train_log.jsonl, checkpoint.h5}.
// resume: continue from run.out_dir/checkpoint.h5. stop_at > 0: stop (with a
// checkpoint) after that step, as an interrupted run would.
void sft_train(const Config *cfg, int resume, int stop_at);

#endif
