// Model configuration checks, the parameter table (Hugging Face names and
// shapes, one flat buffer), views into it, and random initialisation.
// The forward/backward orchestration lives in forward.c.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "model.h"
#include "kernels/errors.h"
#include "base/rng.h"
#include "lora.h"

void model_config_validate(const ModelConfig *c, const char *where) {
// (through fail(): the one line escapes control characters in `where`, and a harness can catch it)
#define REQUIRE(cond, fmt, ...) do { if (!(cond)) fail("%s: " fmt, where, ##__VA_ARGS__); } while (0)
    REQUIRE(c->vocab_size >= 2, "model vocab_size must be >= 2 (got %d)", c->vocab_size);
    REQUIRE(c->dim >= 1, "model dim must be >= 1 (got %d)", c->dim);
    REQUIRE(c->n_layers >= 1, "model n_layers must be >= 1 (got %d)", c->n_layers);
    REQUIRE(c->n_heads >= 1, "model n_heads must be >= 1 (got %d)", c->n_heads);
    REQUIRE(c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0,
            "model n_kv_heads (%d) must divide n_heads (%d)", c->n_kv_heads, c->n_heads);
    REQUIRE(c->head_dim >= 2 && c->head_dim % 2 == 0,
            "model head_dim must be even and >= 2 (got %d)", c->head_dim);
    REQUIRE(c->ffn_dim >= 1, "model ffn_dim must be >= 1 (got %d)", c->ffn_dim);
    REQUIRE(c->max_seq_len >= 2, "model max_seq_len must be >= 2 (got %d)", c->max_seq_len);
    REQUIRE(c->rope_theta > 0, "model rope_theta must be > 0 (got %g)", c->rope_theta);
    REQUIRE(c->rms_eps > 0, "model rms_eps must be > 0 (got %g)", c->rms_eps);
    REQUIRE(c->rope_scaling >= ROPE_NONE && c->rope_scaling <= ROPE_FREQS,
            "model rope_scaling must be none, llama3 or freqs");
    if (c->rope_scaling == ROPE_FREQS) {
        REQUIRE(c->head_dim / 2 <= ROPE_MAX_PAIRS, "model head_dim %d is too large for rope_freqs (at most %d)",
                c->head_dim, 2 * ROPE_MAX_PAIRS);
        for (int i = 0; i < c->head_dim / 2; i++)
            REQUIRE(isfinite(c->rope_freqs[i]) && c->rope_freqs[i] > 0,
                    "model rope_freqs[%d] = %g (a frequency factor must be finite and > 0)", i, c->rope_freqs[i]);
    }
    if (c->rope_scaling == ROPE_LLAMA3) {
        REQUIRE(c->rope_factor > 0, "model rope_factor must be > 0");
        REQUIRE(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0,
                "model rope_high_freq_factor must exceed rope_low_freq_factor > 0");
        REQUIRE(c->rope_original_max_pos >= 1, "model rope_original_max_pos must be >= 1");
    }
    // the flat buffer is indexed with size_t but kernels take int row counts
    REQUIRE((double)c->vocab_size * c->dim < 2147483647.0, "model vocab_size x dim too large");
#undef REQUIRE
}

typedef struct { ParamInfo *t; int n, cap; size_t total; } TableBuilder;

static void add_param(TableBuilder *tb, int decay, int rows, int cols, const char *fmt, int layer) {
    if (tb->n == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        ParamInfo *grown = realloc(tb->t, (size_t)tb->cap * sizeof *grown);
        if (!grown) fail("out of memory building the parameter table");
        tb->t = grown;
    }
    ParamInfo *p = &tb->t[tb->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, fmt, layer);
    p->rank = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 0;
    p->numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    p->offset = tb->total;
    p->decay = decay;
    // keep every tensor 16-float aligned (64 bytes) for vector loads
    tb->total += (p->numel + 15) & ~(size_t)15;
}

