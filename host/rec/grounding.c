// Unconstrained recommendation grounded by L2 distance of mean-pooled hidden
// states (see grounding.h, docs/eval.md "Unconstrained mode").
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "grounding.h"
#include "base/atomic_write.h"
#include "base/dist/dist.h"
#include "base/h5io.h"
#include "base/progress.h"
#include "kernels/errors.h"
#include "model/lora.h"

#define GROUNDING_RECIPE "sprec-grounding-1: mean over all positions of the final-normed hidden states " \
                         "(last_hidden_state) of the title tokens run on their own, no BOS"
#define EMBED_BATCH 64   // sequences per forward

// ---- embeddings ------------------------------------------------------------

void grounding_embed(Model *m, const int *const *seqs, const int *lens, int n, float *out) {
    const int C = m->cfg.dim, ctx = m->cfg.max_seq_len;
    // a model with activation buffers (a trainer's) keeps them: use at most its
    // batch rows, and free them if a longer sequence made the forward grow them
    const int had = m->acts_ready, capB = m->acts.B, capT = m->acts.T;
    const int GB = had && capB < EMBED_BATCH ? capB : EMBED_BATCH;
    int T = 1;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1) fail("grounding: sequence %d is empty", i);
        if (lens[i] > ctx) fail("grounding: a title of %d tokens exceeds the model's context (%d)", lens[i], ctx);
        T = lens[i] > T ? lens[i] : T;
    }
    int *tokens = xmalloc((size_t)GB * T * sizeof(int)), *blens = xmalloc((size_t)GB * sizeof(int));
    float *h = xmalloc((size_t)GB * T * C * sizeof(float));
    double *sum = xmalloc((size_t)C * sizeof(double));
    for (int i0 = 0; i0 < n; i0 += GB) {
        const int nb = n - i0 < GB ? n - i0 : GB;
        int bt = 1;
        for (int b = 0; b < nb; b++) bt = lens[i0 + b] > bt ? lens[i0 + b] : bt;
        for (int b = 0; b < nb; b++) {
            blens[b] = lens[i0 + b];
            for (int t = 0; t < bt; t++) tokens[b * bt + t] = t < blens[b] ? seqs[i0 + b][t] : 0;
        }
        const Batch batch = {.B = nb, .T = bt, .tokens = tokens, .mask = NULL, .lengths = blens};
        model_hidden(m, &batch, h);   // h[nb, bt, C]
        for (int b = 0; b < nb; b++) {
            memset(sum, 0, (size_t)C * sizeof(double));
            for (int t = 0; t < blens[b]; t++) {
                const float *x = h + ((size_t)b * bt + t) * C;
                for (int c = 0; c < C; c++) sum[c] += x[c];
            }
            float *o = out + (size_t)(i0 + b) * C;
            for (int c = 0; c < C; c++) o[c] = (float)(sum[c] / blens[b]);
        }
    }
    free(tokens); free(blens); free(h); free(sum);
    if (!had || m->acts.B != capB || m->acts.T != capT) acts_free(m);
}

int grounding_title_len(const RecData *d, int i) {
    const int n = d->item_tok_offsets[i + 1] - d->item_tok_offsets[i];
    return n > 1 ? n - 1 : n;
}

// ---- fingerprint -------------------------------------------------------------

typedef struct { uint64_t h, n; } Fp;

static void fp_word(Fp *f, uint64_t w) {
    // each step is a bijection of h for a fixed word, so any one changed word
    // changes the result
    f->h ^= w * 0x9E3779B97F4A7C15ull;
    f->h = ((f->h << 29) | (f->h >> 35)) * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
}

static void fp_bytes(Fp *f, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        fp_word(f, w);
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, b + i, n - i);
        fp_word(f, w ^ ((uint64_t)(n - i) << 56));
    }
    fp_word(f, (uint64_t)n);   // separates consecutive fields
    f->n += n;
}

static void fp_str(Fp *f, const char *s) { fp_bytes(f, s, strlen(s)); }

// a device buffer of n floats, downloaded in chunks
static void fp_device(Fp *f, const Backend *be, const float *dev, size_t n) {
    const size_t chunk = (size_t)1 << 22;
    float *buf = xmalloc((n < chunk ? n : chunk) * sizeof(float));
    for (size_t i = 0; i < n; i += chunk) {
        const size_t k = n - i < chunk ? n - i : chunk;
        be->download(buf, dev + i, k * sizeof(float));
        fp_bytes(f, buf, k * sizeof(float));
    }
    free(buf);
}

