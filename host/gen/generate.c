// The decode forward (the training forward's layer, model/layer.c, reading
// past keys and values from the KV cache instead of recomputing them), and
// the generation loops on top of it: greedy / sampling, and beam search.
#include <math.h>
#include <string.h>
#include "generate.h"
#include "sampler.h"
#include "kernels/errors.h"
#include "model/act.h"
#include "model/layer.h"
#include "model/lora.h"

// ---- decode forward --------------------------------------------------------------

static float *falloc(const Backend *be, size_t n) { return be->alloc(n * sizeof(float)); }

void decoder_create(Decoder *d, Model *m, int R, int P, int max_rows) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    if (!backend_supports(be, BACKEND_KV_DECODE))
        fail("device '%s' has no KV-cache decoding ops yet: generate with --device cpu", be->name);
    memset(d, 0, sizeof *d);
    d->m = m;
    kv_cache_create(&d->kv, m, R, P);
    if (max_rows < R) max_rows = R;
    d->max_rows = max_rows;
    const size_t N = (size_t)max_rows, C = c->dim, F = c->ffn_dim, V = c->vocab_size;
    const size_t QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    d->x = act_alloc(be, N * C); d->ln = act_alloc(be, N * C); d->rstd = falloc(be, N);
    d->q = act_alloc(be, N * QD); d->k = act_alloc(be, N * KVD); d->v = act_alloc(be, N * KVD);
    d->att = act_alloc(be, N * QD); d->x2 = act_alloc(be, N * C); d->tmp = act_alloc(be, N * C);
    d->gate = act_alloc(be, N * F); d->up = act_alloc(be, N * F); d->act = act_alloc(be, N * F);
    d->last = act_alloc(be, (size_t)R * C); d->last_ln = act_alloc(be, (size_t)R * C);
    d->last_rstd = falloc(be, (size_t)R); d->logits = act_alloc(be, (size_t)R * V);
    d->tokens = be->alloc(N * sizeof(int)); d->pos = be->alloc(N * sizeof(int));
    d->start = be->alloc((size_t)R * sizeof(int)); d->n_new = be->alloc((size_t)R * sizeof(int));
    d->rows = be->alloc((size_t)R * sizeof(int));
    if (m->lora) d->lora_scratch = act_alloc(be, lora_scratch_numel(m, max_rows));
    d->slot = xmalloc((size_t)R * sizeof(int));
    for (int r = 0; r < R; r++) d->slot[r] = -1;
}

void decoder_free(Decoder *d) {
    const Backend *be = d->m->be;
    void *bufs[] = {d->x, d->ln, d->rstd, d->q, d->k, d->v, d->att, d->x2, d->tmp, d->gate, d->up,
                    d->act, d->last, d->last_ln, d->last_rstd, d->logits, d->tokens, d->pos,
                    d->start, d->n_new, d->rows};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
    if (d->plogits) be->free(d->plogits);
    if (d->lora_scratch) be->free(d->lora_scratch);
    kv_cache_free(&d->kv, be);
    free(d->logits_host);
    free(d->slot);
    memset(d, 0, sizeof *d);
}

