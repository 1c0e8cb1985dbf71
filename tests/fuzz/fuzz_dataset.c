// Datasets (HDF5 with the whole-file checksum): a prepared recommendation dataset (`sprec prepare`), a token
// dataset (`sprec toydata`, `sprec dump`) and the token split under a prepared dataset's /train. A mutated file
// must be refused by the checksum before libhdf5 parses it.
#include "fuzz.h"
#include "io/dataset.h"
#include "rec/recdata.h"

static void run_recdata(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    RecData d;
    recdata_load(&d, path);
    recdata_free(&d);
}

static void run_tokens(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    Dataset t;
    dataset_load(&t, path, 50257);
    dataset_free(&t);
}

static void run_split(const char *path, const uint8_t *data, size_t size) {
    (void)data; (void)size;
    Dataset t;
    dataset_load_group(&t, path, "train", 50257);
    dataset_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_run(data, size, run_recdata);
    fuzz_run(data, size, run_tokens);
    fuzz_run(data, size, run_split);
    return 0;
}
