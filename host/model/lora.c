// LoRA adapters: their own parameter table (PEFT names), flat buffers and
// views, the per-module forward (layer.c) and backward (forward.c), and the
// merge into the base weights. Everything runs through Backend ops. Design:
// docs/lora.md.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "lora.h"
#include "act.h"
#include "kernels/errors.h"
#include "base/rng.h"

const char *const LORA_TARGET_NAMES[LORA_N_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *const MODULE_PATH[LORA_N_TARGETS] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

int lora_parse_targets(const char *list, unsigned *targets, char *err, size_t cap) {
    unsigned mask = 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        size_t n = 0;
        while (p[n] && p[n] != ',' && p[n] != ' ') n++;
        int found = -1;
        if (n == 3 && !strncmp(p, "all", 3)) { mask |= LORA_TARGETS_ALL; found = LORA_N_TARGETS; }
        for (int t = 0; t < LORA_N_TARGETS && found < 0; t++)
            if (strlen(LORA_TARGET_NAMES[t]) == n && !strncmp(p, LORA_TARGET_NAMES[t], n)) found = t;
        if (found < 0) {
            snprintf(err, cap, "unknown LoRA target '%.*s' (expected q, k, v, o, gate, up, down or all)", (int)n, p);
            return -1;
        }
        if (found < LORA_N_TARGETS) mask |= 1u << found;
        p += n;
    }
    if (!mask) { snprintf(err, cap, "no LoRA target modules given"); return -1; }
    *targets = mask;
    return 0;
}

void lora_targets_str(unsigned targets, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int t = 0; t < LORA_N_TARGETS; t++)
        if (targets & (1u << t) && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? "," : "", LORA_TARGET_NAMES[t]);
}

void lora_config_validate(const LoraConfig *c, const char *where) {
    if (c->rank < 1) fail("%s: lora rank must be >= 1 (got %d)", where, c->rank);
    if (!(c->alpha > 0) || !isfinite(c->alpha)) fail("%s: lora alpha must be > 0 (got %g)", where, c->alpha);
    if (!(c->dropout >= 0 && c->dropout < 1)) fail("%s: lora dropout must be in [0, 1) (got %g)", where, c->dropout);
    if (!c->targets || (c->targets & ~LORA_TARGETS_ALL))
        fail("%s: lora targets must be a non-empty subset of q,k,v,o,gate,up,down", where);
}

// in/out features of a target module
static void module_dims(const ModelConfig *c, int t, int *in, int *out) {
    const int C = c->dim, F = c->ffn_dim, QD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    const int ins[LORA_N_TARGETS] = {C, C, C, QD, C, C, F}, outs[LORA_N_TARGETS] = {QD, KVD, KVD, C, F, F, C};
    *in = ins[t];
    *out = outs[t];
}

static ParamInfo *add_param(ParamInfo *t, int *n, size_t *total, const char *name, int rows, int cols) {
    ParamInfo *p = &t[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->rank = 2;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->numel = (size_t)rows * cols;
    p->offset = *total;
    p->decay = 1;            // as HF Trainer: everything but biases and norms decays
    *total += (p->numel + 15) & ~(size_t)15;
    return p;
}

void model_enable_lora(Model *m, const LoraConfig *cfg) {
    if (m->lora) fail("LoRA is already enabled on this model");
    lora_config_validate(cfg, "lora");
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const int r = cfg->rank;
    Lora *lo = xcalloc(1, sizeof *lo);
    lo->cfg = *cfg;
    lo->scale = cfg->alpha / (float)r;
    const int slots = c->n_layers * LORA_N_TARGETS;
    lo->table = xcalloc((size_t)slots * 2, sizeof *lo->table);
    lo->w = xcalloc((size_t)slots, sizeof *lo->w);
    lo->g = xcalloc((size_t)slots, sizeof *lo->g);
    lo->master = xcalloc((size_t)slots, sizeof *lo->master);
    int *ia = xmalloc((size_t)slots * sizeof *ia);   // table index of A per slot, -1 when not targeted
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            ia[l * LORA_N_TARGETS + t] = -1;
            if (!(cfg->targets & (1u << t))) continue;
            int in, out;
            module_dims(c, t, &in, &out);
            char name[MAX_PARAM_NAME];
            ia[l * LORA_N_TARGETS + t] = lo->n_params;
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_A.weight", l, MODULE_PATH[t]);
            add_param(lo->table, &lo->n_params, &lo->numel, name, r, in);
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.weight", l, MODULE_PATH[t]);
            add_param(lo->table, &lo->n_params, &lo->numel, name, out, r);
        }
    lo->params = be->alloc(lo->numel * sizeof(float));   // zero-filled: B = 0
    lo->grads = be->alloc(lo->numel * sizeof(float));
    lo->wc = be->act_bytes == sizeof(float) ? (void *)lo->params : be->alloc(lo->numel * be->act_bytes);
    // PEFT init_lora_weights=True: nn.init.kaiming_uniform_(A, a=sqrt(5)), i.e.
    // gain sqrt(2/(1+5)), bound = gain * sqrt(3/fan_in) = 1/sqrt(in); B zeros
    Rng rng;
    rng_seed(&rng, cfg->seed);
    for (int s = 0; s < slots; s++) {
        if (ia[s] < 0) continue;
        const ParamInfo *pa = &lo->table[ia[s]], *pb = &lo->table[ia[s] + 1];
        LoraPair *w = &lo->w[s], *g = &lo->g[s], *mw = &lo->master[s];
        w->in = g->in = mw->in = pa->shape[1];
        w->out = g->out = mw->out = pb->shape[0];
        w->A = act_at(be, lo->wc, pa->offset); w->B = act_at(be, lo->wc, pb->offset);
        g->A = lo->grads + pa->offset;  g->B = lo->grads + pb->offset;
        mw->A = lo->params + pa->offset; mw->B = lo->params + pb->offset;
        const float bound = 1.0f / sqrtf((float)w->in);
        float *host = xmalloc(pa->numel * sizeof(float));
        for (size_t j = 0; j < pa->numel; j++) host[j] = (float)((2.0 * rng_uniform(&rng) - 1.0) * bound);
        be->upload(mw->A, host, pa->numel * sizeof(float));
        free(host);
    }
    free(ia);
    m->lora = lo;
    lora_sync_compute(m);
}

