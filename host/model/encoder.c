// The BERT sentence encoder (encoder.h): parameter table, tokenization with
// truncation, the forward pass on a Backend and mean pooling.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "encoder.h"
#include "kernels/errors.h"
#include "base/filesum.h"

#define ENC_BATCH 64   // sequences per forward (sorted by length, so little padding)

void encoder_config_validate(const EncoderConfig *c, const char *where) {
    if (c->vocab_size < 1 || c->dim < 1 || c->n_layers < 1 || c->n_heads < 1 || c->ffn_dim < 1 ||
        c->max_pos < 2 || c->type_vocab < 1)
        fail("%s: encoder config has a size below 1 (vocab %d, dim %d, layers %d, heads %d, ffn %d, positions %d, "
             "types %d)", where, c->vocab_size, c->dim, c->n_layers, c->n_heads, c->ffn_dim, c->max_pos, c->type_vocab);
    if (c->dim % c->n_heads != 0) fail("%s: encoder dim %d is not a multiple of its %d heads", where, c->dim, c->n_heads);
    if (c->max_tokens < 2 || c->max_tokens > c->max_pos)
        fail("%s: encoder max_tokens %d must be in [2, %d] (its position embeddings)", where, c->max_tokens, c->max_pos);
    if (!(c->eps > 0.0f && c->eps < 1.0f)) fail("%s: encoder LayerNorm eps %g must be in (0, 1)", where, (double)c->eps);
}

static void add_param(ParamInfo *t, int *n, size_t *off, const char *name, int rows, int cols) {
    ParamInfo *p = &t[(*n)++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->rank = cols ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->numel = (size_t)rows * (cols ? (size_t)cols : 1);
    p->offset = *off;
    p->decay = cols != 0;
    *off += p->numel;
}

// Per layer, in order: q, k, v (weight, bias), attention output dense + LayerNorm,
// intermediate dense, output dense + LayerNorm: 16 tensors.
#define LAYER_PARAMS 16
enum { P_WORD, P_POS, P_TYPE, P_LN_W, P_LN_B, P_LAYER0 };
enum { L_QW, L_QB, L_KW, L_KB, L_VW, L_VB, L_OW, L_OB, L_LN1W, L_LN1B, L_IW, L_IB, L_FW, L_FB, L_LN2W, L_LN2B };

void encoder_init(Encoder *e, const EncoderConfig *c) {
    encoder_config_validate(c, "encoder");
    memset(e, 0, sizeof *e);
    e->cfg = *c;
    e->cls_id = e->sep_id = -1;
    const int C = c->dim, F = c->ffn_dim;
    e->table = xmalloc((size_t)(P_LAYER0 + LAYER_PARAMS * c->n_layers) * sizeof(ParamInfo));
    int n = 0;
    size_t off = 0;
    add_param(e->table, &n, &off, "embeddings.word_embeddings.weight", c->vocab_size, C);
    add_param(e->table, &n, &off, "embeddings.position_embeddings.weight", c->max_pos, C);
    add_param(e->table, &n, &off, "embeddings.token_type_embeddings.weight", c->type_vocab, C);
    add_param(e->table, &n, &off, "embeddings.LayerNorm.weight", C, 0);
    add_param(e->table, &n, &off, "embeddings.LayerNorm.bias", C, 0);
    static const struct { const char *name; int out, in; } L[LAYER_PARAMS] = {
        {"attention.self.query.weight", 'C', 'C'}, {"attention.self.query.bias", 'C', 0},
        {"attention.self.key.weight", 'C', 'C'}, {"attention.self.key.bias", 'C', 0},
        {"attention.self.value.weight", 'C', 'C'}, {"attention.self.value.bias", 'C', 0},
        {"attention.output.dense.weight", 'C', 'C'}, {"attention.output.dense.bias", 'C', 0},
        {"attention.output.LayerNorm.weight", 'C', 0}, {"attention.output.LayerNorm.bias", 'C', 0},
        {"intermediate.dense.weight", 'F', 'C'}, {"intermediate.dense.bias", 'F', 0},
        {"output.dense.weight", 'C', 'F'}, {"output.dense.bias", 'C', 0},
        {"output.LayerNorm.weight", 'C', 0}, {"output.LayerNorm.bias", 'C', 0},
    };
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < LAYER_PARAMS; j++) {
            char name[MAX_PARAM_NAME];
            snprintf(name, sizeof name, "encoder.layer.%d.%s", l, L[j].name);
            add_param(e->table, &n, &off, name, L[j].out == 'F' ? F : C, L[j].in == 'F' ? F : L[j].in ? C : 0);
        }
    e->n_params = n;
    e->numel = off;
    e->host = xcalloc(off, sizeof(float));
}