void decoder_step(Decoder *d, const int *tokens, const int *n_new, int R, int S, float *logits_host) {
    Model *m = d->m;
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    KVCache *kv = &d->kv;
    const int N = R * S, C = c->dim, V = c->vocab_size, P = kv->P;
    check(R <= kv->R && N <= d->max_rows, "decoder step of %d x %d rows exceeds its capacity", R, S);
    check(!m->lora || d->lora_scratch, "the model gained LoRA adapters after its decoder was created");

    // host side: checked ids (padding fed as id 0), positions, active rows
    int *tok = xmalloc((size_t)N * sizeof(int)), *pos = xmalloc((size_t)N * sizeof(int));
    int *rows = xmalloc((size_t)R * sizeof(int)), *active = xmalloc((size_t)R * sizeof(int));
    int n_act = 0;
    for (int r = 0; r < R; r++) {
        check(n_new[r] >= 0 && n_new[r] <= S, "row %d: %d new tokens in a block of %d", r, n_new[r], S);
        if (kv->len[r] + n_new[r] > P)
            fail("generation: sequence %d needs %d positions but the cache holds %d", r, kv->len[r] + n_new[r], P);
        for (int s = 0; s < S; s++) {
            const int id = s < n_new[r] ? tokens[r * S + s] : 0;
            if (id < 0 || id >= V) fail("generation: token id %d outside the vocabulary [0, %d)", id, V);
            tok[r * S + s] = id;
            pos[r * S + s] = s < n_new[r] ? kv->len[r] + s : 0;
        }
        if (n_new[r] > 0) { rows[n_act] = r * S + n_new[r] - 1; active[n_act++] = r; }
    }
    be->upload(d->tokens, tok, (size_t)N * sizeof(int));
    be->upload(d->pos, pos, (size_t)N * sizeof(int));
    be->upload(d->start, kv->len, (size_t)R * sizeof(int));
    be->upload(d->n_new, n_new, (size_t)R * sizeof(int));
    be->upload(d->rows, rows, (size_t)n_act * sizeof(int));

    // one layer's activations, reused by every layer (ln1 and ln2 share a
    // buffer); residual adds fused with the norm after them, as in the
    // training forward (the last layer's plain add: the final norm runs on the
    // gathered rows)
    const LayerActs L = {.x = d->x, .ln1 = d->ln, .rstd1 = d->rstd, .q = d->q, .k = d->k, .v = d->v, .att = d->att,
                         .x2 = d->x2, .ln2 = d->ln, .rstd2 = d->rstd, .gate = d->gate, .up = d->up, .act = d->act};
    LayerMode mode = {.rope_cos = kv->rope_cos, .rope_sin = kv->rope_sin, .start = d->start, .n_new = d->n_new,
                      .pos = d->pos, .R = R, .S = S, .P = P, .lora_scratch = d->lora_scratch};
    be->embedding_fwd(d->x, d->tokens, m->w.embed, N, C);                    // x[N,C]
    be->rmsnorm_fwd(d->ln, d->rstd, d->x, m->w.layers[0].ln1, c->rms_eps, N, C);   // ln1[N,C]
    for (int l = 0; l < c->n_layers; l++) {
        mode.k_cache = kv->k[l];
        mode.v_cache = kv->v[l];
        layer_forward(m, l, &L, d->tmp, &mode, N);                            // x2, and the MLP's output in tmp
        if (l + 1 < c->n_layers)                                              // x' = x2 + mlp; next ln1
            be->residual_rmsnorm_fwd(d->x, d->ln, d->rstd, d->x2, d->tmp, m->w.layers[l + 1].ln1, c->rms_eps, N, C);
        else
            be->add(d->x, d->x2, d->tmp, (size_t)N * C);
    }
    for (int r = 0; r < R; r++) kv->len[r] += n_new[r];

    // head on the last new position of each active row only: the final norm
    // is per row, so gathering first gives the training forward's values
    for (int r = 0; r < kv->R; r++) d->slot[r] = -1;
    d->cur = d->logits;
    d->n_cur = n_act;
    if (n_act > 0) {
        be->gather_rows(d->last, d->x, d->rows, n_act, C);                       // last[n_act,C]
        be->rmsnorm_fwd(d->last_ln, d->last_rstd, d->last, m->w.norm, c->rms_eps, n_act, C);
        be->matmul_fwd(d->logits, d->last_ln, m->w.lm_head, NULL, n_act, C, V);  // logits[n_act,V]
        for (int i = 0; i < n_act; i++) d->slot[active[i]] = i;
        if (logits_host) {   // (the staging rows are allocated on first use: generate() never asks)
            if (!d->logits_host) d->logits_host = xmalloc((size_t)d->kv.R * V * sizeof(float));
            act_download(be, d->logits_host, d->logits, (size_t)n_act * V);
            for (int i = 0; i < n_act; i++)
                memcpy(logits_host + (size_t)active[i] * V, d->logits_host + (size_t)i * V,
                       (size_t)V * sizeof(float));
        }
    }
    free(tok); free(pos); free(rows); free(active);
}

void decoder_prefill(Decoder *d, const int *const *prompts, const int *lens, int R, float *logits_host) {
    int maxlen = 0;
    for (int r = 0; r < R; r++) {
        check(d->kv.len[r] == 0, "prefill into a non-empty cache row %d", r);
        check(lens[r] >= 1, "prompt %d is empty", r);
        maxlen = lens[r] > maxlen ? lens[r] : maxlen;
    }
    // column chunks of S positions: a prompt whose last token falls in a
    // chunk gets its logits from that chunk's step
    int S = d->max_rows / R;
    S = S < 1 ? 1 : S > maxlen ? maxlen : S;
    // logits left on the device: one chunk leaves every row's in d->logits;
    // with more, each chunk's rows are copied to d->plogits (row r at r)
    const Backend *be = d->m->be;
    const size_t V = (size_t)d->m->cfg.vocab_size;
    const int staged = !logits_host && maxlen > S;
    if (staged && !d->plogits) d->plogits = act_alloc(be, (size_t)d->kv.R * V);
    int *tok = xcalloc((size_t)R * S, sizeof(int)), *n_new = xcalloc((size_t)R, sizeof(int));
    for (int c0 = 0; c0 < maxlen; c0 += S) {
        for (int r = 0; r < R; r++) {
            int n = lens[r] - c0;
            n_new[r] = n < 0 ? 0 : n > S ? S : n;
            for (int s = 0; s < S; s++) tok[r * S + s] = s < n_new[r] ? prompts[r][c0 + s] : 0;
        }
        decoder_step(d, tok, n_new, R, S, logits_host);
        if (staged)
            for (int r = 0; r < R; r++)   // the rows whose prompt ends in this chunk
                if (n_new[r] > 0 && lens[r] <= c0 + S)
                    be->copy(act_at(be, d->plogits, r * V), act_at(be, d->logits, (size_t)d->slot[r] * V),
                             V * be->act_bytes);
    }
    if (staged) {
        for (int r = 0; r < d->kv.R; r++) d->slot[r] = r < R ? r : -1;
        d->cur = d->plogits;
        d->n_cur = R;
    }
    free(tok); free(n_new);
}

// ---- generation --------------------------------------------------------------

void gen_opts_default(GenOpts *o) {
    memset(o, 0, sizeof *o);
    o->max_new_tokens = 32;
    o->top_p = 1.0f;
    o->eos_id = -1;
}

void gen_output_free(GenOutput *out, int B) {
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < out[b].n; i++) free(out[b].hyps[i].tokens);
        free(out[b].hyps);
    }
}

