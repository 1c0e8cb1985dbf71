// sprec toydata -o FILE.h5: a built-in tokenized dataset for demos and tests.
// Each row is a prompt of k random symbols, a separator, then the completion:
// the prompt reversed and an end token. Only the completion is in the mask,
// so the loss measures exactly "can the model reverse the prompt".
// Token ids: 0 padding, 1 separator, 2 end, 3.. symbols.
#include "commands.h"
#include "io/dataset.h"
#include "kernels/errors.h"
#include "base/rng.h"

int cmd_toydata(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec toydata -o FILE.h5 [--rows 256] [--seq 24] [--vocab 32] [--seed 1]\n"
               "Writes a dataset (docs/formats.md) whose rows are 'symbols SEP reversed-symbols END';\n"
               "the mask covers the completion (reversed symbols and END). Prompt lengths vary,\n"
               "so rows are right-padded with lengths.\n");
        return 0;
    }
    const char *out = NULL;
    int rows = 256, T = 24, V = 32;
    uint64_t seed = 1;
    const CliFlag flags[] = {ARG_PATH("-o FILE.h5", &out, CLI_REQUIRED), ARG_INT("--rows", &rows, 1, 10000000),
                             ARG_INT("--seq", &T, 6, 1000000), ARG_INT("--vocab", &V, 5, 1 << 30),
                             ARG_U64("--seed", &seed, 0, 0x1p62), ARG_END};
    cli_parse("toydata", argc, argv, flags);

    Dataset d = {.N = rows, .T = T};
    d.tokens = xcalloc((size_t)rows * T, sizeof(int));
    d.mask = xcalloc((size_t)rows * T, sizeof(float));
    d.lengths = xcalloc((size_t)rows, sizeof(int));
    Rng r;
    rng_seed(&r, seed);
    const int kmax = (T - 2) / 2;
    for (int i = 0; i < rows; i++) {
        int *tok = d.tokens + (size_t)i * T;
        float *mask = d.mask + (size_t)i * T;
        const int k = 2 + (int)rng_below(&r, (uint64_t)(kmax - 1));    // 2..kmax symbols
        for (int j = 0; j < k; j++) tok[j] = 3 + (int)rng_below(&r, (uint64_t)(V - 3));
        tok[k] = 1;
        for (int j = 0; j < k; j++) { tok[k + 1 + j] = tok[k - 1 - j]; mask[k + 1 + j] = 1; }
        tok[2 * k + 1] = 2;
        mask[2 * k + 1] = 1;
        d.lengths[i] = 2 * k + 2;
    }
    dataset_save(&d, out);
    printf("toydata: %s (%d rows, %d positions, vocab %d)\n", out, rows, T, V);
    dataset_free(&d);
    return 0;
}
