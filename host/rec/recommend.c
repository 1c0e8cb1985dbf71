// Catalogue-constrained top-K recommendation (see recommend.h, docs/recommend.md).
//
// One beam search per batch of prompts through generate(): the allowed hook
// returns the trie's children of each beam's node, the stop hook ends a beam
// on the token that completes a leaf item (it then competes for the finished
// list as an EOS-ended hypothesis would). A terminal node WITH children (an
// item that is a strict prefix of another) cannot both end and continue one
// hypothesis in generate(), so the beam continues, and the allowed hook
// records every live beam standing on such a node; those items are then scored
// by a forced decode (the same decoder arithmetic) and merged with the
// finished beams.
#include <stdlib.h>
#include <string.h>
#include "recommend.h"
#include "base/dist/dist.h"
#include "gen/generate.h"
#include "kernels/errors.h"

#define REC_MAX_ROWS 256   // KV cache rows per generate() call (prompts x beams)

typedef struct { int seq, item, n; int *tokens; double score; } PrefixHit;

typedef struct {
    const Trie *t;
    PrefixHit *hits; int n_hits, cap;
} RecCtx;

// The trie's children of the beam's node, as a slice of the trie's child
// tokens (which generate() keeps on the device for the whole search).
static int rec_allowed(void *ctx, int seq, const int *gen, int n, int *start) {
    RecCtx *c = ctx;
    const int node = trie_walk(c->t, gen, n);
    if (node < 0) return 0;
    *start = c->t->child_start[node];
    const int k = c->t->child_start[node + 1] - *start, item = c->t->item[node];
    if (item >= 0 && k > 0) {   // a live beam on an item with longer continuations
        for (int i = 0; i < c->n_hits; i++)
            if (c->hits[i].seq == seq && c->hits[i].item == item) return k;
        if (c->n_hits == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 16;
            c->hits = realloc(c->hits, (size_t)c->cap * sizeof(PrefixHit));
            check(c->hits, "out of memory");
        }
        PrefixHit *h = &c->hits[c->n_hits++];
        h->seq = seq; h->item = item; h->n = n; h->score = 0;
        h->tokens = xmalloc((size_t)n * sizeof(int));
        memcpy(h->tokens, gen, (size_t)n * sizeof(int));
    }
    return k;
}

// forced decode of one recorded item per sequence
typedef struct { const PrefixHit *hits; } ForceCtx;

static int force_allowed(void *ctx, int seq, const int *gen, int n, int *out_ids, int cap) {
    (void)gen; (void)cap;
    const PrefixHit *h = &((ForceCtx *)ctx)->hits[seq];
    if (n >= h->n) return 0;
    out_ids[0] = h->tokens[n];
    return 1;
}

typedef struct { double score; int item; } Ranked;