static int int_cmp(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

// cache positions needed and prompt checks; returns P
static int positions_needed(const Model *m, const int *lens, int B, const GenOpts *o) {
    const int ctx = m->cfg.max_seq_len;
    if (o->max_new_tokens < 1) fail("generation: max_new_tokens must be >= 1 (got %d)", o->max_new_tokens);
    int maxlen = 0;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1) fail("generation: prompt %d is empty", b);
        if (lens[b] >= ctx)
            fail("generation: prompt %d has %d tokens; the model's context (max_seq_len %d) leaves no room to generate",
                 b, lens[b], ctx);
        maxlen = lens[b] > maxlen ? lens[b] : maxlen;
    }
    // the last generated token is never fed back, hence the - 1
    long need = (long)maxlen + o->max_new_tokens - 1;
    return need < ctx ? (int)need : ctx;
}

// Did appending `tok` end the sequence? (not counting the length limit)
static int stop_reason(const GenOpts *o, int seq, const int *gen, int n) {
    if (o->eos_id >= 0 && gen[n - 1] == o->eos_id) return GEN_EOS;
    if (o->n_stop_ids > 0 && n >= o->n_stop_ids &&
        memcmp(gen + n - o->n_stop_ids, o->stop_ids, (size_t)o->n_stop_ids * sizeof(int)) == 0) return GEN_STOP;
    if (o->stop && o->stop(o->stop_ctx, seq, gen, n)) return GEN_STOP;
    return 0;
}

// ---- choosing on the device ------------------------------------------------------
// A step's choices read, per row of the decoder's device logits, the log-softmax
// normaliser, the top k (unconstrained rows) and the logits of the allowed
// tokens, through the backend's logits_lse_topk and gather_cols; one upload
// and one download of those few numbers per step instead of the [rows x V]
// logits. Constrained rows come as lists (the allowed hook's ids, uploaded as
// a CSR list) or as slices of a table that went to the device once
// (allowed_slice: a catalogue trie's child tokens; the step uploads each row's
// offset and start only). A backend without these ops gets its rows
// downloaded and the CPU twins run on them (the same numbers, the old cost).

typedef struct {
    const Backend *be;
    int dev;                     // the backend has the selection ops
    char *dbuf; size_t dcap;     // device: results (lse, top val, top id, gathered), then off + cols
    char *hbuf; size_t hcap;     // host copy of the results
    int *csr; size_t ccap;       // host: off[n + 1], then cols (lists) or src[n] (slices)
    float *rows; size_t rcap;    // fallback: the downloaded rows
    const int *table; int *dtable; int table_len;   // slices' table (host, device), or NULL
    int n, next, total, k;
    int slices;                  // this run: -1 no constrained row yet, 0 lists, 1 slices
    double *lse; float *top_val; int *top_id; float *val;   // results, after pick_run
} Picker;

static void *grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    *cap = need + need / 2;
    p = realloc(p, *cap);
    check(p, "out of memory");
    return p;
}

static void pick_init(Picker *p, const Backend *be) {
    memset(p, 0, sizeof *p);
    p->be = be;
    p->dev = backend_supports(be, BACKEND_DEVICE_PICK);
}

static void pick_free(Picker *p) {
    if (p->dbuf) p->be->free(p->dbuf);
    if (p->dtable) p->be->free(p->dtable);
    free(p->hbuf); free(p->csr); free(p->rows);
}

// The table that slices index (ids in [0, V), each slice ascending without
// repeats), on the device for the picker's lifetime.
static void pick_table(Picker *p, const int *table, int len, int V) {
    check(table && len >= 0, "allowed_slice without allowed_table");
    for (int i = 0; i < len; i++)
        if (table[i] < 0 || table[i] >= V)
            fail("generation: allowed token id %d outside the vocabulary [0, %d)", table[i], V);
    p->table = table;
    p->table_len = len;
    if (p->dev && len > 0) {
        p->dtable = p->be->alloc((size_t)len * sizeof(int));
        p->be->upload(p->dtable, table, (size_t)len * sizeof(int));
    }
}

// A step over rows 0..n-1 of the logits.
static void pick_begin(Picker *p, int n) {
    p->n = n; p->next = 0; p->total = 0; p->slices = -1;
    p->csr = grow(p->csr, &p->ccap, (size_t)(2 * n + 1) * sizeof(int));
    for (int i = 0; i < n; i++) p->csr[n + 1 + i] = 0;   // src of rows without a slice
}

static int *pick_off(const Picker *p) { return p->csr; }
static int *pick_cols_of(const Picker *p) { return p->csr + p->n + 1; }
// The allowed ids of row i, in the order of its gathered values
// (val[off[i] ..]): its list, or its slice of the table.
static const int *pick_ids(const Picker *p, int i) {
    return p->slices == 1 ? p->table + pick_cols_of(p)[i] : pick_cols_of(p) + pick_off(p)[i];
}

// Row i (ascending across calls) reads the logits at table[start .. start + cnt).
static void pick_slice(Picker *p, int i, int start, int cnt) {
    check(i >= p->next && i < p->n, "picker row %d out of order", i);
    check(p->slices != 0, "picker: lists and slices in one run");
    check(start >= 0 && cnt >= 0 && start + cnt <= p->table_len, "allowed slice [%d, %d) outside the table of %d",
          start, start + cnt, p->table_len);
    p->slices = 1;
    for (int j = 1; j < cnt; j++)   // the contract of allowed_table: each slice ascending, no repeats
        check(p->table[start + j - 1] < p->table[start + j], "allowed slice [%d, %d) is not ascending at %d",
              start, start + cnt, start + j);
    int *off = pick_off(p);
    for (int r = p->next; r <= i; r++) off[r] = p->total;
    p->next = i + 1;
    pick_cols_of(p)[i] = start;
    p->total += cnt;
}