uint64_t grounding_fingerprint(Model *m, const RecData *d) {
    Fp f = {0x5350524543475244ull, 0};   // "SPRECGRD"
    fp_str(&f, GROUNDING_RECIPE);
    fp_str(&f, m->be->name);
    const ModelConfig *c = &m->cfg;
    const int ints[] = {c->vocab_size, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim,
                        c->max_seq_len, c->tie_embeddings, c->qkv_bias, c->rope_scaling, c->rope_original_max_pos};
    const float flts[] = {c->rope_theta, c->rms_eps, c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor};
    fp_bytes(&f, ints, sizeof ints);
    fp_bytes(&f, flts, sizeof flts);
    if (c->rope_scaling == ROPE_FREQS) fp_bytes(&f, c->rope_freqs, (size_t)(c->head_dim / 2) * sizeof(float));
    fp_device(&f, m->be, m->params, m->numel);
    if (m->lora) {
        const Lora *lo = m->lora;
        const int li[] = {lo->cfg.rank, (int)lo->cfg.targets};
        fp_str(&f, "lora");
        fp_bytes(&f, li, sizeof li);
        fp_bytes(&f, &lo->scale, sizeof lo->scale);
        fp_device(&f, m->be, lo->params, lo->numel);
    }
    fp_bytes(&f, d->item_tok_offsets, (size_t)(d->n_items + 1) * sizeof(int));
    fp_bytes(&f, d->item_tok, (size_t)d->item_tok_offsets[d->n_items] * sizeof(int));
    uint64_t z = f.h ^ f.n;   // splitmix64 finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// ---- the cache in the dataset file ---------------------------------------------

float *grounding_cache_read(const char *path, const char *group, int n_items, int dim) {
    char name[96];
    snprintf(name, sizeof name, "%s/embeddings", group);
    hid_t f = h5_open_read(path);
    float *e = NULL;
    if (h5_exists(f, name)) {
        long dims[8], want[2] = {n_items, dim};
        if (h5_shape(f, path, name, dims) == 2 && dims[0] == n_items && dims[1] == dim)
            e = h5_read_f32(f, path, name, 2, want);
        else
            fprintf(stderr, "grounding: %s: /%s does not hold [%d, %d] floats: ignored\n", path, name, n_items, dim);
    }
    h5_close(f);
    return e;
}

// dst: a new file (O_EXCL) with src's bytes; 0 with errno set on failure
static int copy_file(const char *src, const char *dst, mode_t mode) {
    int in = open(src, O_RDONLY), out = in < 0 ? -1 : open(dst, O_WRONLY | O_CREAT | O_EXCL, mode & 07777);
    int ok = in >= 0 && out >= 0;
    char *buf = xmalloc(1 << 20);
    while (ok) {
        ssize_t r = read(in, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { ok = r == 0; break; }
        for (ssize_t w = 0; w < r && ok;) {
            ssize_t k = write(out, buf + w, (size_t)(r - w));
            if (k < 0 && errno == EINTR) continue;
            ok = k > 0;
            w += k > 0 ? k : 0;
        }
    }
    const int err = errno;
    free(buf);
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0) ok = 0;
    if (!ok) errno = err ? err : EIO;
    return ok;
}

// Never modifies the dataset file in place: copy it to PATH.grounding-PID.tmp,
// add the group there, and replace the original by the copy
// (base/atomic_write.h) if the original is still the file that was copied.
int grounding_cache_write(const char *path, const char *group, const float *emb, int n_items, int dim,
                          uint64_t fp, const char *backend, const char *what, const char *recipe) {
    char real[PATH_MAX], dir[PATH_MAX];
    if (!realpath(path, real)) { fprintf(stderr, "grounding: cannot resolve %s: not cached\n", path); return 0; }
    snprintf(dir, sizeof dir, "%s", real);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = 0; else *slash = 0;
    struct stat st0, st1;
    if (stat(real, &st0) != 0) { fprintf(stderr, "grounding: cannot stat %s: not cached\n", path); return 0; }
    // read-only: no write permission for us, no write bit at all (chmod a-w,
    // which root's access() ignores), or a folder we cannot create the copy in
    if (access(real, W_OK) != 0 || (st0.st_mode & 0222) == 0 || access(dir, W_OK) != 0) {
        fprintf(stderr, "grounding: %s is read-only (or its folder is): catalogue embeddings computed without "
                "caching\n", path);
        return 0;
    }
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".grounding-%ld.tmp", (long)getpid());
    AtomicFile *copy = atomic_begin(real, suffix);
    unlink(copy->tmp);
    if (!copy_file(real, copy->tmp, st0.st_mode)) {
        fprintf(stderr, "grounding: cannot copy %s to %s (%s): catalogue embeddings not cached\n", path, copy->tmp,
                strerror(errno));
        atomic_abandon(copy);
        return 0;
    }
    hid_t f = h5_open_rw(copy->tmp);
    if (!h5_exists(f, group)) {   // (another process may have cached this model since we read the file)
        char name[96], hex[32];
        snprintf(name, sizeof name, "%s/embeddings", group);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fp);
        const long dims[2] = {n_items, dim};
        h5_write_f32(f, name, 2, dims, emb);   // creates /grounding and the group
        hid_t g = h5_group_open(f, copy->tmp, group);
        h5_attr_write_str(g, "what", what);
        h5_attr_write_str(g, "recipe", recipe);
        h5_attr_write_str(g, "fingerprint", hex);
        h5_attr_write_str(g, "backend", backend);
        h5_attr_write_i64(g, "n_items", n_items);
        h5_attr_write_i64(g, "dim", dim);
        h5_group_close(g);
    }
    h5_flush(f);
    h5_close(f);
    // the original must still be the file that was copied (nobody replaced or changed it meanwhile)
    if (stat(real, &st1) != 0 || st1.st_dev != st0.st_dev || st1.st_ino != st0.st_ino ||
        st1.st_size != st0.st_size || st1.st_mtim.tv_sec != st0.st_mtim.tv_sec ||
        st1.st_mtim.tv_nsec != st0.st_mtim.tv_nsec) {
        fprintf(stderr, "grounding: %s changed while the cache was written: not cached\n", path);
        atomic_abandon(copy);
        return 0;
    }
    atomic_commit(copy);
    return 1;
}

