// build/sprec: one binary, one subcommand per job.
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "base/dist/dist.h"
#include "kernels/errors.h"

static const struct { const char *name; int (*run)(int, char **); const char *help; } commands[] = {
    {"init",    cmd_init,    "CONFIG.ini -o CKPT.h5      a randomly initialised model from [model]"},
    {"train",   cmd_train,   "CONFIG.ini [--resume]      supervised fine-tuning on a tokenized dataset"},
    {"dump",    cmd_dump,    "--model CKPT --batch B -o OUT   logits, log-probs, loss and every gradient"},
    {"info",    cmd_info,    "CKPT.h5                    summary of a checkpoint"},
    {"toydata", cmd_toydata, "-o FILE.h5 [...]           a built-in memorisable dataset (reverse the prompt)"},
    {"import",  cmd_import,  "SRC -o CKPT.h5             a Hugging Face folder or .gguf file as a checkpoint"},
    {"export",  cmd_export,  "CKPT.h5 -o DIR             a folder Hugging Face transformers loads"},
    {"bench",   cmd_bench,   "[--mode sft|dpo|logprob|generate] throughput, JSON lines"},
    {"generate", cmd_generate, "--model CKPT --prompt TEXT  text generation (greedy, sampling, beams)"},
    {"prepare", cmd_prepare, "CONFIG.ini [-o OUT.h5]     a recommendation dataset (goodreads, movielens, synthetic)"},
    {"eval",    cmd_eval,    "CONFIG.ini [--model CKPT]  top-K recommendations and metrics on a split"},
    {"tokenize", cmd_tokenize, "--model CKPT|tokenizer.json [--decode]  text lines to token ids (and back)"},
    {"embed",   cmd_embed,   "--model ENC.h5 [--ids]      text lines to sentence-encoder embeddings (JSON)"},
};

static void usage(FILE *f) {
    fprintf(f, "sprec: a C training engine for LLM-based recommenders (SFT, DPO, SPRec)\n\n"
               "usage: sprec COMMAND [ARGS]   (sprec COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\ncommon: --device cpu|cpu-checked|cpu-bf16|cuda (or run.device), --section.key=value overrides any config key\n"
               "ranks: under mpirun / srun, train and eval split their work over the ranks (docs/cluster.md)\n"
               "docs: docs/ (config keys: docs/config.md, formats: docs/formats.md, checkpoints: docs/checkpoint.md)\n");
}

// Under mpirun/srun, train and eval split their work over the ranks
// (base/dist.h), and so does bench (its modes that do not split send the other
// ranks home themselves); every other command runs on rank 0 alone.
static int splits_work(const char *name) {
    return strcmp(name, "train") == 0 || strcmp(name, "eval") == 0 || strcmp(name, "bench") == 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return dist_start(splits_work(argv[1])) ? commands[i].run(argc - 1, argv + 1) : 0;
    fprintf(stderr, "sprec: error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
