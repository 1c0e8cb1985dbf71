// A BERT-family sentence encoder (sentence-transformers' Transformer + mean
// Pooling: paraphrase-MiniLM-L3-v2, all-MiniLM-L6-v2), forward only, on any
// backend with the encoder ops (layernorm_fwd, gelu_fwd, attention_bidir_fwd):
//   x = word[tok] + position[t] + token_type[0];  h = LayerNorm(x)
//   per layer (post-LN): h = LN(h + O(attention(Q h, K h, V h)));  h = LN(h + W2 gelu(W1 h))
//   embedding = mean of h over the sequence's real tokens (no normalisation).
// The sequence is [CLS] wordpieces [SEP], truncated to max_tokens as
// sentence-transformers truncates (the last kept token is [SEP]).
#ifndef SPREC_ENCODER_H
#define SPREC_ENCODER_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int vocab_size, dim, n_layers, n_heads, ffn_dim;
    int max_pos;         // position embeddings
    int type_vocab;      // token type embeddings (only type 0 is used)
    int max_tokens;      // the sentence model's max_seq_length (<= max_pos)
    float eps;           // LayerNorm epsilon
} EncoderConfig;

// Ranges and divisibility; one-line error naming `where`.
void encoder_config_validate(const EncoderConfig *c, const char *where);

typedef struct {
    EncoderConfig cfg;
    ParamInfo *table;    // Hugging Face BertModel names without prefix (embeddings.word_embeddings.weight, ...)
    int n_params;
    size_t numel;
    float *host;         // [numel] fp32 weights in table order (what checkpoints hold)
    const Backend *be;   // NULL until encoder_to_device
    void *w;             // [numel] the device copy (act elements)
    char *tokenizer_json;            // tokenizer.json text (saved with the weights, hashed); NULL: ids only
    size_t tokenizer_json_len;
    char tokenizer_where[256];       // its source, for error messages
    Tokenizer *tok;                  // built from it on first use (encoder_tokenizer)
    int cls_id, sep_id;              // -1 until then
} Encoder;

// The parameter table (fixed order) and a zeroed host buffer for cfg.
void encoder_init(Encoder *e, const EncoderConfig *c);
// Copies the host weights to be (which must have the encoder ops: else a one-line error).
void encoder_to_device(Encoder *e, const Backend *be);
// Keeps the text of a tokenizer.json (copied); `where` names its source.
void encoder_set_tokenizer(Encoder *e, const char *json, size_t len, const char *where);
// The WordPiece tokenizer, built on first use: one-line error when there is
// none, or it lacks [CLS] / [SEP], or its ids do not fit the vocabulary.
Tokenizer *encoder_tokenizer(Encoder *e);
void encoder_free(Encoder *e);

// The token ids of a text as the encoder sees them: [CLS] ... [SEP], at most
// cfg.max_tokens. Returns the count; *ids malloc'd.
int encoder_tokenize(Encoder *e, const char *text, size_t len, int **ids);

// Mean-pooled embeddings of n id sequences (each 1..max_tokens ids, in the
// vocabulary: checked): out[i*dim ..]. Batched by length (the result does not
// depend on the batching beyond rounding: every row is masked to its own length).
void encoder_embed_ids(Encoder *e, const int *const *seqs, const int *lens, int n, float *out);
// encoder_tokenize + encoder_embed_ids.
void encoder_embed_texts(Encoder *e, const char *const *texts, int n, float *out);

// 64-bit hash of what an embedding depends on: the config, the weights, the
// tokenizer.json text and the backend's name (CPU and GPU numerics differ).
uint64_t encoder_fingerprint(const Encoder *e);

#endif
