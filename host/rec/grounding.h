// Unconstrained recommendation grounded to the catalogue (docs/eval.md,
// method.md section 4): per prompt one greedy title without the trie, embedded
// with the model's own hidden states, and every catalogue item ranked by the L2
// distance between its embedding and the generated one.
//
// The embedding of a token sequence: run the sequence through the model ON ITS
// OWN (positions 0.., no BOS, no prompt), take the final-normed hidden states
// (model_hidden: Hugging Face's last_hidden_state) and average them over every
// position. The sequence embedded is the "title tokens": for catalogue item i
// its completion tokens (`"Title"` + newline, catalogue/completion_tokens)
// without the last one, the token that ends the line (the newline, or `"\n`
// where the tokenizer merges it with the closing quote); for a generation the
// generated tokens without the end token (a line-end token, i.e. the last token
// of some catalogue completion, or EOS). So a generation that writes an item's
// completion exactly has that item's embedding (distance 0).
//
// Catalogue embeddings depend only on the model: they are computed once and
// cached in the dataset file under /grounding/<fingerprint> (grounding_create).
#ifndef SPREC_GROUNDING_H
#define SPREC_GROUNDING_H

#include <stdint.h>
#include "model/model.h"
#include "recdata.h"
#include "gen/generate.h"
#include "tokenizer/tokenizer.h"

#define GROUNDING_MARGIN 8   // new tokens allowed beyond the longest catalogue completion

typedef struct {
    int n_items, dim;
    float *emb;                  // [n_items, dim] catalogue embeddings
    unsigned char *end_tok;      // [V] 1 for the last token of some catalogue completion
    int max_new_tokens;          // longest catalogue completion + GROUNDING_MARGIN
    int eos_id;                  // the model's tokenizer's EOS; -1 without a tokenizer
    Tokenizer *tok;              // the model's tokenizer (decoding "generated"); NULL when it has none
    uint64_t fingerprint;
    int cached;                  // 0: computed now, 1: read from the cache
} Grounding;

// Mean-pooled final-normed hidden states of n sequences seqs[i][0..lens[i])
// (lens[i] >= 1, each run on its own from position 0): out[i*dim + c]. Runs in
// batches; leaves the model's activation buffers as it found them (frees what
// it had to grow).
void grounding_embed(Model *m, const int *const *seqs, const int *lens, int n, float *out);

// 64-bit fingerprint of everything the catalogue embeddings depend on: the
// embedding recipe, the backend, the model config, its parameters, the LoRA
// adapters (config and weights) when present, and the catalogue tokens.
uint64_t grounding_fingerprint(Model *m, const RecData *d);

// The catalogue's title tokens (see above): item i is
// d->item_tok[d->item_tok_offsets[i] ..] of grounding_title_len(d, i) tokens.
int grounding_title_len(const RecData *d, int i);

// Catalogue embeddings of model m. cache_path = the file d was loaded from, to
// read /grounding/<fingerprint>/embeddings from and, when absent, write it to
// (copy the file, add the group, flush, rename over the original: the original
// is never modified in place); NULL = no cache. A read-only file (or folder) is
// used without caching. One line on stderr says which happened.
void grounding_create(Grounding *g, Model *m, const RecData *d, const char *cache_path);

// The cache itself (also the paper mode's, host/rec/paper_eval.h): group
// (e.g. "grounding/FP") /embeddings of [n_items, dim] floats in the dataset
// file at path, or NULL when absent (a wrong shape is ignored with a line on
// stderr). The write adds the group with the attributes what, recipe,
// fingerprint (fp in hex), backend, n_items and dim; it returns 1 when cached,
// else 0 with the reason on stderr (read-only file or folder, a failed copy,
// the file changed meanwhile).
float *grounding_cache_read(const char *path, const char *group, int n_items, int dim);
int grounding_cache_write(const char *path, const char *group, const float *emb, int n_items, int dim,
                          uint64_t fp, const char *backend, const char *what, const char *recipe);
void grounding_free(Grounding *g);

// For each of n prompts: greedy decoding without constraint (generate(), one
// batch, KV cache) until an end token, EOS or max_new_tokens; the title tokens
// embedded; the K nearest items by L2 distance, ascending, ties to the lower
// item index: out_items[i*K + k], out_dist[i*K + k] (the Euclidean distance).
// gen[i] (may be NULL) receives the generation (GenOutput, one hypothesis;
// free with gen_output_free).
void grounding_topk(Model *m, const Grounding *g, const int *const *prompts, const int *lens, int n, int K,
                    int *out_items, float *out_dist, GenOutput *gen);

// The K nearest of n_items embeddings emb[n_items, dim] to q[dim] by L2
// distance (double accumulation), ascending, ties to the lower index.
void grounding_rank(const float *emb, int n_items, int dim, const float *q, int K, int *out_items, float *out_dist);

#endif
