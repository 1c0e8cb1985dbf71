// Text generation with a KV cache: a decode forward that appends blocks of
// tokens to cached sequences (prefill = a block of whole prompts, decode = one
// token per sequence), and on top of it greedy / sampled generation and beam
// search over a batch of prompts of different lengths. A per-step
// "allowed tokens" hook constrains every mode (the catalogue trie plugs in here).
#ifndef SPREC_GENERATE_H
#define SPREC_GENERATE_H

#include <stdint.h>
#include "model/model.h"
#include "kv_cache.h"

// ---- the decode forward ------------------------------------------------------

typedef struct {
    Model *m;
    KVCache kv;
    int max_rows;                // token rows one step may carry (scratch capacity)
    // scratch, [max_rows, width]: the training forward's activations, not kept
    void *x, *ln, *q, *k, *v, *att, *x2, *tmp, *gate, *up, *act;   // act (backend.h)
    float *rstd, *last_rstd;                      // [N] [R]
    void *last, *last_ln, *logits;                // act [R,C] [R,C] [R,V]
    int *tokens, *pos, *start, *n_new, *rows;     // device copies of a step's inputs
    float *logits_host;                           // [R,V] staging
    // the last step's logits, left on the device: cache row r's are at
    // act element slot[r] * V of cur (slot[r] = -1: the row got none), rows 0..n_cur-1 of cur
    const void *cur;
    int *slot, n_cur;                             // host [R]
    void *plogits;                                // device [R,V]: prefill's rows when the
                                                  // prompts end in different chunks (lazy)
    void *lora_scratch;                           // act: LoRA's intermediates (lora_fwd), NULL without adapters
} Decoder;

// R cache rows of P positions (P <= max_seq_len); a step carries at most
// max_rows = R * S token rows. LoRA adapters (enabled before this call) add
// their path as in the training forward, never with dropout: no merge is
// needed to generate from a model being trained. A step writes only the
// decoder's buffers and cache, never the model's activations or the adapters'
// kept ones, so it cannot disturb a pending backward (the trainers generate
// only between optimizer steps anyway).
void decoder_create(Decoder *d, Model *m, int R, int P, int max_rows);
void decoder_free(Decoder *d);
// Appends n_new[r] tokens (tokens[r*S + s], s < n_new[r], host) to cache row
// r for r < R (rows with n_new[r] = 0 are left alone) and computes the same
// function as model_forward on each whole sequence. For every row with
// n_new[r] > 0, logits_host[r*V ..] = the logits after its last new token.
// logits_host = NULL: nothing is downloaded; the logits stay on the device
// (d->cur, d->slot: see above) for the selection ops of kernels/backend.h.
void decoder_step(Decoder *d, const int *tokens, const int *n_new, int R, int S, float *logits_host);
// Feeds whole prompts (prompts[r][0..lens[r]), lens[r] >= 1) into empty rows
// 0..R-1, in column chunks that fit max_rows; logits_host[r] = the logits after
// the last prompt token (what predicts the first generated token). NULL: they
// stay on the device (d->cur, d->slot), as in decoder_step.
void decoder_prefill(Decoder *d, const int *const *prompts, const int *lens, int R, float *logits_host);

// ---- generation ----------------------------------------------------------------

// Allowed-tokens hook, called before every choice (argmax, draw or beam
// expansion) for prompt `seq` with the tokens generated so far (for beams:
// that beam's tokens). Writes up to cap ids to out_ids and returns how many;
// returns 0 when nothing may follow (the sequence/beam ends there: finish
// GEN_CONSTRAINT), or a negative number for "no constraint at this step".
// Scores stay the model's own log-probs (masking does not renormalise them,
// as Hugging Face's prefix_allowed_tokens_fn), but sampling draws among the
// allowed tokens only. Within a step, the allowed hooks of all live sequences
// (beams) run first, in order, then the stop hooks and callbacks. Greedy and
// beam search never download logits: the backend returns each row's
// normaliser, its top k (unconstrained rows) and the logits at the allowed
// ids (docs/generate.md); sampling does too when top-k or the constraint bounds
// the draw, and downloads a row otherwise.
typedef int (*GenAllowedFn)(void *ctx, int seq, const int *generated, int n_generated, int *out_ids, int cap);
// Extra stop test after a token is appended (e.g. a stop string on decoded text).
typedef int (*GenStopFn)(void *ctx, int seq, const int *generated, int n_generated);

typedef enum { GEN_EOS = 1, GEN_STOP, GEN_LENGTH, GEN_CONSTRAINT } GenFinish;

typedef struct {
    int *tokens, n;              // generated tokens (the EOS / stop token included)
    double logprob;              // sum of log p(token | prefix) under the model
    double score;                // logprob / n^length_alpha (beams); logprob otherwise
    int finish;                  // GenFinish
} GenHyp;

typedef struct { GenHyp *hyps; int n; } GenOutput;   // per prompt, best first

typedef struct {
    int max_new_tokens;          // >= 1
    float temperature;           // <= 0: greedy
    int top_k;                   // 0: off
    float top_p;                 // >= 1: off
    uint64_t seed;               // each prompt draws from its own stream: (seed, stream id)
    const uint64_t *stream_ids;  // [B] stream id per prompt (e.g. its global row, so the tokens do
                                 // not depend on batching or sharding); NULL: the index in this batch
    int beams;                   // >= 1: beam search of this width (sampling options unused); 0: off
    float length_alpha;          // beam score normalisation exponent; 0 = plain log-prob sum
    int eos_id;                  // -1: none
    const int *stop_ids; int n_stop_ids;   // stop when the output ends with these tokens
    GenAllowedFn allowed; void *allowed_ctx;
    // The allowed tokens as slices of one table instead of lists (used instead
    // of `allowed` when set; same ctx): returns the count as `allowed` does
    // and sets *start, the slice's first index in allowed_table[0 ..
    // allowed_table_len) (ids in the vocabulary, each slice ascending without
    // repeats: a Trie's child_tok, sliced at child_start[node]). The table goes
    // to the device once per generate() call, so a constrained step uploads
    // two ints per row instead of its allowed ids.
    int (*allowed_slice)(void *ctx, int seq, const int *generated, int n_generated, int *start);
    const int *allowed_table; int allowed_table_len;
    GenStopFn stop; void *stop_ctx;
    // streaming (greedy / sampling): after each appended token, and when a sequence ends
    void (*on_token)(void *ctx, int seq, const int *generated, int n_generated);
    void (*on_finish)(void *ctx, int seq, const GenHyp *h);
    void *cb_ctx;
    int prefill_rows;            // token rows per prefill chunk; 0 = 4096
} GenOpts;

void gen_opts_default(GenOpts *o);   // greedy, 32 new tokens, no EOS, no hooks
// B prompts (prompts[b][0..lens[b]), lens[b] >= 1, ids in the vocabulary).
// out[b]: one hypothesis (greedy / sampling) or up to `beams` best finished ones.
void generate(Model *m, const int *const *prompts, const int *lens, int B, const GenOpts *o, GenOutput *out);
void gen_output_free(GenOutput *out, int B);
// The seed of sampling stream `stream` (GenOpts.stream_ids) under GenOpts.seed.
uint64_t gen_stream_seed(uint64_t seed, uint64_t stream);

#endif