void encoder_to_device(Encoder *e, const Backend *be) {
    if (!be->layernorm_fwd || !be->gelu_fwd || !be->attention_bidir_fwd)
        fail("the sentence encoder needs the ops layernorm_fwd, gelu_fwd and attention_bidir_fwd, which the '%s' "
             "backend does not have yet: use --device cpu", be->name);
    if (be->act_bytes != sizeof(float))
        fail("the sentence encoder runs in fp32 only: backend '%s' stores %zu-byte activations (use --device cpu)",
             be->name, be->act_bytes);
    e->be = be;
    e->w = be->alloc(e->numel * sizeof(float));
    be->upload(e->w, e->host, e->numel * sizeof(float));
}

void encoder_set_tokenizer(Encoder *e, const char *json, size_t len, const char *where) {
    if (e->tok) tokenizer_free(e->tok);
    free(e->tokenizer_json);
    e->tok = NULL;
    e->cls_id = e->sep_id = -1;
    e->tokenizer_json = xmalloc(len + 1);
    memcpy(e->tokenizer_json, json, len);
    e->tokenizer_json[len] = '\0';
    e->tokenizer_json_len = len;
    snprintf(e->tokenizer_where, sizeof e->tokenizer_where, "%s", where);
}

Tokenizer *encoder_tokenizer(Encoder *e) {
    if (e->tok) return e->tok;
    if (!e->tokenizer_json) fail("the encoder has no tokenizer: it can embed token ids only");
    const char *where = e->tokenizer_where;
    Tokenizer *tok = tokenizer_from_json(e->tokenizer_json, e->tokenizer_json_len, NULL, 0, where);
    const int cls = tokenizer_token_id(tok, "[CLS]"), sep = tokenizer_token_id(tok, "[SEP]");
    if (cls < 0 || sep < 0) fail("%s: the tokenizer has no [CLS] or [SEP] token (not a BERT WordPiece tokenizer?)", where);
    if (tokenizer_vocab_size(tok) > e->cfg.vocab_size)
        fail("%s: the tokenizer's %d ids do not fit the encoder's vocabulary of %d", where, tokenizer_vocab_size(tok),
             e->cfg.vocab_size);
    e->tok = tok;
    e->cls_id = cls;
    e->sep_id = sep;
    return tok;
}

void encoder_free(Encoder *e) {
    if (e->be && e->w) e->be->free(e->w);
    if (e->tok) tokenizer_free(e->tok);
    free(e->tokenizer_json);
    free(e->table);
    free(e->host);
    memset(e, 0, sizeof *e);
}

int encoder_tokenize(Encoder *e, const char *text, size_t len, int **ids) {
    // truncated as sentence-transformers does: [CLS], the first max_tokens - 2 word pieces, [SEP]
    const int n = tokenizer_encode_max(encoder_tokenizer(e), text, len, 1, e->cfg.max_tokens, ids);
    if (n < 2 || (*ids)[0] != e->cls_id || (*ids)[n - 1] != e->sep_id)
        fail("the encoder's tokenizer does not wrap a text in [CLS] ... [SEP] (its post_processor)");
    return n;
}