void lora_sync_compute(Model *m) {
    Lora *lo = m->lora;
    m->be->act_from_f32(lo->wc, lo->params, lo->numel);
}

void lora_set_master(Model *m, float *params) {
    Lora *lo = m->lora;
    for (int s = 0; s < m->cfg.n_layers * LORA_N_TARGETS; s++) {
        if (!lo->w[s].A) continue;
        LoraPair *mw = &lo->master[s];   // at the gradient views' offsets
        mw->A = params ? params + ((float *)lo->g[s].A - lo->grads) : NULL;
        mw->B = params ? params + ((float *)lo->g[s].B - lo->grads) : NULL;
    }
    lo->params = params;
}

static void lora_acts_free(Lora *lo, const Backend *be) {
    if (!lo->cap_N) return;
    be->free(lo->h); be->free(lo->xd); be->free(lo->dxd); be->free(lo->ybuf); be->free(lo->dh);
    lo->h = lo->xd = lo->dxd = lo->ybuf = lo->dh = NULL;
    lo->cap_N = 0;
}

void lora_free(Model *m) {
    Lora *lo = m->lora;
    if (!lo) return;
    lora_acts_free(lo, m->be);
    if (lo->wc != (void *)lo->params) m->be->free(lo->wc);
    m->be->free(lo->params);
    m->be->free(lo->grads);
    free(lo->table); free(lo->w); free(lo->g); free(lo->master);
    free(lo);
    m->lora = NULL;
}

// The widest adapter input or output: max(C, F, NH*D).
static size_t lora_wide(const ModelConfig *c) {
    const int QD = c->n_heads * c->head_dim;
    int wide = c->dim > c->ffn_dim ? c->dim : c->ffn_dim;
    return (size_t)(QD > wide ? QD : wide);
}

void lora_acts_ensure(Model *m, int N) {
    Lora *lo = m->lora;
    if (lo->cap_N >= N) return;
    lora_acts_free(lo, m->be);
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const size_t r = (size_t)lo->cfg.rank, slots = (size_t)c->n_layers * LORA_N_TARGETS, wide = lora_wide(c);
    lo->h = act_alloc(be, slots * N * r);
    lo->xd = act_alloc(be, (size_t)N * wide);
    lo->dxd = be->alloc((size_t)N * wide * sizeof(float));
    lo->ybuf = act_alloc(be, (size_t)N * wide);
    lo->dh = be->alloc((size_t)N * r * sizeof(float));
    lo->cap_N = N;
}

void lora_set_train(Model *m, int training, uint64_t micro_index) {
    check(m->lora != NULL, "lora_set_train without LoRA");
    m->lora->training = training;
    uint64_t x = m->lora->cfg.seed ^ (micro_index * 0xd1b54a32d192ed03ULL);
    m->lora->key = splitmix64(&x);
}

// Dropout key of one module in the current micro-batch.
static uint64_t module_key(const Lora *lo, int slot) {
    uint64_t x = lo->key ^ ((uint64_t)(slot + 1) * 0xa0761d6478bd642fULL);
    return splitmix64(&x);
}

static int dropout_on(const Lora *lo) { return lo->training && lo->cfg.dropout > 0.0f; }