// Row i (ascending across calls) reads the logits at ids[0..cnt): kept are
// the ids in [0, V), ascending, without repeats (the set mask_allowed keeps).
static void pick_cols(Picker *p, int i, const int *ids, int cnt, int V) {
    check(i >= p->next && i < p->n, "picker row %d out of order", i);
    check(p->slices != 1, "picker: lists and slices in one run");
    p->slices = 0;
    int *off = pick_off(p);
    for (int r = p->next; r <= i; r++) off[r] = p->total;
    p->next = i + 1;
    p->csr = grow(p->csr, &p->ccap, (size_t)(p->n + 1 + p->total + cnt) * sizeof(int));
    int *c = pick_cols_of(p) + p->total, n = 0, sorted = 1;
    for (int j = 0; j < cnt; j++) {
        if (ids[j] < 0 || ids[j] >= V) continue;
        if (n > 0 && ids[j] <= c[n - 1]) sorted = 0;
        c[n++] = ids[j];
    }
    if (!sorted) {
        qsort(c, (size_t)n, sizeof(int), int_cmp);
        int u = 0;
        for (int j = 0; j < n; j++) if (u == 0 || c[j] != c[u - 1]) c[u++] = c[j];
        n = u;
    }
    p->total += n;
}

// Runs the step on logits[n, V] (device): lse for every row, the top k of
// every row (k = 0: none), the gathered columns.
static void pick_run(Picker *p, const void *logits, int V, int k) {
    const Backend *be = p->be;
    const int n = p->n;
    int *off = pick_off(p);
    for (int r = p->next; r <= n; r++) off[r] = p->total;
    p->next = n;
    p->k = k;
    const size_t o_tv = (size_t)n * sizeof(double), o_ti = o_tv + (size_t)n * k * sizeof(float);
    const size_t o_val = o_ti + (size_t)n * k * sizeof(int), down = o_val + (size_t)p->total * sizeof(float);
    // up: off[n + 1], then the lists' ids or the slices' starts
    const int sl = p->slices == 1;
    const size_t o_csr = (down + 7) / 8 * 8, up = (size_t)(n + 1 + (sl ? n : p->total)) * sizeof(int);
    p->hbuf = grow(p->hbuf, &p->hcap, down > 0 ? down : 8);
    if (n > 0) {
        if (p->dev) {
            if (o_csr + up > p->dcap) {
                if (p->dbuf) be->free(p->dbuf);
                p->dcap = (o_csr + up) + (o_csr + up) / 2;
                p->dbuf = be->alloc(p->dcap);
            }
            char *db = p->dbuf;   // the upload first: it waits for the queue, so the two kernels then run back to back
            const int *d_off = (const int *)(db + o_csr), *d_list = d_off + n + 1;
            if (p->total > 0) be->upload(db + o_csr, p->csr, up);
            be->logits_lse_topk((double *)db, (int *)(db + o_ti), (float *)(db + o_tv), logits, n, V, k);
            if (p->total > 0)   // lists: consecutive slices of the uploaded ids; slices: of the device table
                be->gather_cols((float *)(db + o_val), logits, d_off, sl ? d_list : d_off, sl ? p->dtable : d_list,
                                n, V);
            be->download(p->hbuf, db, down);
        } else {   // download the rows, run the CPU twins on them
            const Backend *cpu = backend_cpu();
            p->rows = grow(p->rows, &p->rcap, (size_t)n * V * sizeof(float));
            act_download(be, p->rows, logits, (size_t)n * V);
            char *hb = p->hbuf;
            cpu->logits_lse_topk((double *)hb, (int *)(hb + o_ti), (float *)(hb + o_tv), p->rows, n, V, k);
            if (p->total > 0)
                cpu->gather_cols((float *)(hb + o_val), p->rows, off, sl ? pick_cols_of(p) : off,
                                 sl ? p->table : pick_cols_of(p), n, V);
        }
    }
    p->lse = (double *)p->hbuf;
    p->top_val = (float *)(p->hbuf + o_tv);
    p->top_id = (int *)(p->hbuf + o_ti);
    p->val = (float *)(p->hbuf + o_val);
}

// The constraint of one row for this step, handed to the picker as the row
// at slot (its allowed ids, or its slice of the table): -1 no constraint,
// 0 nothing may follow, else the number of allowed ids (at most V). ids:
// scratch [V].
static int constrain(const GenOpts *o, Picker *pk, int slot, int seq, const int *gen, int n, int *ids, int V) {
    if (o->allowed_slice) {
        int start = 0;
        const int k = o->allowed_slice(o->allowed_ctx, seq, gen, n, &start);
        if (k > 0) pick_slice(pk, slot, start, k);
        return k < 0 ? -1 : k;
    }
    if (!o->allowed) return -1;
    int k = o->allowed(o->allowed_ctx, seq, gen, n, ids, V);
    k = k < 0 ? -1 : k > V ? V : k;
    if (k > 0) pick_cols(pk, slot, ids, k, V);
    return k;
}

uint64_t gen_stream_seed(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (0xD1B54A32D192ED03ull * (stream + 1));
    return splitmix64(&x);
}

