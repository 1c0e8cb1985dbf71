// GGUF (llama.cpp's model file, versions 2 and 3): header, metadata key/values
// of every type (arrays included), tensor infos and data at general.alignment;
// dequantisation to fp32 (gguf_quant.h: bit-identical to ggml); the tokenizer.ggml.*
// metadata (byte-level BPE "gpt2" or SentencePiece "llama") turned back into a
// Hugging Face tokenizer.json text.
// The file is mmap'd read-only; every read is bounds-checked, so a truncated
// or corrupt file is a one-line error naming it.
#ifndef SPREC_GGUF_H
#define SPREC_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "model/model.h"
#include "gguf_quant.h"

enum { GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR,
       GGUF_U64, GGUF_I64, GGUF_F64 };

typedef struct {
    char *key;
    int type;                    // GGUF_*
    int arr_type; uint64_t n;    // arrays: element type and count
    const unsigned char *val;    // the value (arrays: the first element) inside the mapping
} GgufKV;

typedef struct {
    char *name;
    int type;                    // ggml type id
    int n_dims;
    uint64_t ne[4];              // ggml order: ne[0] is the contiguous (column) dimension
    const unsigned char *data;
    size_t nbytes;
} GgufTensor;

typedef struct {
    const char *path;
    void *map; size_t size;
    uint32_t version;
    size_t alignment;
    GgufKV *kv; int n_kv;
    GgufTensor *t; int n_t;
} Gguf;

void gguf_open(Gguf *g, const char *path);
void gguf_close(Gguf *g);
const GgufKV *gguf_find_kv(const Gguf *g, const char *key);
const GgufTensor *gguf_find_tensor(const Gguf *g, const char *name);
const char *gguf_type_name(int ggml_type);
// Dequantises a whole tensor to dst (ne[0]*ne[1]*... floats); a type sprec does not import fails naming it.
void gguf_dequantize(const Gguf *g, const GgufTensor *t, float *dst);
// Reads the {arch}.* metadata into a ModelConfig (tie_embeddings from the absence of output.weight).
void gguf_model_config(const Gguf *g, ModelConfig *c, char *arch, size_t arch_cap);
// Hugging Face tokenizer.json / tokenizer_config.json texts from tokenizer.ggml.* (malloc'd).
char *gguf_tokenizer_json_of(const Gguf *g, size_t *len);
char *gguf_tokenizer_config_json_of(const Gguf *g, size_t *len);
char *gguf_tokenizer_json(const char *path, size_t *len);
// `sprec info FILE.gguf`: metadata and tensor list with types.
void gguf_info(const char *path, FILE *out);
// llama.cpp's converter permutes the rows of q_proj/k_proj (each head's two
// rotary halves interleaved); this puts them back in Hugging Face order.
// w: [n_head*head_dim, cols] rows; gguf_permute_rows is the inverse (tests).
void gguf_unpermute_rows(float *w, int n_head, int head_dim, int cols);
void gguf_permute_rows(float *w, int n_head, int head_dim, int cols);

#endif
