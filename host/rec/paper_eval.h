// The SPRec paper's evaluation protocol (SPREC.md section 4; docs/eval.md
// "Paper mode"): per prompt one greedy, unconstrained generation of at most
// PAPER_MAX_NEW_TOKENS tokens (stopping early at EOS only), decoded to text;
// the reference's text rule picks the title; a sentence encoder
// (paraphrase-MiniLM-L3-v2, imported with sprec import) embeds it; every
// catalogue item is ranked by the L2 distance between that embedding and the
// encoder's embedding of the item's title (mean pooling, no normalisation).
#ifndef SPREC_PAPER_EVAL_H
#define SPREC_PAPER_EVAL_H

#include <stdint.h>
#include "model/model.h"
#include "model/encoder.h"
#include "recdata.h"
#include "gen/generate.h"
#include "tokenizer/tokenizer.h"

#define PAPER_MAX_NEW_TOKENS 32

typedef struct {
    const char *encoder;         // the sentence-encoder checkpoint ([eval] encoder)
    const char *tokenizer;       // decodes the generations when the model checkpoint has no tokenizer
                                 // ([data] tokenizer: the dataset's own; "" or NULL = none)
} PaperOpts;

typedef struct {
    Encoder enc;                 // on the model's backend when it has the encoder ops, else on the CPU
    int n_items, dim;
    float *emb;                  // [n_items, dim] the catalogue titles embedded
    Tokenizer *tok;              // the model's tokenizer (decoding the generations)
    int eos_id;                  // its EOS; -1 when it has none
    uint64_t fingerprint;        // of the encoder and the catalogue titles (the cache key)
    int cached;                  // 1: the catalogue embeddings came from the cache
} PaperEval;

// Loads the encoder checkpoint and the catalogue embeddings: read from
// cache_path (the dataset file d was loaded from; NULL = no cache) under
// /grounding/paper-FP, or computed and cached there (grounding_cache_write).
// The generations are decoded with the model's tokenizer, else with
// o->tokenizer (one-line error when there is neither).
void paper_create(PaperEval *p, Model *m, const PaperOpts *o, const RecData *d, const char *cache_path);
void paper_free(PaperEval *p);

// The reference's text rule on a decoded generation: the text after the first
// double quote up to the next one (or to the end when there is none), else the
// first line; "NAN" when that is empty. Malloc'd, NUL-terminated.
char *paper_title(const char *text, size_t len);

// A generation as the reference's text: decoded with special tokens skipped,
// each byte that is not part of valid UTF-8 replaced by U+FFFD (HF's decode
// replaces invalid sequences too; the BERT normaliser drops U+FFFD either way).
// Malloc'd, NUL-terminated.
char *paper_text(const Tokenizer *tok, const int *ids, int n);

// For each of n prompts: the greedy generation, its title (paper_title), the
// K nearest items by L2 distance, ascending, ties to the lower index:
// out_items[i*K + k], out_dist[i*K + k]. gen[i] (may be NULL) receives the
// generation; titles[i] (titles may be NULL) the malloc'd title
// (paper_title(paper_text(generation))).
void paper_topk(Model *m, PaperEval *p, const int *const *prompts, const int *lens, int n, int K, int *out_items,
                float *out_dist, GenOutput *gen, char **titles);

#endif