// One forward of B sequences padded to T, pooled into out[B, C] (host). Every
// buffer is allocated for the call: a sentence batch is small next to the weights.
static void forward_pooled(Encoder *e, const int *tok, const int *lengths, int B, int T, float *out) {
    const Backend *be = e->be;
    const EncoderConfig *c = &e->cfg;
    const int C = c->dim, F = c->ffn_dim, NH = c->n_heads, N = B * T;
    const size_t a = (size_t)be->act_bytes;
    const char *w = e->w;
#define W(i) ((const void *)(w + e->table[i].offset * a))
    int *pos = xmalloc((size_t)N * sizeof(int)), *zero = xcalloc((size_t)N, sizeof(int));
    for (int i = 0; i < N; i++) pos[i] = i % T;
    int *d_tok = be->alloc((size_t)N * sizeof(int)), *d_pos = be->alloc((size_t)N * sizeof(int));
    int *d_type = be->alloc((size_t)N * sizeof(int)), *d_len = be->alloc((size_t)B * sizeof(int));
    be->upload(d_tok, tok, (size_t)N * sizeof(int));
    be->upload(d_pos, pos, (size_t)N * sizeof(int));
    be->upload(d_type, zero, (size_t)N * sizeof(int));
    be->upload(d_len, lengths, (size_t)B * sizeof(int));
    void *h = be->alloc((size_t)N * C * a), *t = be->alloc((size_t)N * C * a);     // [N,C]
    void *q = be->alloc((size_t)N * C * a), *k = be->alloc((size_t)N * C * a);
    void *v = be->alloc((size_t)N * C * a), *att = be->alloc((size_t)N * C * a);
    void *ff = be->alloc((size_t)N * F * a);                                        // [N,F]

    // embeddings: word + position + token type 0, then LayerNorm
    be->embedding_fwd(h, d_tok, W(P_WORD), N, C);
    be->embedding_fwd(t, d_pos, W(P_POS), N, C);
    be->add(h, h, t, (size_t)N * C);
    be->embedding_fwd(t, d_type, W(P_TYPE), N, C);
    be->add(h, h, t, (size_t)N * C);
    be->layernorm_fwd(h, h, W(P_LN_W), W(P_LN_B), c->eps, N, C);
    for (int l = 0; l < c->n_layers; l++) {
        const int p = P_LAYER0 + l * LAYER_PARAMS;
        be->matmul_fwd(q, h, W(p + L_QW), W(p + L_QB), N, C, C);
        be->matmul_fwd(k, h, W(p + L_KW), W(p + L_KB), N, C, C);
        be->matmul_fwd(v, h, W(p + L_VW), W(p + L_VB), N, C, C);
        be->attention_bidir_fwd(att, q, k, v, d_len, B, T, NH, C / NH);
        be->matmul_fwd(t, att, W(p + L_OW), W(p + L_OB), N, C, C);
        be->add(t, t, h, (size_t)N * C);
        be->layernorm_fwd(h, t, W(p + L_LN1W), W(p + L_LN1B), c->eps, N, C);
        be->matmul_fwd(ff, h, W(p + L_IW), W(p + L_IB), N, C, F);
        be->gelu_fwd(ff, ff, (size_t)N * F);
        be->matmul_fwd(t, ff, W(p + L_FW), W(p + L_FB), N, F, C);
        be->add(t, t, h, (size_t)N * C);
        be->layernorm_fwd(h, t, W(p + L_LN2W), W(p + L_LN2B), c->eps, N, C);
    }
#undef W
    // mean over the real tokens, in double (act is fp32: encoder_to_device)
    float *host = xmalloc((size_t)N * C * sizeof(float));
    be->download(host, h, (size_t)N * C * sizeof(float));
    double *acc = xmalloc((size_t)C * sizeof(double));
    for (int b = 0; b < B; b++) {
        memset(acc, 0, (size_t)C * sizeof(double));
        for (int s = 0; s < lengths[b]; s++)
            for (int j = 0; j < C; j++) acc[j] += host[((size_t)b * T + s) * C + j];
        for (int j = 0; j < C; j++) out[(size_t)b * C + j] = (float)(acc[j] / lengths[b]);
    }
    free(acc); free(host); free(pos); free(zero);
    void *bufs[] = {d_tok, d_pos, d_type, d_len, h, t, q, k, v, att, ff};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
}