// One step of a single-hypothesis row b (greedy, sampled): tok < 0 means nothing
// was allowed (ends with GEN_CONSTRAINT); else tok is appended with log-prob lp,
// and the row ends on a stop condition or at the length limit. Returns 1 while
// the row stays live (it then feeds tok to the next decoder step).
static int advance_single(const GenOpts *o, const Decoder *d, int P, int b, GenHyp *h, int tok, double lp) {
    int finish = GEN_CONSTRAINT;
    if (tok >= 0) {
        h->logprob += lp;
        h->tokens[h->n++] = tok;
        if (o->on_token) o->on_token(o->cb_ctx, b, h->tokens, h->n);
        finish = stop_reason(o, b, h->tokens, h->n);
        if (!finish && (h->n == o->max_new_tokens || d->kv.len[b] + 1 > P)) finish = GEN_LENGTH;
    }
    if (!finish) return 1;
    h->finish = finish;
    h->score = h->logprob;
    if (o->on_finish) o->on_finish(o->cb_ctx, b, h);
    return 0;
}

// One hypothesis per prompt (greedy, sampling): every row live, room for max_new tokens.
static void single_hyps(GenOutput *out, int B, int max_new, int *live) {
    for (int b = 0; b < B; b++) {
        live[b] = 1;
        out[b].n = 1;
        out[b].hyps = xcalloc(1, sizeof(GenHyp));
        out[b].hyps[0].tokens = xmalloc((size_t)max_new * sizeof(int));
    }
}

// A step's constraints of the live single-hypothesis rows, handed to the
// picker (kind[b] as constrain returns it); returns whether a row is free.
static int constrain_singles(const GenOpts *o, Picker *pk, const Decoder *d, const GenOutput *out,
                             const int *live, int B, int *kind, int *ids, int V) {
    int any_free = 0;
    pick_begin(pk, d->n_cur);
    for (int b = 0; b < B; b++) {
        if (!live[b]) continue;
        const GenHyp *h = &out[b].hyps[0];
        kind[b] = constrain(o, pk, d->slot[b], b, h->tokens, h->n, ids, V);
        if (kind[b] < 0) any_free = 1;
    }
    return any_free;
}

// Greedy: one hypothesis per prompt, B cache rows; the choices read only the
// picked numbers (Picker). Same tokens and log-probs as an argmax over the
// whole masked row (sample_argmax): the first maximum among the allowed tokens
// (token 0 when every allowed logit is -inf, as sample_argmax on the masked row).
static void generate_greedy(Model *m, const int *const *prompts, const int *lens, int B, const GenOpts *o,
                            GenOutput *out) {
    const int V = m->cfg.vocab_size, P = positions_needed(m, lens, B, o);
    Decoder d;
    decoder_create(&d, m, B, P, o->prefill_rows > 0 ? o->prefill_rows : 4096);
    Picker pk;
    pick_init(&pk, m->be);
    if (o->allowed_slice) pick_table(&pk, o->allowed_table, o->allowed_table_len, V);
    int *ids = xmalloc((size_t)V * sizeof(int)), *next = xmalloc((size_t)B * sizeof(int));
    int *n_new = xcalloc((size_t)B, sizeof(int)), *kind = xmalloc((size_t)B * sizeof(int));
    int *need = xmalloc((size_t)B * sizeof(int)), *live = xmalloc((size_t)B * sizeof(int)), n_live = B;
    float *val = xmalloc((size_t)B * sizeof(float));
    double *lse = xmalloc((size_t)B * sizeof(double));
    single_hyps(out, B, o->max_new_tokens, live);
    decoder_prefill(&d, prompts, lens, B, NULL);
    for (int step = 0; step < o->max_new_tokens && n_live > 0; step++) {
        // the allowed hooks, then one picker run for every live row
        const int any_free = constrain_singles(o, &pk, &d, out, live, B, kind, ids, V);
        pick_run(&pk, d.cur, V, any_free ? 1 : 0);
        int n_need = 0;
        for (int b = 0; b < B; b++) {
            need[b] = 0;
            if (!live[b] || kind[b] == 0) continue;
            const int i = d.slot[b];
            lse[b] = pk.lse[i];
            if (kind[b] < 0) {
                const int t = pk.top_id[i];
                next[b] = t >= 0 ? t : 0;
                val[b] = t >= 0 ? pk.top_val[i] : -INFINITY;   // no listed entry: the row is all -inf
            } else {
                const int *off = pick_off(&pk), *ids_i = pick_ids(&pk, i);   // ids_i[j]: the id of val[off[i] + j]
                int best = -1;
                float bv = -INFINITY;
                for (int j = off[i]; j < off[i + 1]; j++) if (pk.val[j] > bv) { bv = pk.val[j]; best = j; }
                if (best >= 0) { next[b] = ids_i[best - off[i]]; val[b] = bv; }
                else {   // every allowed logit is -inf: token 0, whose logit is needed
                    next[b] = 0;
                    need[b] = !(off[i + 1] > off[i] && ids_i[0] == 0);
                    if (!need[b]) val[b] = pk.val[off[i]];
                    n_need += need[b];
                }
            }
        }
        if (n_need > 0) {
            pick_begin(&pk, d.n_cur);
            for (int b = 0; b < B; b++) if (need[b]) pick_cols(&pk, d.slot[b], &next[b], 1, V);
            pick_run(&pk, d.cur, V, 0);
            for (int b = 0; b < B; b++) if (need[b]) val[b] = pk.val[pick_off(&pk)[d.slot[b]]];
        }
        for (int b = 0; b < B; b++) {
            n_new[b] = 0;
            if (!live[b]) continue;
            if (kind[b] == 0) next[b] = -1;
            n_new[b] = advance_single(o, &d, P, b, &out[b].hyps[0], next[b], kind[b] == 0 ? 0.0 : val[b] - lse[b]);
            if (!n_new[b]) { live[b] = 0; n_live--; }
        }
        if (n_live > 0) decoder_step(&d, next, n_new, B, 1, NULL);
    }
    decoder_free(&d);
    pick_free(&pk);
    free(ids); free(next); free(n_new); free(kind); free(need); free(live); free(val); free(lse);
}

