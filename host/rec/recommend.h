// Catalogue-constrained recommendation: beam search through generate()'s
// allowed-tokens hook over the catalogue trie, so every recommendation is
// exactly one catalogue item; top-K = the K best distinct items.
#ifndef SPREC_RECOMMEND_H
#define SPREC_RECOMMEND_H

#include "model/model.h"
#include "trie.h"

// For each of n prompts (token ids prompts[i][0..lens[i]), e.g. BOS + the
// prompt template up to "### Response:\n"), the K best distinct catalogue items
// by sequence log-prob sum log p(item tokens | prompt) (no length
// normalisation), from a constrained beam search of width W >= K:
// out_items[i*K + k] = catalogue index (trie item), out_scores[i*K + k] = its
// log-prob, best first (ties: lower item index). K = W = 1 is the constrained
// greedy recommendation. Errors (one line, exit 1): K < 1, W < K, K larger
// than the catalogue, fewer than K items completable within the model's context.
// Prompts are processed in batches so that the KV cache holds at most 256 rows.
void recommend_topk(Model *m, const Trie *t, const int *const *prompts, const int *lens, int n, int K, int W,
                    int *out_items, float *out_scores);

// SPRec's negative: the model's best item for each prompt unless it equals
// avoid[i] (the chosen item; -1: none), else its next-best item (a beam of
// width W >= 2). out_items[i] / out_scores[i]; the catalogue needs >= 2 items.
void recommend_next_best(Model *m, const Trie *t, const int *const *prompts, const int *lens, int n,
                         const int *avoid, int W, int *out_items, float *out_scores);

// This rank's share [*lo, *hi) of n prompts to rank with beams of width W, balanced
// by expected work (base/dist.h dist_share_cost): a prompt costs its prefill (lens[i]
// tokens) plus W beams decoding an item of the trie's mean length (t NULL: free
// text, taken as one token per beam).
void recommend_share(const Trie *t, const int *lens, int n, int W, int *lo, int *hi);

#endif
