// Greedy and seeded sampling over a row of logits. Filtering works on a list
// of candidate ids sorted by logit (ties to the lower id), so the same logits
// and the same random number always give the same token.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "sampler.h"
#include "kernels/errors.h"

int sample_argmax(const float *logits, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

double logsumexp(const float *logits, int V) {
    float mx = logits[sample_argmax(logits, V)];
    if (mx == -INFINITY) return -INFINITY;
    double s = 0.0;
    for (int v = 0; v < V; v++) s += exp((double)logits[v] - mx);
    return mx + log(s);
}

void mask_allowed(float *logits, int V, const int *allowed, int n, unsigned char *mark) {
    for (int i = 0; i < n; i++) if (allowed[i] >= 0 && allowed[i] < V) mark[allowed[i]] = 1;
    for (int v = 0; v < V; v++) if (!mark[v]) logits[v] = -INFINITY;
    for (int i = 0; i < n; i++) if (allowed[i] >= 0 && allowed[i] < V) mark[allowed[i]] = 0;
}

// "a ranks before b": larger value, then lower id
static int ranks_before(const float *x, int a, int b) { return x[a] > x[b] || (x[a] == x[b] && a < b); }

// Min-heap of ids ordered by rank (the worst kept candidate at the root).
static void sift_down(int *h, int n, int i, const float *x) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ranks_before(x, h[w], h[l])) w = l;
        if (r < n && ranks_before(x, h[w], h[r])) w = r;
        if (w == i) return;
        int t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

int top_n(const float *x, int V, int n, int *out) {
    int k = 0;
    for (int v = 0; v < V; v++) {
        if (x[v] == -INFINITY) continue;
        if (k < n) {                       // grow: insert and sift up
            int i = k++;
            out[i] = v;
            while (i > 0 && ranks_before(x, out[(i - 1) / 2], out[i])) {
                int p = (i - 1) / 2, t = out[p]; out[p] = out[i]; out[i] = t;
                i = p;
            }
        } else if (n > 0 && ranks_before(x, v, out[0])) {
            out[0] = v;
            sift_down(out, k, 0, x);
        }
    }
    // heap sort in place: repeatedly move the worst to the end
    for (int end = k - 1; end > 0; end--) {
        int t = out[0]; out[0] = out[end]; out[end] = t;
        sift_down(out, end, 0, x);
    }
    return k;
}

int sample_token(const float *logits, int V, const SamplerCfg *cfg, Rng *rng, float *z, int *ids) {
    if (cfg->temperature <= 0.0f) return sample_argmax(logits, V);
    const double u = rng_uniform(rng);     // drawn first: one number per token, whatever the filters
    return sample_token_u(logits, V, cfg, u, z, ids);
}

int sample_topk_decided(const float *best, int cnt, int want, int top_k, float temperature) {
    if (cnt < want) return 1;
    const float inv_t = 1.0f / temperature, zmin = best[cnt - 1] * inv_t;   // as sample_token scales
    // 1/T a power of two (T = 1, 0.5, 2, ...): z = x / T is exact (normal values), so z ranks
    // as x does, ties included, and the fetch (x desc, id asc) already is the top of the row
    int e;
    if (frexpf(inv_t, &e) == 0.5f && isnormal(zmin) && isnormal(best[0] * inv_t)) return 1;
    int above = 0;
    for (int i = 0; i < cnt; i++) above += best[i] * inv_t > zmin;
    return above >= top_k;
}

int sample_token_sparse(const int *ids, const float *vals, int m, const SamplerCfg *cfg, double u, float *z,
                        int *iscratch) {
    // the row's other entries are -inf: they never rank, weigh 0 in every sum
    // and are skipped by the draw, so the compact row (ids ascending: ties to
    // the lower index are ties to the lower id) gives the same token, except
    // for an all -inf row, whose argmax is token 0
    int finite = 0;
    for (int i = 0; i < m; i++) finite |= vals[i] != -INFINITY;
    if (!finite) return 0;
    if (cfg->temperature <= 0.0f) return ids[sample_argmax(vals, m)];
    return ids[sample_token_u(vals, m, cfg, u, z, iscratch)];
}

int sample_token_u(const float *logits, int V, const SamplerCfg *cfg, double u, float *z, int *ids) {
    if (cfg->temperature <= 0.0f) return sample_argmax(logits, V);
    const float inv_t = 1.0f / cfg->temperature;
    for (int v = 0; v < V; v++) z[v] = logits[v] * inv_t;
    const int filtered = cfg->top_k > 0 || cfg->top_p < 1.0f;
    int n = V;
    if (filtered) {
        // candidates best first; top-k bounds the list, top-p then cuts it
        n = top_n(z, V, cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V, ids);
        if (n == 0) return sample_argmax(logits, V);
    }
    const float mx = filtered ? z[ids[0]] : z[sample_argmax(z, V)];
    if (mx == -INFINITY) return sample_argmax(logits, V);
    double total = 0.0;
    for (int i = 0; i < n; i++) total += exp((double)z[filtered ? ids[i] : i] - mx);
    if (filtered && cfg->top_p < 1.0f) {
        // smallest prefix whose probability reaches top_p (at least one token)
        double acc = 0.0, need = (double)cfg->top_p * total;
        int keep = 0;
        while (keep < n) {
            acc += exp((double)z[ids[keep]] - mx);
            keep++;
            if (acc >= need) break;
        }
        n = keep;
        total = acc;
    }
    const double target = u * total;
    double acc = 0.0;
    int last = filtered ? ids[0] : 0;
    for (int i = 0; i < n; i++) {
        const int v = filtered ? ids[i] : i;
        const double p = exp((double)z[v] - mx);
        if (p == 0.0) continue;
        last = v;
        acc += p;
        if (acc > target) return v;
    }
    return last;   // rounding left target at the very end: the last token with mass
}