// Unconstrained rows fetch the top_k + 1 best logits when a top-k filter
// bounds the draw, up to this k (the device's top-k costs a rescan per entry).
#define SAMPLE_TOPK_MAX 256

typedef struct { int id; float val; } IdVal;

static int id_val_cmp(const void *pa, const void *pb) {
    const int a = ((const IdVal *)pa)->id, b = ((const IdVal *)pb)->id;
    return (a > b) - (a < b);
}

// sample_token_sparse on ids[0..cnt) (ascending) with logits vals, and the
// drawn token's logit in *val
static int draw_sparse(const int *ids, const float *vals, int cnt, const SamplerCfg *sc, double u, float *fs,
                       int *is, float *val) {
    const int tok = sample_token_sparse(ids, vals, cnt, sc, u, fs, is);
    for (int j = 0; j < cnt; j++) if (ids[j] == tok) *val = vals[j];
    return tok;
}

// Sampled (temperature > 0): one hypothesis per prompt, B cache rows. A draw
// filtered by the constraint (the allowed tokens' logits, gathered on the
// device) or by top-k (the top_k + 1 best, fetched) reads only those numbers;
// a row whose draw needs its whole distribution (no top-k, a larger one, or a
// tie at the top-k boundary) downloads the row. The tokens are those of
// sample_token on the whole masked row, drawn from each prompt's own stream.
static void generate_sampled(Model *m, const int *const *prompts, const int *lens, int B, const GenOpts *o,
                             GenOutput *out) {
    const int V = m->cfg.vocab_size, P = positions_needed(m, lens, B, o);
    const Backend *be = m->be;
    Decoder d;
    decoder_create(&d, m, B, P, o->prefill_rows > 0 ? o->prefill_rows : 4096);
    Picker pk;
    pick_init(&pk, be);
    if (o->allowed_slice) pick_table(&pk, o->allowed_table, o->allowed_table_len, V);
    const SamplerCfg sc = {o->temperature, o->top_k, o->top_p};
    const int kk = sc.top_k > 0 && sc.top_k < V && sc.top_k < SAMPLE_TOPK_MAX ? sc.top_k + 1 : 0;
    float *row = xmalloc((size_t)V * sizeof(float)), *block = xmalloc((size_t)B * V * sizeof(float));
    float *fscratch = xmalloc((size_t)V * sizeof(float)), *cval = xmalloc((size_t)(kk + 1) * sizeof(float));
    int *iscratch = xmalloc((size_t)V * sizeof(int)), *ids = xmalloc((size_t)V * sizeof(int));
    int *cid = xmalloc((size_t)(kk + 1) * sizeof(int));
    IdVal *pair = xmalloc((size_t)(kk + 1) * sizeof(IdVal));
    int *next = xmalloc((size_t)B * sizeof(int)), *kind = xmalloc((size_t)B * sizeof(int));
    int *n_new = xcalloc((size_t)B, sizeof(int));
    unsigned char *mark = xcalloc((size_t)V, 1);
    Rng *rng = xmalloc((size_t)B * sizeof(Rng));
    int *live = xmalloc((size_t)B * sizeof(int)), n_live = B;
    for (int b = 0; b < B; b++)
        rng_seed(&rng[b], gen_stream_seed(o->seed, o->stream_ids ? o->stream_ids[b] : (uint64_t)b));
    single_hyps(out, B, o->max_new_tokens, live);
    decoder_prefill(&d, prompts, lens, B, NULL);
    for (int step = 0; step < o->max_new_tokens && n_live > 0; step++) {
        const int any_free = constrain_singles(o, &pk, &d, out, live, B, kind, ids, V);
        pick_run(&pk, d.cur, V, any_free ? kk : 0);
        const float *rows = pk.dev ? NULL : pk.rows;   // the step's rows on the host, once needed
        for (int b = 0; b < B; b++) {
            n_new[b] = 0;
            if (!live[b]) continue;
            GenHyp *h = &out[b].hyps[0];
            next[b] = -1;
            double lp = 0;
            if (kind[b] != 0) {
                const double u = rng_uniform(&rng[b]);   // one number per token, as sample_token draws it
                const int i = d.slot[b];
                int tok = -1;
                float val = 0;
                if (kind[b] > 0) {   // the allowed tokens' logits: the whole masked row, sparse
                    const int c0 = pick_off(&pk)[i], cnt = pick_off(&pk)[i + 1] - c0;
                    const int *ids_i = pick_ids(&pk, i);
                    int finite = 0;
                    for (int j = 0; j < cnt; j++) finite |= pk.val[c0 + j] != -INFINITY;
                    if (finite)   // (an all -inf row draws token 0, whose logit is in the row only)
                        tok = draw_sparse(ids_i, pk.val + c0, cnt, &sc, u, fscratch, iscratch, &val);
                } else if (kk > 0) {   // the top_k + 1 best, best first
                    const int *ti = pk.top_id + (size_t)i * kk;
                    const float *tv = pk.top_val + (size_t)i * kk;
                    int cnt = 0;
                    while (cnt < kk && ti[cnt] >= 0) cnt++;
                    if (cnt > 0 && sample_topk_decided(tv, cnt, kk, sc.top_k, sc.temperature)) {
                        for (int j = 0; j < cnt; j++) pair[j] = (IdVal){ti[j], tv[j]};
                        qsort(pair, (size_t)cnt, sizeof *pair, id_val_cmp);   // by id (distinct)
                        for (int j = 0; j < cnt; j++) { cid[j] = pair[j].id; cval[j] = pair[j].val; }
                        tok = draw_sparse(cid, cval, cnt, &sc, u, fscratch, iscratch, &val);
                    }
                }
                if (tok < 0) {   // the whole row: the step's rows come down once, masked as the hook says
                    if (!rows) {
                        act_download(be, block, d.cur, (size_t)d.n_cur * V);
                        rows = block;
                    }
                    const float *full = rows + (size_t)i * V;
                    memcpy(row, full, (size_t)V * sizeof(float));
                    if (kind[b] > 0)
                        mask_allowed(row, V, pick_ids(&pk, i), pick_off(&pk)[i + 1] - pick_off(&pk)[i], mark);
                    tok = sample_token_u(row, V, &sc, u, fscratch, iscratch);
                    val = full[tok];
                }
                next[b] = tok;
                lp = val - pk.lse[i];
            }
            n_new[b] = advance_single(o, &d, P, b, h, next[b], lp);
            if (!n_new[b]) { live[b] = 0; n_live--; }
        }
        if (n_live > 0) decoder_step(&d, next, n_new, B, 1, NULL);
    }
    decoder_free(&d);
    pick_free(&pk);
    free(row); free(block); free(fscratch); free(cval); free(iscratch); free(ids); free(cid); free(pair);
    free(next); free(kind); free(n_new); free(mark); free(rng); free(live);
}