ParamInfo *model_param_table(const ModelConfig *c, int *count, size_t *total_numel) {
    TableBuilder tb = {0};
    const int C = c->dim, V = c->vocab_size, F = c->ffn_dim;
    const int QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    add_param(&tb, 1, V, C, "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->n_layers; l++) {
        add_param(&tb, 0, C, 0, "model.layers.%d.input_layernorm.weight", l);
        add_param(&tb, 1, QD, C, "model.layers.%d.self_attn.q_proj.weight", l);
        if (c->qkv_bias) add_param(&tb, 0, QD, 0, "model.layers.%d.self_attn.q_proj.bias", l);
        add_param(&tb, 1, KVD, C, "model.layers.%d.self_attn.k_proj.weight", l);
        if (c->qkv_bias) add_param(&tb, 0, KVD, 0, "model.layers.%d.self_attn.k_proj.bias", l);
        add_param(&tb, 1, KVD, C, "model.layers.%d.self_attn.v_proj.weight", l);
        if (c->qkv_bias) add_param(&tb, 0, KVD, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        add_param(&tb, 1, C, QD, "model.layers.%d.self_attn.o_proj.weight", l);
        add_param(&tb, 0, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        add_param(&tb, 1, F, C, "model.layers.%d.mlp.gate_proj.weight", l);
        add_param(&tb, 1, F, C, "model.layers.%d.mlp.up_proj.weight", l);
        add_param(&tb, 1, C, F, "model.layers.%d.mlp.down_proj.weight", l);
    }
    add_param(&tb, 0, C, 0, "model.norm.weight", 0);
    if (!c->tie_embeddings) add_param(&tb, 1, V, C, "lm_head.weight", 0);
    *count = tb.n;
    *total_numel = tb.total;
    return tb.t;
}

const ParamInfo *param_find(const ParamInfo *table, int count, const char *name) {
    for (int i = 0; i < count; i++)
        if (strcmp(table[i].name, name) == 0) return &table[i];
    return NULL;
}

// The table order is fixed (model_param_table), so views are taken by walking it.
void weights_view(Weights *w, const ModelConfig *c, const ParamInfo *table, int count, void *flat,
                  size_t elem_bytes) {
    int i = 0;
    check(count >= 3, "parameter table too short");
#define NEXT() ((char *)flat + table[i++].offset * elem_bytes)
    w->embed = NEXT();
    w->layers = xcalloc((size_t)c->n_layers, sizeof *w->layers);
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *L = &w->layers[l];
        L->ln1 = NEXT();
        L->wq = NEXT(); L->bq = c->qkv_bias ? NEXT() : NULL;
        L->wk = NEXT(); L->bk = c->qkv_bias ? NEXT() : NULL;
        L->wv = NEXT(); L->bv = c->qkv_bias ? NEXT() : NULL;
        L->wo = NEXT();
        L->ln2 = NEXT();
        L->wgate = NEXT(); L->wup = NEXT(); L->wdown = NEXT();
    }
    w->norm = NEXT();
    w->lm_head = c->tie_embeddings ? w->embed : NEXT();
#undef NEXT
    check(i == count, "parameter table has %d entries, views used %d", count, i);
}

void weights_free_view(Weights *w) { free(w->layers); w->layers = NULL; }

void model_create(Model *m, const ModelConfig *c, const Backend *be) {
    memset(m, 0, sizeof *m);
    model_config_validate(c, "model");
    m->cfg = *c;
    m->be = be;
    m->table = model_param_table(c, &m->n_params, &m->numel);
    m->params = be->alloc(m->numel * sizeof(float));
    m->grads = be->alloc(m->numel * sizeof(float));
    m->wc = be->act_bytes == sizeof(float) ? (void *)m->params : be->alloc(m->numel * be->act_bytes);
    weights_view(&m->w, c, m->table, m->n_params, m->wc, be->act_bytes);
    weights_view(&m->g, c, m->table, m->n_params, m->grads, sizeof(float));
    weights_view(&m->master, c, m->table, m->n_params, m->params, sizeof(float));
}

float *model_trainable_master(const Model *m) { return m->lora ? m->lora->params : m->params; }

void model_set_trainable_master(Model *m, float *params) {
    if (m->lora) { lora_set_master(m, params); return; }
    m->params = params;
    weights_free_view(&m->master);
    if (params) weights_view(&m->master, &m->cfg, m->table, m->n_params, params, sizeof(float));
}

void model_sync_compute(Model *m) {
    check(m->params && (!m->lora || m->lora->params),
          "internal: the master weights are sharded by a ZeRO-1 optimizer (adamw_free it first)");
    m->be->act_from_f32(m->wc, m->params, m->numel);
    if (m->lora) lora_sync_compute(m);
}

// (here, not in lora.c: the adapters know nothing of the model's compute copy)
void model_merge_lora(Model *m) {
    lora_merge_into_base(m);
    model_sync_compute(m);
}

void model_init_random(Model *m, uint64_t seed, float std) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->n_params; i++) {
        const ParamInfo *p = &m->table[i];
        float *host = xmalloc(p->numel * sizeof(float));
        int is_norm = strstr(p->name, "norm.weight") != NULL;
        int is_bias = strstr(p->name, ".bias") != NULL;
        for (size_t j = 0; j < p->numel; j++)
            host[j] = is_norm ? 1.0f : is_bias ? 0.0f : std * (float)rng_normal(&rng);
        m->be->upload(m->params + p->offset, host, p->numel * sizeof(float));
        free(host);
    }
    model_sync_compute(m);
}

void model_free(Model *m) {
    acts_free(m);
    lora_free(m);
    weights_free_view(&m->w);
    weights_free_view(&m->g);
    weights_free_view(&m->master);
    if (m->wc != (void *)m->params) m->be->free(m->wc);
    m->be->free(m->params);
    m->be->free(m->grads);
    free(m->table);
    free(m->tokenizer_json);
    free(m->tokenizer_config_json);
    memset(m, 0, sizeof *m);
}
