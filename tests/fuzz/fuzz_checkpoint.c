// Checkpoint (HDF5 with the whole-file checksum): the summary `sprec info` prints, then, for a small model,
// a full load with optimizer state. A mutated file must be refused by the checksum before libhdf5 parses it.
#include <stdio.h>
#include "fuzz.h"
#include "io/checkpoint.h"
#include "model/optimizer.h"

static void run(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    checkpoint_info(path, devnull);
    ModelConfig c;
    checkpoint_read_config(path, &c);
    if ((long)c.vocab_size * c.dim + (long)c.n_layers * c.dim * (c.ffn_dim + c.dim) > (1l << 22)) return;
    Model m;
    model_create(&m, &c, backend_select("cpu"));
    checkpoint_load(path, &m, NULL, NULL);   // as a resume does: the file's LoRA adapters first, then the optimizer
    AdamW opt;
    adamw_create(&opt, &m, 0.9, 0.999, 1e-8, 0, 1, 0);
    TrainState st;
    checkpoint_load(path, &m, &opt, &st);
    adamw_free(&opt, &m);
    model_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(data, size, run);
    return 0;
}
