// Tokenized sequence files (layout in docs/formats.md): `tokens` int32 [N,T],
// `mask` float32 [N,T] (loss weight of predicting tokens[n,t]; column 0 is 0),
// optional `lengths` int32 [N] (right padding). The same layout serves as the
// SFT dataset and as the `sprec dump` batch.
#ifndef SPREC_DATASET_H
#define SPREC_DATASET_H

#include "model.h"

typedef struct {
    int N, T;
    int *tokens;     // [N,T]
    float *mask;     // [N,T]
    int *lengths;    // [N]
} Dataset;

// Loads and validates; vocab_size > 0 also range-checks the token ids.
void dataset_load(Dataset *d, const char *path, int vocab_size);
void dataset_free(Dataset *d);
// Writes a dataset file (temp name + rename).
void dataset_save(const Dataset *d, const char *path);
// Gathers rows ids[0..n) into a batch trimmed to their longest length.
void dataset_batch(const Dataset *d, const int *ids, int n, Batch *out);
void batch_free(Batch *b);

#endif