// longest first, ties by index: a deterministic batching with little padding
typedef struct { int len, idx; } ByLen;
static int by_length(const void *x, const void *y) {
    const ByLen *a = x, *b = y;
    return a->len != b->len ? b->len - a->len : a->idx - b->idx;
}

void encoder_embed_ids(Encoder *e, const int *const *seqs, const int *lens, int n, float *out) {
    if (!e->be) fail("encoder_embed_ids: the encoder is not on a device (encoder_to_device)");
    const int C = e->cfg.dim;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > e->cfg.max_tokens)
            fail("encoder input %d has %d tokens: 1 to %d allowed", i, lens[i], e->cfg.max_tokens);
        for (int j = 0; j < lens[i]; j++)
            if (seqs[i][j] < 0 || seqs[i][j] >= e->cfg.vocab_size)
                fail("encoder input %d: token id %d outside the vocabulary (%d)", i, seqs[i][j], e->cfg.vocab_size);
    }
    ByLen *order = xmalloc((n > 0 ? (size_t)n : 1) * sizeof(ByLen));
    for (int i = 0; i < n; i++) order[i] = (ByLen){lens[i], i};
    qsort(order, (size_t)n, sizeof(ByLen), by_length);
    int *tok = xmalloc((size_t)ENC_BATCH * e->cfg.max_tokens * sizeof(int)), blen[ENC_BATCH];
    float *pooled = xmalloc((size_t)ENC_BATCH * C * sizeof(float));
    for (int b0 = 0; b0 < n; b0 += ENC_BATCH) {
        const int B = n - b0 < ENC_BATCH ? n - b0 : ENC_BATCH, T = order[b0].len;
        memset(tok, 0, (size_t)B * T * sizeof(int));
        for (int b = 0; b < B; b++) {
            blen[b] = order[b0 + b].len;
            memcpy(tok + (size_t)b * T, seqs[order[b0 + b].idx], (size_t)blen[b] * sizeof(int));
        }
        forward_pooled(e, tok, blen, B, T, pooled);
        for (int b = 0; b < B; b++)
            memcpy(out + (size_t)order[b0 + b].idx * C, pooled + (size_t)b * C, (size_t)C * sizeof(float));
    }
    free(order); free(tok); free(pooled);
}

void encoder_embed_texts(Encoder *e, const char *const *texts, int n, float *out) {
    int **ids = xcalloc(n > 0 ? (size_t)n : 1, sizeof(int *)), *lens = xcalloc(n > 0 ? (size_t)n : 1, sizeof(int));
    for (int i = 0; i < n; i++) lens[i] = encoder_tokenize(e, texts[i], strlen(texts[i]), &ids[i]);
    encoder_embed_ids(e, (const int *const *)ids, lens, n, out);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids); free(lens);
}

uint64_t encoder_fingerprint(const Encoder *e) {
    const EncoderConfig *c = &e->cfg;
    const int ints[] = {c->vocab_size, c->dim, c->n_layers, c->n_heads, c->ffn_dim, c->max_pos, c->type_vocab,
                        c->max_tokens};
    uint64_t parts[5] = {
        xxh64(ints, sizeof ints), xxh64(&c->eps, sizeof c->eps), xxh64(e->host, e->numel * sizeof(float)),
        e->tokenizer_json ? xxh64(e->tokenizer_json, e->tokenizer_json_len) : 0,
        e->be ? xxh64(e->be->name, strlen(e->be->name)) : 0,
    };
    return xxh64(parts, sizeof parts);
}
