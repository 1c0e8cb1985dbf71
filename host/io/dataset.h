// Tokenized sequence files (layout in docs/formats.md): `tokens` int32 [N,T],
// `mask` float32 [N,T] (loss weight of predicting tokens[n,t]; column 0 is 0),
// optional `lengths` int32 [N] (right padding). The same layout serves as the
// SFT dataset and as the `sprec dump` batch; `sprec prepare` writes it under
// /train, /valid and /test of a recommendation dataset.
#ifndef SPREC_DATASET_H
#define SPREC_DATASET_H

#include "model/model.h"

typedef struct {
    int N, T;
    int *tokens;     // [N,T]
    float *mask;     // [N,T]
    int *lengths;    // [N]
} Dataset;

// Loads and validates; vocab_size > 0 also range-checks the token ids.
// dataset_load reads the arrays at the file's root (a token file);
// dataset_load_group reads them from a group, e.g. "train" of a prepared
// recommendation dataset (docs/recdata.md); group NULL or "" = the root.
void dataset_load(Dataset *d, const char *path, int vocab_size);
void dataset_load_group(Dataset *d, const char *path, const char *group, int vocab_size);
// Replaces the mask by 1 at every valid position t >= 1 (t < lengths[n]):
// the loss on the whole text (sft.loss_on = all). Returns the new mask sum.
double dataset_mask_all(Dataset *d);
void dataset_free(Dataset *d);
// Writes a dataset file (temp name + rename).
void dataset_save(const Dataset *d, const char *path);
// Gathers rows ids[0..n) into a batch trimmed to their longest length.
void dataset_batch(const Dataset *d, const int *ids, int n, Batch *out);
void batch_free(Batch *b);

#endif
