// sprec bench --mode generate: catalogue-constrained decoding over a random catalogue.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench.h"
#include "base/progress.h"
#include "rec/recommend.h"
#include "kernels/errors.h"

// ---- generate ------------------------------------------------------------------------------

static const int *const *cmp_seqs;
static const int *cmp_lens;
static int cmp_title(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    const int n = cmp_lens[i] < cmp_lens[j] ? cmp_lens[i] : cmp_lens[j];
    int d = memcmp(cmp_seqs[i], cmp_seqs[j], (size_t)n * sizeof(int));
    if (!d) d = (cmp_lens[i] > cmp_lens[j]) - (cmp_lens[i] < cmp_lens[j]);
    return d ? d : (i > j) - (i < j);
}

// Catalogue of `items` random titles: TITLE_MIN..TITLE_MAX tokens from
// 1..V-2 then the end token V-1 (the closing `"\n` of a real title); a
// duplicate of an earlier title is dropped. P prompts of Lp tokens from 1..V-2.
// One splitmix64 stream (rng.h), seed 12345, as bench/torch_cuda.py draws it,
// so both sides build the same catalogue and prompts.
int make_catalogue(int items, int V, int P, int Lp, int ***seqs_out, int **lens_out, int ***prompts_out) {
    uint64_t s = 12345;
    int **seqs = xmalloc((size_t)items * sizeof(int *)), *lens = xmalloc((size_t)items * sizeof(int));
    for (int i = 0; i < items; i++) {
        lens[i] = TITLE_MIN + (int)(splitmix64(&s) % (TITLE_MAX - TITLE_MIN + 1)) + 1;
        seqs[i] = xmalloc((size_t)lens[i] * sizeof(int));
        for (int k = 0; k < lens[i] - 1; k++) seqs[i][k] = 1 + (int)(splitmix64(&s) % (uint64_t)(V - 2));
        seqs[i][lens[i] - 1] = V - 1;
    }
    int **prompts = xmalloc((size_t)P * sizeof(int *));
    for (int p = 0; p < P; p++) {
        prompts[p] = xmalloc((size_t)Lp * sizeof(int));
        for (int k = 0; k < Lp; k++) prompts[p][k] = 1 + (int)(splitmix64(&s) % (uint64_t)(V - 2));
    }
    // drop later duplicates, keeping generation order
    int *ord = xmalloc((size_t)items * sizeof(int));
    char *dup = xcalloc((size_t)items, 1);
    for (int i = 0; i < items; i++) ord[i] = i;
    cmp_seqs = (const int *const *)seqs;
    cmp_lens = lens;
    qsort(ord, (size_t)items, sizeof(int), cmp_title);
    for (int k = 1; k < items; k++) {
        const int a = ord[k - 1], b = ord[k];
        if (lens[a] == lens[b] && !memcmp(seqs[a], seqs[b], (size_t)lens[a] * sizeof(int)))
            dup[b] = 1, ord[k] = a;   // b > a (ties sort by index); keep comparing with the first copy
    }
    int n = 0;
    for (int i = 0; i < items; i++) {
        if (dup[i]) { free(seqs[i]); continue; }
        seqs[n] = seqs[i];
        lens[n++] = lens[i];
    }
    free(ord); free(dup);
    *seqs_out = seqs;
    *lens_out = lens;
    *prompts_out = prompts;
    return n;
}

// P prompts decoded to one catalogue item each: constrained greedy (beam 1)
// and constrained beam search of width --beams (recommend_topk, K = 1): a
// "step" decodes all P prompts; tokens = the output tokens (the returned
// titles' lengths, end token included), whatever the beam width. Under several
// ranks the prompts are shared as the SPRec loop's negatives are (by expected
// cost, recommend_share) and every rank's items gathered: the step ends there.
// FLOPs (an estimate, documented in bench/README.md):
//   2 * linear_params * (P * prompt_len + beams * output tokens), attention not counted.
void bench_generate(Bench *bn, int P, int W, int items, int Lp) {
    const Backend *be = bn->be;
    ModelConfig c = bn->c;
    if (c.vocab_size < 3) fail("sprec bench: --mode generate needs --vocab >= 3");
    c.max_seq_len = Lp + TITLE_MAX + 2 > bn->T ? Lp + TITLE_MAX + 2 : bn->T;
    int **seqs, *lens, **prompts;
    const int n_items = make_catalogue(items, c.vocab_size, P, Lp, &seqs, &lens, &prompts);
    Trie t;
    trie_build(&t, (const int *const *)seqs, lens, n_items, NULL);
    Model m;
    model_create(&m, &c, be);
    model_init_random(&m, 1, 0.02f);
    int *plens = xmalloc((size_t)P * sizeof(int)), *out = xmalloc((size_t)P * sizeof(int));
    float *scores = xmalloc((size_t)P * sizeof(float));
    for (int p = 0; p < P; p++) plens[p] = Lp;
    double *times = xmalloc((size_t)bn->steps * sizeof(double));
    const Dist *d = dist_world();
    for (int pass = 0; pass < 2; pass++) {
        const int beams = pass ? W : 1;
        if (pass && W == 1) break;
        double out_tokens = 0;
        int lo, hi;
        recommend_share(&t, plens, P, beams, &lo, &hi);
        RankMark before = rank_mark();
        for (int s = 0; s < bn->warmup + bn->steps; s++) {
            if (s == bn->warmup) before = rank_mark();
            double t0 = now_seconds();
            if (hi > lo) recommend_topk(&m, &t, (const int *const *)prompts + lo, plens + lo, hi - lo, 1, beams, out + lo, scores + lo);
            dist_gather(d, out, sizeof(int), lo, hi, P);
            dist_gather(d, scores, sizeof(float), lo, hi, P);
            if (s >= bn->warmup) times[s - bn->warmup] = now_seconds() - t0;
        }
        for (int p = 0; p < P; p++) out_tokens += t.item_len[out[p]];
        const Stats st = stats_of(times, bn->steps);
        char *ranks = rank_fields(bn, &before, bn->steps, bn->steps, st.mean);
        const double flops = 2 * linear_params(&c) * ((double)P * Lp + (double)beams * out_tokens);
        char name[300];
        if (beams == 1) snprintf(name, sizeof name, "%s_greedy", bn->name);
        else snprintf(name, sizeof name, "%s_beam%d", bn->name, beams);
        Bench b2 = *bn;
        b2.name = name;
        print_head(&b2);
        printf("\"prompts\": %d, \"prompt_len\": %d, \"beams\": %d, \"items\": %d, \"trie_nodes\": %d, "
               "\"prompts_per_s\": %.2f, %s, ", P, Lp, beams, n_items, t.n_nodes, P / st.median, ranks);
        print_tail(be, &st, out_tokens, flops, -1, -1);
        free(ranks);
    }
    free(times); free(plens); free(out); free(scores);
    for (int i = 0; i < n_items; i++) free(seqs[i]);
    for (int p = 0; p < P; p++) free(prompts[p]);
    free(seqs); free(lens); free(prompts);
    trie_free(&t);
    model_free(&m);
}
