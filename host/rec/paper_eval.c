// The paper's evaluation protocol (paper_eval.h, docs/eval.md "Paper mode").
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "paper_eval.h"
#include "grounding.h"
#include "io/encoder/encoder_file.h"
#include "base/dist/dist.h"
#include "base/filesum.h"
#include "base/progress.h"
#include "kernels/errors.h"

#define PAPER_RECIPE "sprec-paper-1: the catalogue titles (catalogue/titles) embedded by the sentence encoder: " \
                     "[CLS] wordpieces [SEP] truncated to its max_seq_length, mean of the last hidden state over " \
                     "the tokens, no normalisation"

char *paper_title(const char *text, size_t len) {
    const char *end = text + len, *q = memchr(text, '"', len), *s, *e;
    if (q) {   // the reference's re.findall(r'"([^"]*)"?'): the first quote's content, closing quote optional
        s = q + 1;
        e = memchr(s, '"', (size_t)(end - s));
        if (!e) e = end;
    } else {   // else the first line
        s = text;
        e = memchr(text, '\n', len);
        if (!e) e = end;
    }
    if (e == s) { s = "NAN"; e = s + 3; }
    char *out = xmalloc((size_t)(e - s) + 1);
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return out;
}

// length of the valid UTF-8 sequence at p (at most n bytes), 0 when invalid
static int utf8_len(const unsigned char *p, size_t n) {
    const unsigned c = p[0];
    const int k = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
                : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (k < 0 || (size_t)k >= n) return 0;
    for (int j = 1; j <= k; j++) if ((p[j] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] >= 0x90)) return 0;   // overlong, surrogate, above U+10FFFF
    return k + 1;
}

char *paper_text(const Tokenizer *tok, const int *ids, int n) {
    size_t len;
    char *raw = tokenizer_decode(tok, ids, n, 1, &len);   // as decode(skip_special_tokens=True)
    char *out = xmalloc(3 * len + 1), *o = out;          // each bad byte grows to 3 (EF BF BD)
    for (size_t i = 0; i < len;) {
        const int k = utf8_len((const unsigned char *)raw + i, len - i);
        if (k) { memcpy(o, raw + i, (size_t)k); o += k; i += (size_t)k; }
        else { memcpy(o, "\xef\xbf\xbd", 3); o += 3; i++; }
    }
    *o = '\0';
    free(raw);
    return out;
}

// The cache key: the encoder (config, weights, tokenizer, backend) and every title.
static uint64_t paper_fingerprint(const Encoder *enc, const RecData *d) {
    uint64_t parts[3] = {encoder_fingerprint(enc), xxh64(PAPER_RECIPE, strlen(PAPER_RECIPE)), (uint64_t)d->n_items};
    for (int i = 0; i < d->n_items; i++) {
        const uint64_t two[2] = {parts[2], xxh64(d->titles[i], strlen(d->titles[i]) + 1)};
        parts[2] = xxh64(two, sizeof two);
    }
    return xxh64(parts, sizeof parts);
}

void paper_create(PaperEval *p, Model *m, const PaperOpts *o, const RecData *d, const char *cache_path) {
    memset(p, 0, sizeof *p);
    if (!o->encoder || !*o->encoder) fail("eval mode paper needs a sentence encoder: set [eval] encoder (docs/eval.md)");
    if (m->tokenizer_json)
        p->tok = tokenizer_from_json(m->tokenizer_json, m->tokenizer_json_len, m->tokenizer_config_json,
                                     m->tokenizer_config_json_len, "the model's tokenizer");
    else if (o->tokenizer && *o->tokenizer)
        p->tok = recdata_tokenizer(o->tokenizer);
    else
        fail("eval mode paper decodes the generations to text: the model checkpoint has no tokenizer and [data] "
             "tokenizer is not set");
    p->eos_id = tokenizer_eos_id(p->tok);
    if (p->eos_id >= m->cfg.vocab_size) p->eos_id = -1;
    encoder_load(o->encoder, &p->enc);
    const Backend *be = m->be;   // the encoder's ops are CPU-only for now: elsewhere it runs on the CPU
    if (!be->layernorm_fwd || !be->gelu_fwd || !be->attention_bidir_fwd || be->act_bytes != sizeof(float))
        be = backend_select("cpu");
    encoder_to_device(&p->enc, be);
    const int n = d->n_items, C = p->enc.cfg.dim;
    p->n_items = n;
    p->dim = C;
    p->fingerprint = paper_fingerprint(&p->enc, d);
    char group[64];
    snprintf(group, sizeof group, "grounding/paper-%016llx", (unsigned long long)p->fingerprint);
    const int root = dist_is_root(dist_world());
    const double t0 = now_seconds();
    if (cache_path && (p->emb = grounding_cache_read(cache_path, group, n, C))) {
        p->cached = 1;
        if (root) fprintf(stderr, "paper eval: catalogue embeddings (%d items x %d) reused from the cache %s:/%s\n", n,
                          C, cache_path, group);
        return;
    }
    p->emb = xmalloc((size_t)n * C * sizeof(float));
    encoder_embed_texts(&p->enc, (const char *const *)d->titles, n, p->emb);
    char took[32];
    fmt_duration(now_seconds() - t0, took, sizeof took);
    if (root && !cache_path)
        fprintf(stderr, "paper eval: catalogue embeddings (%d items x %d) computed in %s (not cached)\n", n, C, took);
    else if (root && grounding_cache_write(cache_path, group, p->emb, n, C, p->fingerprint, be->name,
                                           "catalogue embeddings for sprec eval's paper mode (docs/eval.md): row i = "
                                           "item i's title embedded by the sentence encoder identified by "
                                           "'fingerprint'", PAPER_RECIPE))
        fprintf(stderr, "paper eval: catalogue embeddings (%d items x %d) computed in %s and cached in %s:/%s\n", n, C,
                took, cache_path, group);
}

void paper_free(PaperEval *p) {
    encoder_free(&p->enc);
    free(p->emb);
    if (p->tok) tokenizer_free(p->tok);
    memset(p, 0, sizeof *p);
}

void paper_topk(Model *m, PaperEval *p, const int *const *prompts, const int *lens, int n, int K, int *out_items,
                float *out_dist, GenOutput *gen, char **titles) {
    if (n < 1) return;
    GenOpts o;
    gen_opts_default(&o);
    o.max_new_tokens = PAPER_MAX_NEW_TOKENS;
    o.eos_id = p->eos_id;
    GenOutput *out = gen ? gen : xcalloc((size_t)n, sizeof(GenOutput));
    generate(m, prompts, lens, n, &o, out);
    char **t = xmalloc((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) {
        const GenHyp *h = &out[i].hyps[0];
        check(out[i].n == 1, "greedy generation of prompt %d returned %d hypotheses", i, out[i].n);
        char *text = paper_text(p->tok, h->tokens, h->n);
        t[i] = paper_title(text, strlen(text));
        free(text);
    }
    float *q = xmalloc((size_t)n * p->dim * sizeof(float));
    encoder_embed_texts(&p->enc, (const char *const *)t, n, q);
    for (int i = 0; i < n; i++)
        grounding_rank(p->emb, p->n_items, p->dim, q + (size_t)i * p->dim, K, out_items + (size_t)i * K,
                       out_dist + (size_t)i * K);
    for (int i = 0; i < n; i++) {
        if (titles) titles[i] = t[i];
        else free(t[i]);
    }
    free(t); free(q);
    if (!gen) { gen_output_free(out, n); free(out); }
}