size_t lora_scratch_numel(const Model *m, int N) {
    return (size_t)N * ((size_t)m->lora->cfg.rank + lora_wide(&m->cfg));
}

void lora_fwd(Model *m, int layer, int target, void *out, const void *inp, int N, void *scratch) {
    Lora *lo = m->lora;
    const int slot = layer * LORA_N_TARGETS + target;
    const LoraPair *p = &lo->w[slot];
    if (!p->A) return;
    const Backend *be = m->be;
    const int r = lo->cfg.rank;
    const void *x = inp;
    void *h, *y;
    if (scratch) {   // inference: the caller's buffers, no dropout
        h = scratch;
        y = act_at(be, scratch, (size_t)N * r);
    } else {         // training: h stays for lora_bwd
        check(N <= lo->cap_N, "lora_fwd of %d rows exceeds lora_acts_ensure's %d", N, lo->cap_N);
        h = act_at(be, lo->h, (size_t)slot * lo->cap_N * r);
        y = lo->ybuf;
        if (dropout_on(lo)) {
            be->dropout_fwd(lo->xd, inp, (size_t)N * p->in, lo->cfg.dropout, module_key(lo, slot));
            x = lo->xd;
        }
    }
    be->matmul_fwd(h, x, p->A, NULL, N, p->in, r);                 // h[N,r] = x A^T
    be->scale_act(h, lo->scale, (size_t)N * r);                     // h *= alpha/r
    be->matmul_fwd(y, h, p->B, NULL, N, r, p->out);                 // y[N,out] = h B^T
    be->add(out, out, y, (size_t)N * p->out);
}

void lora_bwd(Model *m, int layer, int target, float *dinp, const float *dout, const void *inp, int N) {
    Lora *lo = m->lora;
    const int slot = layer * LORA_N_TARGETS + target;
    const LoraPair *p = &lo->w[slot], *g = &lo->g[slot];
    if (!p->A) return;
    const Backend *be = m->be;
    const int r = lo->cfg.rank;
    const void *h = act_at(be, lo->h, (size_t)slot * lo->cap_N * r);
    be->zero(lo->dh, (size_t)N * r * sizeof(float));
    be->matmul_bwd(lo->dh, g->B, NULL, dout, h, p->B, N, r, p->out);   // dh = dy B; dB += dy^T h
    be->scale(lo->dh, lo->scale, (size_t)N * r);
    if (dropout_on(lo)) {
        const uint64_t key = module_key(lo, slot);
        be->dropout_fwd(lo->xd, inp, (size_t)N * p->in, lo->cfg.dropout, key);   // the forward's mask again
        be->zero(lo->dxd, (size_t)N * p->in * sizeof(float));
        be->matmul_bwd(lo->dxd, g->A, NULL, lo->dh, lo->xd, p->A, N, p->in, r);
        be->dropout_bwd(dinp, lo->dxd, (size_t)N * p->in, lo->cfg.dropout, key);
    } else {
        be->matmul_bwd(dinp, g->A, NULL, lo->dh, inp, p->A, N, p->in, r);     // dx += dh A; dA += dh^T x
    }
}

// fp32 master base weight [out, in] of (layer, target)
static float *base_weight(Model *m, int l, int t) {
    LayerWeights *w = &m->master.layers[l];
    void *ws[LORA_N_TARGETS] = {w->wq, w->wk, w->wv, w->wo, w->wgate, w->wup, w->wdown};
    return ws[t];
}

void lora_merge_into_base(Model *m) {
    Lora *lo = m->lora;
    check(lo != NULL, "lora_merge_into_base without LoRA");
    check(lo->params && m->params, "internal: LoRA merge while a ZeRO-1 optimizer holds the master weights");
    const Backend *be = m->be;
    const int r = lo->cfg.rank;
    size_t biggest = 0;
    for (int i = 0; i < lo->n_params; i++) if (lo->table[i].numel > biggest) biggest = lo->table[i].numel;
    float *sb = be->alloc(biggest * sizeof(float));
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            const LoraPair *p = &lo->w[l * LORA_N_TARGETS + t], *mw = &lo->master[l * LORA_N_TARGETS + t];
            if (!p->A) continue;
            // W[out,in] += (scale B)[out,r] @ A[r,in]: the input-gradient half of
            // matmul_bwd with N = out rows, C = in, OC = r (inp is not read without
            // dw). Into the fp32 master; A comes from the compute copy, (scale B)
            // from B's master (a bf16 backend rounds it to bf16 for the GEMM).
            be->copy(sb, mw->B, (size_t)p->out * r * sizeof(float));
            be->scale(sb, lo->scale, (size_t)p->out * r);
            be->matmul_bwd(base_weight(m, l, t), NULL, NULL, sb, p->A, p->A, p->out, p->in, r);
        }
    be->free(sb);
    lora_free(m);
}