// ---- setup -------------------------------------------------------------------

void grounding_create(Grounding *g, Model *m, const RecData *d, const char *cache_path) {
    memset(g, 0, sizeof *g);
    if (!d->tokenized) fail("grounding needs the catalogue's token ids (a dataset prepared with a tokenizer)");
    const int V = m->cfg.vocab_size, C = m->cfg.dim, n = d->n_items;
    g->n_items = n;
    g->dim = C;
    g->end_tok = xcalloc((size_t)V, 1);
    const int **seqs = xmalloc((size_t)n * sizeof(int *));
    int *lens = xmalloc((size_t)n * sizeof(int)), longest = 0;
    for (int i = 0; i < n; i++) {
        const int *s = d->item_tok + d->item_tok_offsets[i], len = d->item_tok_offsets[i + 1] - d->item_tok_offsets[i];
        if (len < 1) fail("catalogue item %d ('%s') has no tokens", i, d->titles[i]);
        for (int j = 0; j < len; j++)
            if (s[j] < 0 || s[j] >= V)
                fail("catalogue item %d ('%s') has token id %d outside the model's vocabulary (%d): was the dataset "
                     "prepared with this model's tokenizer?", i, d->titles[i], s[j], V);
        g->end_tok[s[len - 1]] = 1;
        longest = len > longest ? len : longest;
        seqs[i] = s;
        lens[i] = grounding_title_len(d, i);
    }
    g->max_new_tokens = longest + GROUNDING_MARGIN;
    g->eos_id = -1;
    if (m->tokenizer_json) {
        g->tok = tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, m->tokenizer_config_json,
                                     m->tokenizer_config_json_len, "the model's tokenizer");
        g->eos_id = tokenizer_eos_id(g->tok);
        if (g->eos_id >= V) g->eos_id = -1;
    }

    const double t0 = now_seconds();
    g->fingerprint = grounding_fingerprint(m, d);
    char group[64];
    snprintf(group, sizeof group, "grounding/%016llx", (unsigned long long)g->fingerprint);
    const int root = dist_is_root(dist_world());   // rank 0 alone writes the cache and speaks
    if (cache_path && (g->emb = grounding_cache_read(cache_path, group, n, C))) {
        g->cached = 1;
        if (root) fprintf(stderr, "grounding: catalogue embeddings (%d items x %d) reused from the cache %s:/%s\n", n, C,
                cache_path, group);
    } else {
        g->emb = xmalloc((size_t)n * C * sizeof(float));
        grounding_embed(m, seqs, lens, n, g->emb);
        char took[32];
        fmt_duration(now_seconds() - t0, took, sizeof took);
        if (root && !cache_path)
            fprintf(stderr, "grounding: catalogue embeddings (%d items x %d) computed in %s (not cached)\n", n, C, took);
        else if (root && grounding_cache_write(cache_path, group, g->emb, n, C, g->fingerprint, m->be->name,
                                               "catalogue embeddings for sprec eval's unconstrained mode (docs/eval.md): "
                                               "row i = item i's title tokens (catalogue/completion_tokens without the "
                                               "last, line-ending token) embedded by the model identified by "
                                               "'fingerprint'", GROUNDING_RECIPE))
            fprintf(stderr, "grounding: catalogue embeddings (%d items x %d) computed in %s and cached in %s:/%s\n",
                    n, C, took, cache_path, group);
    }
    free(seqs); free(lens);
}

