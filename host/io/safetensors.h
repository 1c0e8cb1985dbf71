// Hugging Face safetensors: read (one file, or the shards named by a
// model.safetensors.index.json) and write. A file is an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}} and the raw
// tensor bytes. Files are mmap'd read-only; every offset is checked against the
// file size before use, so a truncated or lying file is a clean error.
#ifndef SPREC_SAFETENSORS_H
#define SPREC_SAFETENSORS_H

#include <stddef.h>

enum { ST_F32, ST_F16, ST_BF16 };

typedef struct {
    char *name;
    int dtype;                   // ST_*
    int rank;
    long shape[8];
    const unsigned char *data;   // inside the file's mapping
    size_t nbytes;
    int file;                    // index into SafeTensors.paths
} StTensor;

typedef struct {
    int n_files;
    char **paths;
    void **maps; size_t *sizes;
    StTensor *t; int n;
} SafeTensors;

// path: a .safetensors file or a .index.json naming shards (relative to its folder).
void st_open(SafeTensors *st, const char *path);
void st_close(SafeTensors *st);
const StTensor *st_find(const SafeTensors *st, const char *name);   // NULL if absent
// Converts a tensor to fp32 (exact for F32/F16/BF16).
void st_to_f32(const StTensor *t, float *dst);

// Writes tensors (fp32 in memory) as one file, stored as F32 or BF16
// (round-to-nearest-even). shapes[i] has ranks[i] entries. Not synced: write
// into an atomic write's temporary (base/atomic_write.h), whose commit syncs.
void st_write(const char *path, int n, const char *const *names, const int *ranks, const long (*shapes)[2],
              const float *const *data, int bf16);

// Scalar conversions used by safetensors and GGUF.
float half_to_f32(unsigned short h);
float bf16_to_f32(unsigned short h);
unsigned short f32_to_bf16(float f);

#endif
