// sprec prepare CONFIG.ini [-o OUT.h5] [--section.key=value]: builds the
// recommendation dataset file (docs/recdata.md) from [data] source.
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "rec/prepare/prepare.h"
#include "kernels/errors.h"

int cmd_prepare(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec prepare CONFIG.ini [-o OUT.h5] [--section.key=value ...]\n"
               "Builds a recommendation dataset (docs/recdata.md) from [data] source: goodreads (SPRec JSON files\n"
               "in [data] dir), movielens (ratings.csv + movies.csv in [data] dir) or synthetic (built in).\n"
               "Writes [data] dataset, or OUT.h5 with -o. With [data] tokenizer (a checkpoint, tokenizer.json or\n"
               "a .gguf file) the splits are also tokenized (prompt and completion separately, mask on the\n"
               "completion) and every catalogue title's completion tokens are stored.\n\n"
               "keys ([data] section; all keys: docs/config.md):\n");
        static const char *keys[] = {"source", "dir", "dataset", "tokenizer", "seed", "train_rows", "valid_rows",
                                     "test_rows", "history", "synth_items", "synth_users", "synth_genres",
                                     "synth_zipf", NULL};
        char line[512];
        FILE *mem = fmemopen(NULL, 1 << 16, "w+");
        check(mem != NULL, "fmemopen failed");
        config_print_help(mem);
        rewind(mem);
        while (fgets(line, sizeof line, mem))
            for (int k = 0; keys[k]; k++) {
                char pat[64];
                snprintf(pat, sizeof pat, "[data] %s = ", keys[k]);
                if (strstr(line, pat)) fputs(line, stdout);
            }
        fclose(mem);
        return 0;
    }
    const char *config = NULL, *out = NULL;
    const CliFlag flags[] = {ARG_OPERAND("CONFIG.ini", &config), ARG_PATH("-o OUT.h5", &out, CLI_OPTIONAL), ARG_END};
    Config cfg;
    cli_load_config(&cfg, "prepare", argc, argv, flags);
    if (!out) out = cfg.data.dataset;
    if (!*out) fail("sprec prepare: no output (set [data] dataset or give -o OUT.h5)");
    prepare_run(&cfg, out);
    return 0;
}