void grounding_free(Grounding *g) {
    free(g->emb);
    free(g->end_tok);
    if (g->tok) tokenizer_free(g->tok);
    memset(g, 0, sizeof *g);
}

// ---- ranking -------------------------------------------------------------------

typedef struct { double d2; int item; } Near;

static int near_cmp(const void *pa, const void *pb) {
    const Near *a = pa, *b = pb;
    if (a->d2 != b->d2) return a->d2 < b->d2 ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

void grounding_rank(const float *emb, int n_items, int dim, const float *q, int K, int *out_items, float *out_dist) {
    if (K < 1 || K > n_items) fail("grounding: K = %d outside [1, %d]", K, n_items);
    Near *r = xmalloc((size_t)n_items * sizeof(Near));
    for (int i = 0; i < n_items; i++) {
        const float *e = emb + (size_t)i * dim;
        double s = 0;
        for (int c = 0; c < dim; c++) {
            const double t = (double)e[c] - (double)q[c];
            s += t * t;
        }
        r[i] = (Near){s, i};
    }
    qsort(r, (size_t)n_items, sizeof *r, near_cmp);
    for (int k = 0; k < K; k++) {
        out_items[k] = r[k].item;
        out_dist[k] = (float)sqrt(r[k].d2);
    }
    free(r);
}

static int end_stop(void *ctx, int seq, const int *gen, int n) {
    (void)seq;
    return ((const Grounding *)ctx)->end_tok[gen[n - 1]];
}

void grounding_topk(Model *m, const Grounding *g, const int *const *prompts, const int *lens, int n, int K,
                    int *out_items, float *out_dist, GenOutput *gen) {
    if (n < 1) return;
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = g->max_new_tokens;
    o.eos_id = g->eos_id;
    o.stop = end_stop;
    o.stop_ctx = (void *)g;
    GenOutput *out = gen ? gen : xcalloc((size_t)n, sizeof(GenOutput));
    generate(m, prompts, lens, n, &o, out);
    // the title tokens: without the end token (line end or EOS) unless that is all there is
    const int **ts = xmalloc((size_t)n * sizeof(int *));
    int *tl = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        const GenHyp *h = &out[i].hyps[0];
        check(out[i].n == 1 && h->n >= 1, "greedy generation of prompt %d returned nothing", i);
        ts[i] = h->tokens;
        tl[i] = (h->finish == GEN_STOP || h->finish == GEN_EOS) && h->n > 1 ? h->n - 1 : h->n;
    }
    float *q = xmalloc((size_t)n * g->dim * sizeof(float));
    grounding_embed(m, ts, tl, n, q);
    for (int i = 0; i < n; i++)
        grounding_rank(g->emb, g->n_items, g->dim, q + (size_t)i * g->dim, K, out_items + (size_t)i * K,
                       out_dist + (size_t)i * K);
    free(q); free(ts); free(tl);
    if (!gen) { gen_output_free(out, n); free(out); }
}