// ---- beam search ---------------------------------------------------------------

typedef struct { double score; int beam, tok; } Cand;

// best first; ties to the lower beam, then the lower token (deterministic)
static int cand_cmp(const void *pa, const void *pb) {
    const Cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->beam != b->beam) return a->beam < b->beam ? -1 : 1;
    return a->tok < b->tok ? -1 : a->tok > b->tok;
}

static double beam_score(double logprob, int n, float alpha) {
    return alpha == 0.0f ? logprob : logprob / pow(n > 1 ? n : 1, alpha);
}

// Keeps the W best finished hypotheses of a prompt, best first (a later one
// must beat an earlier one strictly to pass it).
static void add_finished(GenOutput *f, int W, const int *tokens, int n, double logprob, float alpha, int finish) {
    const double score = beam_score(logprob, n, alpha);
    if (f->n == W && score <= f->hyps[W - 1].score) return;
    int i;
    if (f->n < W) i = f->n++;
    else { i = W - 1; free(f->hyps[i].tokens); }   // evict the worst
    while (i > 0 && f->hyps[i - 1].score < score) { f->hyps[i] = f->hyps[i - 1]; i--; }
    GenHyp *h = &f->hyps[i];
    h->tokens = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (n > 0) memcpy(h->tokens, tokens, (size_t)n * sizeof(int));   // (an empty hypothesis may come with NULL)
    h->n = n; h->logprob = logprob; h->score = score; h->finish = finish;
}

