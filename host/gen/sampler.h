// Choosing the next token from one row of logits: greedy argmax, or a seeded
// draw with temperature, top-k and top-p (nucleus) filtering; plus the helpers
// generation shares (log-softmax normaliser, allowed-token masking, top-n).
// Everything here is host code on host arrays [V].
#ifndef SPREC_SAMPLER_H
#define SPREC_SAMPLER_H

#include "base/rng.h"

typedef struct {
    float temperature;           // <= 0: greedy
    int top_k;                   // keep the k most likely tokens; 0 = off
    float top_p;                 // keep the smallest set whose probability reaches p; >= 1 = off
} SamplerCfg;

// Index of the largest logit; ties go to the lowest id. -INFINITY entries
// (masked tokens) win only when every entry is -INFINITY.
int sample_argmax(const float *logits, int V);
// The next token: greedy when cfg->temperature <= 0, otherwise one draw from
// softmax(logits / T) restricted by top-k then top-p. Uses exactly one
// rng_uniform per draw, so each sequence's stream is independent of others.
// scratch: at least V floats and V ints (callers keep them across calls).
int sample_token(const float *logits, int V, const SamplerCfg *cfg, Rng *rng, float *fscratch, int *iscratch);
// The same with its uniform u in [0, 1) given (drawn by the caller).
int sample_token_u(const float *logits, int V, const SamplerCfg *cfg, double u, float *fscratch, int *iscratch);
// sample_token_u on a sparse row: -INFINITY except at ids[0..m) (ascending,
// distinct) where it holds vals[0..m); the same token as on the full row,
// without building it. Scratch: m floats and m ints.
int sample_token_sparse(const int *ids, const float *vals, int m, const SamplerCfg *cfg, double u,
                        float *fscratch, int *iscratch);
// Whether a row's best entries decide sample_token's top-k draw: best[0..cnt)
// are the row's largest logits, best first (ties to the lower id), fetched
// as its top `want` (= top_k + 1). Yes when the row has no other finite entry
// (cnt < want), or when the top_k best by z = x / T all lie strictly above the
// smallest fetched z: an entry outside the fetch has z at most that, so it
// cannot rank among them (distinct logits can share a z through the rounding
// of x / T; then the whole row is needed), or when 1/T is a power of two (z
// exact: the fetch ranks the row as z does).
int sample_topk_decided(const float *best, int cnt, int want, int top_k, float temperature);
// log sum_v exp(logits[v]), in double.
double logsumexp(const float *logits, int V);
// Sets every logit whose id is not in allowed[0..n) to -INFINITY. mark: V
// bytes of scratch, all 0 on entry and on return. Ids outside [0,V) are ignored.
void mask_allowed(float *logits, int V, const int *allowed, int n, unsigned char *mark);
// The n largest entries of x[V] (n <= V), best first; ties to the lower id.
// -INFINITY entries are never returned; returns how many were found.
int top_n(const float *x, int V, int n, int *out);

#endif
