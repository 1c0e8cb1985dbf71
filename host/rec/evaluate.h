// Evaluation of a model on a split of a prepared recommendation dataset
// (docs/eval.md): catalogue-constrained beam search (or, in the unconstrained
// mode, greedy text grounded to the catalogue) over every row's prompt, the
// top-K list of each row, and the metrics of method.md section 4.
#ifndef SPREC_EVALUATE_H
#define SPREC_EVALUATE_H

#include <stdio.h>
#include "model/model.h"
#include "recdata.h"
#include "metrics.h"
#include "paper_eval.h"

// Ranks the rows of split `split` ("train" | "valid" | "test") of d (which must
// be tokenized): the trie is built from the catalogue's completion tokens, each
// row's prompt is its first prompt_len[r] tokens, the list is the max(ks) best
// distinct items of a constrained beam of width W = max(beams, max(ks)), run
// `batch` rows at a time with a progress line on stderr. out[i] = the metrics
// at K = ks[i] (metrics_compute). topk_jsonl (may be NULL) gets one line per
// row: {"row": r, "history": [ids], "target": id | null, "ranked": [max K ids]}
// (rows whose target is outside the catalogue are ranked too). Errors (one
// line, exit 1): untokenized dataset, unknown split, K larger than the
// catalogue, token ids outside the model's vocabulary, a prompt plus the
// longest item longer than the model's context.
void evaluate_split(Model *m, const RecData *d, const char *split, const int *ks, int n_ks, int beams, int batch,
                    FILE *topk_jsonl, Metrics *out);
// The same on the first max_rows rows only (0 = all rows).
void evaluate_split_rows(Model *m, const RecData *d, const char *split, const int *ks, int n_ks, int beams,
                         int batch, int max_rows, FILE *topk_jsonl, Metrics *out);

// How each row's list is made ([eval] mode; the config stores the index).
typedef enum {
    EVAL_CONSTRAINED,     // catalogue-constrained beam search (above)
    EVAL_UNCONSTRAINED,   // one greedy title without the trie, grounded by L2 distance (host/rec/grounding.h)
    EVAL_PAPER            // the paper's protocol: greedy text, a sentence encoder, L2 ranking (host/rec/paper_eval.h)
} EvalMode;

// evaluate_split_rows in either mode. Unconstrained: beams is unused; the list
// is the max(ks) catalogue items nearest to the generated title (grounding_topk)
// and each top-K line also gets "generated" (the decoded generation, null when
// the model has no tokenizer) and "generated_ids"; cache_path (NULL = none) is
// the dataset file d was loaded from, where the catalogue embeddings are cached
// per model (grounding_create). Paper: the same with paper_topk (paper:
// the encoder and the decoding tokenizer; unused by the other modes, may be
// NULL), the catalogue embeddings cached per encoder; each top-K line also gets
// "title" (the text the encoder embedded).
void evaluate_split_mode(Model *m, const RecData *d, const char *split, const int *ks, int n_ks, int beams,
                         int batch, int max_rows, int mode, const char *cache_path, const PaperOpts *paper,
                         FILE *topk_jsonl, Metrics *out);

// Parses "1,5,10" into ks (at most cap values, each >= 1, no repeats);
// returns the count, or 0 with a reason in err.
int evaluate_parse_ks(const char *text, int *ks, int cap, char *err, size_t err_cap);

#endif