// Beam search of width W: B*W cache rows, row b*W + j = beam j of prompt b.
// Each step expands every live beam by its 2W best allowed tokens, ranks all
// candidates of a prompt by log-prob sum, moves the finishing ones (EOS, stop)
// ranked within the first W to the finished list and keeps the W best others
// alive; the cache rows follow their parent beams (kv_cache_reorder).
static void generate_beams(Model *m, const int *const *prompts, const int *lens, int B, const GenOpts *o,
                           GenOutput *out) {
    const int V = m->cfg.vocab_size, W = o->beams, R = B * W, L = o->max_new_tokens;
    const int P = positions_needed(m, lens, B, o);
    Decoder d;
    decoder_create(&d, m, R, P, o->prefill_rows > 0 ? o->prefill_rows : 4096);
    Picker pk;
    pick_init(&pk, m->be);
    if (o->allowed_slice) pick_table(&pk, o->allowed_table, o->allowed_table_len, V);
    int *slot = xmalloc((size_t)R * sizeof(int)), *kind = xcalloc((size_t)R, sizeof(int));
    int *toks = xmalloc((size_t)R * L * sizeof(int)), *toks2 = xmalloc((size_t)R * L * sizeof(int));
    int *ntok = xcalloc((size_t)R, sizeof(int)), *ntok2 = xcalloc((size_t)R, sizeof(int));
    int *alive = xcalloc((size_t)R, sizeof(int));
    double *sum = xcalloc((size_t)R, sizeof(double)), *sum2 = xcalloc((size_t)R, sizeof(double));
    int *src = xmalloc((size_t)R * sizeof(int)), *next = xcalloc((size_t)R, sizeof(int));
    int *n_new = xcalloc((size_t)R, sizeof(int)), *done = xcalloc((size_t)B, sizeof(int));
    int *ids = xmalloc((size_t)V * sizeof(int)), *top = xmalloc((size_t)2 * W * sizeof(int));
    Cand *cand = xmalloc((size_t)2 * W * W * sizeof(Cand));
    for (int b = 0; b < B; b++) { out[b].n = 0; out[b].hyps = xcalloc((size_t)W, sizeof(GenHyp)); }

    // prefill each prompt once into row b, then copy it to the prompt's W rows
    // (the first step reads row b's logits for beam row b*W)
    decoder_prefill(&d, prompts, lens, B, NULL);
    for (int r = 0; r < R; r++) slot[r] = r % W == 0 ? d.slot[r / W] : -1;
    for (int i = 0; i < R; i++) src[i] = i / W;
    kv_cache_reorder(&d.kv, m->be, src, R);
    for (int b = 0; b < B; b++) alive[b * W] = 1;   // one live beam to start: no duplicates

    for (int step = 0; step < L; step++) {
        int any_live = 0, any_free = 0;
        // the allowed hooks of every live beam, then one picker run: each
        // beam's 2W best allowed tokens and its normaliser
        pick_begin(&pk, d.n_cur);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < W && !done[b]; j++) {
                const int r = b * W + j;
                if (!alive[r]) continue;
                kind[r] = constrain(o, &pk, slot[r], b, toks + (size_t)r * L, ntok[r], ids, V);
                if (kind[r] < 0) any_free = 1;
            }
        pick_run(&pk, d.cur, V, any_free ? 2 * W : 0);
        const int *off = pick_off(&pk);
        for (int b = 0; b < B; b++) {
            int nc = 0;
            for (int j = 0; j < W && !done[b]; j++) {
                const int r = b * W + j;
                if (!alive[r]) continue;
                if (kind[r] == 0) {
                    add_finished(&out[b], W, toks + (size_t)r * L, ntok[r], sum[r], o->length_alpha, GEN_CONSTRAINT);
                    continue;
                }
                const int i = slot[r];
                const double lse = pk.lse[i];
                if (kind[r] < 0) {   // the top 2W of the row
                    for (int t = 0; t < 2 * W && pk.top_id[(size_t)i * 2 * W + t] >= 0; t++)
                        cand[nc++] = (Cand){sum[r] + (pk.top_val[(size_t)i * 2 * W + t] - lse), j,
                                            pk.top_id[(size_t)i * 2 * W + t]};
                } else {             // the top 2W of the allowed logits (ascending ids: ties to the lower id)
                    const int k = top_n(pk.val + off[i], off[i + 1] - off[i], 2 * W, top);
                    const int *ids_i = pick_ids(&pk, i);
                    for (int t = 0; t < k; t++)
                        cand[nc++] = (Cand){sum[r] + (pk.val[off[i] + top[t]] - lse), j, ids_i[top[t]]};
                }
            }
            qsort(cand, (size_t)nc, sizeof *cand, cand_cmp);
            // the new live beams of this prompt, in rank order
            int kept = 0;
            for (int i = 0; i < nc && kept < W; i++) {
                const int pr = b * W + cand[i].beam, r = b * W + kept;
                int *t = toks2 + (size_t)r * L;
                memcpy(t, toks + (size_t)pr * L, (size_t)ntok[pr] * sizeof(int));
                const int n = ntok[pr] + 1;
                t[n - 1] = cand[i].tok;
                const int finish = stop_reason(o, b, t, n);
                if (finish) {
                    if (i < W) add_finished(&out[b], W, t, n, cand[i].score, o->length_alpha, finish);
                    continue;
                }
                src[r] = pr; sum2[r] = cand[i].score; next[r] = cand[i].tok; ntok2[r] = n;
                kept++;
            }
            for (int j = 0; j < W; j++) {
                const int r = b * W + j;
                if (j < kept) { ntok[r] = ntok2[r]; alive[r] = 1; sum[r] = sum2[r]; }
                else { alive[r] = 0; src[r] = r; }
            }
            // out of length, or no live beam can beat the W-th finished one:
            // scores only fall with more tokens, and with alpha > 0 the best a
            // beam could reach is its sum now over the longest allowed length
            // (every live beam of a prompt holds step + 1 tokens; feeding the
            // last one needs a free cache position)
            const int full = step == L - 1 || lens[b] + step + 1 > P;
            int stop_all = kept == 0 || full;
            if (!stop_all && out[b].n == W) {
                double bound = -INFINITY;
                for (int j = 0; j < kept; j++) {
                    const int r = b * W + j;
                    const double s = o->length_alpha > 0 ? sum[r] / pow(L, o->length_alpha)
                                                         : sum[r];
                    bound = s > bound ? s : bound;
                }
                stop_all = bound <= out[b].hyps[W - 1].score;
            }
            if (stop_all) {
                for (int j = 0; j < kept; j++) {
                    const int r = b * W + j;
                    if (full)
                        add_finished(&out[b], W, toks2 + (size_t)r * L, ntok[r], sum[r], o->length_alpha, GEN_LENGTH);
                    alive[r] = 0;
                }
                done[b] = 1;
            }
            for (int j = 0; j < W; j++) {
                const int r = b * W + j;
                n_new[r] = alive[r];
                any_live |= alive[r];
            }
        }
        int *t = toks; toks = toks2; toks2 = t;
        if (!any_live) break;
        // rows of finished prompts and dead beams keep their own cache (src = r)
        for (int r = 0; r < R; r++) if (!alive[r]) src[r] = r;
        kv_cache_reorder(&d.kv, m->be, src, R);
        decoder_step(&d, next, n_new, R, 1, NULL);
        memcpy(slot, d.slot, (size_t)R * sizeof(int));
    }
    decoder_free(&d);
    pick_free(&pk);
    free(slot); free(kind); free(toks); free(toks2); free(ntok); free(ntok2); free(alive); free(sum); free(sum2);
    free(src); free(next); free(n_new); free(done); free(ids); free(top); free(cand);
}

void generate(Model *m, const int *const *prompts, const int *lens, int B, const GenOpts *o, GenOutput *out) {
    if (B < 1) return;
    if (o->beams >= 1) generate_beams(m, prompts, lens, B, o, out);
    else if (o->temperature <= 0.0f) generate_greedy(m, prompts, lens, B, o, out);
    else generate_sampled(m, prompts, lens, B, o, out);
}