static int ranked_cmp(const void *pa, const void *pb) {
    const Ranked *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

// one batch of B prompts
static void recommend_batch(Model *m, const Trie *t, const int *const *prompts, const int *lens, int B, int K,
                            int W, int first, int *out_items, float *out_scores) {
    RecCtx rc = {.t = t};
    GenOpts o;
    gen_opts_default(&o);
    o.beams = W;
    o.length_alpha = 0.0f;
    o.max_new_tokens = t->max_depth;
    o.eos_id = -1;
    o.allowed_slice = rec_allowed; o.allowed_ctx = &rc;
    o.allowed_table = t->child_tok; o.allowed_table_len = t->n_edges;
    o.stop = trie_gen_stop; o.stop_ctx = (void *)t;
    GenOutput *out = xcalloc((size_t)B, sizeof(GenOutput));
    generate(m, prompts, lens, B, &o, out);

    // score the recorded prefix items by a forced decode
    if (rc.n_hits > 0) {
        const int **fp = xmalloc((size_t)rc.n_hits * sizeof(int *));
        int *fl = xmalloc((size_t)rc.n_hits * sizeof(int)), maxn = 1;
        for (int i = 0; i < rc.n_hits; i++) {
            fp[i] = prompts[rc.hits[i].seq];
            fl[i] = lens[rc.hits[i].seq];
            maxn = rc.hits[i].n > maxn ? rc.hits[i].n : maxn;
        }
        ForceCtx fc = {rc.hits};
        GenOpts f;
        gen_opts_default(&f);
        f.max_new_tokens = maxn;
        f.eos_id = -1;
        f.allowed = force_allowed; f.allowed_ctx = &fc;
        GenOutput *fo = xcalloc((size_t)rc.n_hits, sizeof(GenOutput));
        generate(m, (const int *const *)fp, fl, rc.n_hits, &f, fo);
        for (int i = 0; i < rc.n_hits; i++) {
            check(fo[i].n == 1 && fo[i].hyps[0].n == rc.hits[i].n, "forced decode of item %d", rc.hits[i].item);
            rc.hits[i].score = fo[i].hyps[0].logprob;
        }
        gen_output_free(fo, rc.n_hits);
        free(fo); free(fp); free(fl);
    }

    Ranked *r = xmalloc((size_t)(W + rc.n_hits + 1) * sizeof(Ranked));
    for (int b = 0; b < B; b++) {
        int nr = 0;
        for (int i = 0; i < out[b].n; i++) {   // finished beams that are complete items
            const GenHyp *h = &out[b].hyps[i];
            const int item = trie_item(t, h->tokens, h->n);
            if (item >= 0) r[nr++] = (Ranked){h->logprob, item};
        }
        for (int i = 0; i < rc.n_hits; i++) {
            if (rc.hits[i].seq != b) continue;
            int j = 0;
            while (j < nr && r[j].item != rc.hits[i].item) j++;
            if (j == nr) r[nr++] = (Ranked){rc.hits[i].score, rc.hits[i].item};
        }
        qsort(r, (size_t)nr, sizeof *r, ranked_cmp);
        if (nr < K)
            fail("recommend: prompt %d: only %d catalogue items could be completed within the model's context "
                 "(max_seq_len %d, prompt %d tokens, longest item %d tokens); K = %d",
                 first + b, nr, m->cfg.max_seq_len, lens[b], t->max_depth, K);
        for (int k = 0; k < K; k++) {
            out_items[(size_t)b * K + k] = r[k].item;
            out_scores[(size_t)b * K + k] = (float)r[k].score;
        }
    }
    free(r);
    for (int i = 0; i < rc.n_hits; i++) free(rc.hits[i].tokens);
    free(rc.hits);
    gen_output_free(out, B);
    free(out);
}

void recommend_topk(Model *m, const Trie *t, const int *const *prompts, const int *lens, int n, int K, int W,
                    int *out_items, float *out_scores) {
    if (K < 1) fail("recommend: K must be >= 1 (got %d)", K);
    if (K > t->n_items) fail("recommend: K = %d is larger than the catalogue (%d items)", K, t->n_items);
    if (W < K) fail("recommend: the beam width (%d) must be >= K (%d)", W, K);
    const int V = m->cfg.vocab_size;
    for (int e = 0; e < t->n_edges; e++)
        if (t->child_tok[e] >= V)
            fail("recommend: the catalogue trie has token id %d, outside the model's vocabulary (%d)", t->child_tok[e], V);
    int chunk = REC_MAX_ROWS / W;
    if (chunk < 1) chunk = 1;
    for (int i = 0; i < n; i += chunk) {
        const int B = n - i < chunk ? n - i : chunk;
        recommend_batch(m, t, prompts + i, lens + i, B, K, W, i, out_items + (size_t)i * K, out_scores + (size_t)i * K);
    }
}

void recommend_next_best(Model *m, const Trie *t, const int *const *prompts, const int *lens, int n,
                         const int *avoid, int W, int *out_items, float *out_scores) {
    if (t->n_items < 2) fail("recommend: the next-best item needs a catalogue of at least 2 items (got %d)", t->n_items);
    if (W < 2) W = 2;
    int *items = xmalloc((size_t)n * 2 * sizeof(int));
    float *scores = xmalloc((size_t)n * 2 * sizeof(float));
    recommend_topk(m, t, prompts, lens, n, 2, W, items, scores);
    for (int i = 0; i < n; i++) {
        const int k = avoid && avoid[i] >= 0 && items[2 * i] == avoid[i] ? 1 : 0;
        out_items[i] = items[2 * i + k];
        out_scores[i] = scores[2 * i + k];
    }
    free(items); free(scores);
}

void recommend_share(const Trie *t, const int *lens, int n, int W, int *lo, int *hi) {
    double item_tokens = 1;
    if (t && t->n_items > 0) {
        long sum = 0;
        for (int i = 0; i < t->n_items; i++) sum += t->item_len[i];
        item_tokens = (double)sum / t->n_items;
    }
    double *cost = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int i = 0; i < n; i++) cost[i] = lens[i] + W * item_tokens;
    dist_share_cost(dist_world(), cost, n, lo, hi);
    free(cost);
}
