// sprec toydata -o FILE.h5: a built-in tokenized dataset for demos and tests.
// Each row is a prompt of k random symbols, a separator, then the completion:
// the prompt reversed and an end token. Only the completion is in the mask,
// so the loss measures exactly "can the model reverse the prompt".
// Token ids: 0 padding, 1 separator, 2 end, 3.. symbols.
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "io/dataset.h"
#include "kernels/errors.h"
#include "base/rng.h"

static long parse_long(const char *flag, const char *v, long lo, long hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi) fail("sprec toydata: %s must be an integer in [%ld, %ld], got '%s'", flag, lo, hi, v);
    return x;
}

int cmd_toydata(int argc, char **argv) {
    if (cli_has_flag(argc, argv, "--help")) {
        printf("usage: sprec toydata -o FILE.h5 [--rows 256] [--seq 24] [--vocab 32] [--seed 1]\n"
               "Writes a dataset (docs/formats.md) whose rows are 'symbols SEP reversed-symbols END';\n"
               "the mask covers the completion (reversed symbols and END). Prompt lengths vary,\n"
               "so rows are right-padded with lengths.\n");
        return 0;
    }
    const char *known[] = {"-o", "--rows", "--seq", "--vocab", "--seed"};
    for (int i = 1; i < argc; i += 2) {
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= strcmp(argv[i], known[k]) == 0;
        if (!ok) fail("sprec toydata: unknown argument '%s' (see sprec toydata --help)", argv[i]);
        if (i + 1 >= argc) fail("sprec toydata: %s needs a value", argv[i]);
    }
    const char *out = cli_flag_value(argc, argv, "-o");
    if (!out) fail("sprec toydata: missing -o FILE.h5");
    const char *v;
    int rows = (v = cli_flag_value(argc, argv, "--rows")) ? (int)parse_long("--rows", v, 1, 10000000) : 256;
    int T = (v = cli_flag_value(argc, argv, "--seq")) ? (int)parse_long("--seq", v, 6, 1000000) : 24;
    int V = (v = cli_flag_value(argc, argv, "--vocab")) ? (int)parse_long("--vocab", v, 5, 1 << 30) : 32;
    uint64_t seed = (v = cli_flag_value(argc, argv, "--seed")) ? (uint64_t)parse_long("--seed", v, 0, 1L << 62) : 1;

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
