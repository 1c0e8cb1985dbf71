// The three trainers behind `sprec train`, chosen by [train] method (design in
// docs/training.md). Each writes run.out_dir/{config.ini, train_log.jsonl,
// checkpoint.h5}; resume: continue from run.out_dir/checkpoint.h5; stop_at > 0:
// stop (with a checkpoint) after that step (SPRec: that iteration), as an
// interrupted run would.
#ifndef SPREC_TRAIN_H
#define SPREC_TRAIN_H

#include "io/config.h"

// `resume` of the trainers: 0 = a fresh run; TRAIN_RESUME = continue from
// run.out_dir/checkpoint.h5 with the run's settings (a changed one is refused);
// TRAIN_RESUME_ACCEPT = also accept changed settings (--accept-changes).
enum { TRAIN_RESUME = 1, TRAIN_RESUME_ACCEPT = 2 };

// The exit status of a run that SIGUSR1 stopped at a checkpoint (SLURM's
// --signal before a time limit): incomplete, and `--resume` continues it
// exactly (EX_TEMPFAIL of sysexits.h). 0 = done, 1 = an error.
enum { TRAIN_EXIT_RESUMABLE = 75 };
// After a trainer: 0, or TRAIN_EXIT_RESUMABLE when SIGUSR1 stopped it. Then every
// rank stopped at the same point, and the ranks are ended here (base/dist.h
// dist_finish), so that this status ends the job as a status, not as the
// abort a failing rank's exit causes.
int train_exit_status(void);

// method = sft: supervised fine-tuning on a token file or a split of the
// prepared dataset.
void sft_train(const Config *cfg, int resume, int stop_at);

// method = dpo (DPO-RN and friends, method.md section 2): builds the pairs of
// [dpo] (train rows of [data] dataset, chosen = the row's completion, rejected
// by [dpo] negatives), computes the reference log-probs once with the starting
// model, writes them to run.out_dir/pairs.h5, then trains with the sigmoid DPO
// loss. A resumed run continues with the stored pairs.
void dpo_train(const Config *cfg, int resume, int stop_at);

// method = sprec (method.md section 2): T = [sprec] iterations of: n seeded
// train prompts, self-generated negatives, an SFT epoch on the positives, the
// reference pass, a DPO epoch, evaluation on the test split (a "sprec" line
// with the iteration in run.out_dir/metrics.jsonl) and a checkpoint. A resumed
// run continues after the last completed stage.
void sprec_train(const Config *cfg, int resume, int stop_at);

// sprec train --dry-run: prints one JSON object per stage the command would
// run (method sft: sft; dpo: dpo; sprec: sprec.sft and sprec.dpo, per
// iteration) with its effective settings, rows and steps; trains nothing.
void train_dry_run(const Config *cfg);

#endif
