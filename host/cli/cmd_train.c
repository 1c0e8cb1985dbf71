// sprec train CONFIG.ini [--resume [--accept-changes]] [--stop-at N] [--dry-run]
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "train/train.h"
#include "kernels/errors.h"

int cmd_train(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec train CONFIG.ini [--resume [--accept-changes]] [--stop-at STEP] [--dry-run] [--device cpu|cpu-bf16|cuda] [--section.key=value ...]\n"
               "Supervised fine-tuning on [data] train (a token file) or, when that is empty, on the [sft] split of\n"
               "the prepared dataset [data] dataset (docs/training.md); LoRA with [lora] enabled = true.\n"
               "[train] method = dpo: DPO on pairs of the dataset's train rows ([dpo] keys); also writes pairs.h5.\n"
               "[train] method = sprec: the SPRec self-play loop ([sprec] keys; --stop-at counts iterations).\n"
               "Writes run.out_dir/config.ini (resolved), train_log.jsonl (one line per step) and\n"
               "checkpoint.h5 (every train.ckpt_every steps and at the end).\n"
               "  --resume        continue from run.out_dir/checkpoint.h5 (model, optimizer, data order)\n"
               "  --accept-changes  with --resume: continue even where the settings differ from the run's config.ini\n"
               "                  (listed; config.ini is kept, the new settings go to config-resume-N.ini)\n"
               "  --stop-at STEP  stop after STEP with a checkpoint, as an interrupted run would\n"
               "  --dry-run       train nothing: print one JSON object per stage the command would run (its lr, schedule,\n"
               "                  warm-up, batch, epochs, steps, rows; docs/training.md \"Stages\")\n"
               "Exit status: 0 done, 1 error, 75 stopped by SIGUSR1 (SLURM's --signal) at a checkpoint: --resume\n"
               "continues it exactly (docs/training.md \"Signals\").\n\nconfig keys:\n");
        config_print_help(stdout);
        return 0;
    }
    const char *config = NULL, *device = NULL;
    int resume_flag = 0, accept = 0, dry_run = 0, stop_at = 0;   // stop_at 0: run to the end
    const CliFlag flags[] = {ARG_OPERAND("CONFIG.ini", &config), ARG_SWITCH("--resume", &resume_flag),
                             ARG_SWITCH("--accept-changes", &accept), ARG_INT("--stop-at", &stop_at, 1, 1000000000),
                             ARG_SWITCH("--dry-run", &dry_run), ARG_STR("--device", &device), ARG_END};
    Config cfg;
    cli_load_config(&cfg, "train", argc, argv, flags);
    if (accept && !resume_flag) fail("sprec train: --accept-changes goes with --resume");
    const int resume = resume_flag ? accept ? TRAIN_RESUME_ACCEPT : TRAIN_RESUME : 0;
    if (dry_run) train_dry_run(&cfg);
    else if (strcmp(cfg.train.method, "sprec") == 0) sprec_train(&cfg, resume, stop_at);
    else if (strcmp(cfg.train.method, "dpo") == 0) dpo_train(&cfg, resume, stop_at);
    else sft_train(&cfg, resume, stop_at);
    return train_exit_status();
}
