// ggml tensor types: the block size and bytes of every type a GGUF file may
// hold, and dequantisation to fp32 of those sprec imports (F32, F16, BF16,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) with the same
// fp32 operations in the same order as ggml's reference dequantize_row_* and
// gguf.quants, so the results are bit-identical to both.
#ifndef SPREC_GGUF_QUANT_H
#define SPREC_GGUF_QUANT_H

#include <stddef.h>

// ggml type ids (ggml.h); the ones sprec dequantises, and the others named in messages by gguf_type()
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
       GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14,
       GGML_Q8_K = 15, GGML_BF16 = 30 };

typedef struct {
    int id;
    const char *name;            // as ggml names it ("Q4_K")
    int block, bytes;            // values per block, bytes per block
    const char *refused;         // NULL: dequantised; else why it cannot be imported
} GgufType;

// NULL when ggml defines no type with that id.
const GgufType *gguf_type(int id);
// Dequantises nblocks consecutive blocks of a dequantisable type (nblocks * block values).
void gguf_dequantize_blocks(int type, const unsigned char *src, size_t nblocks, float *dst);

#endif
