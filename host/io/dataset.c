// Loading, validating and batching tokenized sequence files.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "dataset.h"
#include "base/atomic_write.h"
#include "base/h5io.h"
#include "kernels/errors.h"

void dataset_load(Dataset *d, const char *path, int vocab_size) { dataset_load_group(d, path, NULL, vocab_size); }

void dataset_load_group(Dataset *d, const char *path, const char *group, int vocab_size) {
    memset(d, 0, sizeof *d);
    hid_t f = h5_open_read(path);
    char tok[256], msk[256], len[256];
    const int root = !group || !*group;
    snprintf(tok, sizeof tok, "%s%stokens", root ? "" : group, root ? "" : "/");
    snprintf(msk, sizeof msk, "%s%smask", root ? "" : group, root ? "" : "/");
    snprintf(len, sizeof len, "%s%slengths", root ? "" : group, root ? "" : "/");
    if (!root && !h5_exists(f, group)) fail("%s: no group '%s' (not a prepared dataset, or no such split)", path, group);
    if (!root && !h5_exists(f, tok))
        fail("%s: split '%s' has no token ids: run sprec prepare with [data] tokenizer set (docs/recdata.md)", path, group);
    long td[2] = {-1, -1};
    d->tokens = h5_read_i32(f, path, tok, 2, td);
    long md[2] = {td[0], td[1]};
    d->mask = h5_read_f32(f, path, msk, 2, md);
    d->N = (int)td[0]; d->T = (int)td[1];
    if (d->N < 1 || d->T < 2) fail("%s: '%s' has shape [%ld,%ld]; need at least 1 row of 2 positions", path, tok, td[0], td[1]);
    if (h5_exists(f, len)) {
        long ld[1] = {td[0]};
        d->lengths = h5_read_i32(f, path, len, 1, ld);
    } else {
        d->lengths = xmalloc((size_t)d->N * sizeof(int));
        for (int i = 0; i < d->N; i++) d->lengths[i] = d->T;
    }
    h5_close(f);
    for (int i = 0; i < d->N; i++) {
        const int len = d->lengths[i];
        if (len < 1 || len > d->T) fail("%s: lengths[%d] = %d outside [1, %d]", path, i, len, d->T);
        if (d->mask[(size_t)i * d->T] != 0.0f) fail("%s: mask[%d,0] = %g; column 0 must be 0 (nothing predicts the first token)", path, i, d->mask[(size_t)i * d->T]);
        for (int t = 0; t < d->T; t++) {
            const size_t k = (size_t)i * d->T + t;
            if (!isfinite(d->mask[k]) || d->mask[k] < 0) fail("%s: mask[%d,%d] = %g; weights must be finite and >= 0", path, i, t, d->mask[k]);
            if (t >= len && d->mask[k] != 0.0f) fail("%s: mask[%d,%d] = %g lies in the padding (length %d)", path, i, t, d->mask[k], len);
            if (t < len && vocab_size > 0 && (d->tokens[k] < 0 || d->tokens[k] >= vocab_size))
                fail("%s: tokens[%d,%d] = %d outside the model's vocabulary [0, %d)", path, i, t, d->tokens[k], vocab_size);
        }
    }
}

double dataset_mask_all(Dataset *d) {
    double sum = 0;
    for (int i = 0; i < d->N; i++)
        for (int t = 0; t < d->T; t++) {
            const float w = t >= 1 && t < d->lengths[i] ? 1.0f : 0.0f;
            d->mask[(size_t)i * d->T + t] = w;
            sum += w;
        }
    return sum;
}

void dataset_free(Dataset *d) {
    free(d->tokens); free(d->mask); free(d->lengths);
    memset(d, 0, sizeof *d);
}

void dataset_save(const Dataset *d, const char *path) {
    AtomicFile *out = atomic_begin(path, NULL);
    hid_t f = h5_create_checksummed(out->tmp);
    long dims[2] = {d->N, d->T};
    h5_write_i32(f, "tokens", 2, dims, d->tokens);
    h5_write_f32(f, "mask", 2, dims, d->mask);
    h5_write_i32(f, "lengths", 1, dims, d->lengths);
    h5_close(f);
    atomic_commit(out);
}

void dataset_batch(const Dataset *d, const int *ids, int n, Batch *out) {
    int T = 1;
    for (int i = 0; i < n; i++) if (d->lengths[ids[i]] > T) T = d->lengths[ids[i]];
    out->B = n; out->T = T;
    out->tokens = xcalloc((size_t)n * T, sizeof(int));
    out->mask = xcalloc((size_t)n * T, sizeof(float));
    out->lengths = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        const size_t src = (size_t)ids[i] * d->T;
        memcpy(out->tokens + (size_t)i * T, d->tokens + src, (size_t)T * sizeof(int));
        memcpy(out->mask + (size_t)i * T, d->mask + src, (size_t)T * sizeof(float));
        out->lengths[i] = d->lengths[ids[i]];
    }
}

void batch_free(Batch *b) {
    free(b->tokens); free(b->mask); free(b->lengths);
    memset(b, 0, sizeof *b);
}
