// Forward and backward of the whole model over a batch: the layers' forward
// is layer.c's (shared with decoding), the backward mirrors it in reverse as
// a flat list of named backend ops per layer.
#include <math.h>
#include <string.h>
#include "model.h"
#include "kernels/errors.h"
#include "lora.h"
#include "act.h"
#include "layer.h"

// ---- activation buffers ----------------------------------------------------

static float *falloc(const Backend *be, size_t n) { return be->alloc(n * sizeof(float)); }

void acts_free(Model *m) {
    if (!m->acts_ready) return;
    const Backend *be = m->be;
    Acts *a = &m->acts;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerActs *L = &a->layers[l];
        void *bufs[] = {L->x, L->ln1, L->rstd1, L->q, L->k, L->v, L->att, L->lse, L->x2,
                        L->ln2, L->rstd2, L->gate, L->up, L->act};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
    }
    free(a->layers);
    void *bufs[] = {a->out, a->lnf, a->rstdf, a->tmp, a->rope_cos, a->rope_sin, a->tokens, a->lengths,
                    a->rows, a->targets, a->head_lp, a->head_lse, a->head_w, a->dres, a->dtmp,
                    a->dwide1, a->dwide2, a->dwide3, a->dq, a->dk, a->dv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
    free(m->head_pos);
    free(m->head_lp);
    memset(a, 0, sizeof *a);
    m->head_pos = NULL; m->head_lp = NULL;
    m->acts_ready = 0;
}

static void acts_ensure(Model *m, int B, int T) {
    Acts *a = &m->acts;
    if (m->acts_ready && a->B * a->T >= B * T && a->T >= T && a->B >= B) return;
    if (m->acts_ready) { B = B > a->B ? B : a->B; T = T > a->T ? T : a->T; }
    acts_free(m);
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const size_t N = (size_t)B * T, C = c->dim, F = c->ffn_dim;
    const size_t QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    a->B = B; a->T = T;
    a->layers = xcalloc((size_t)c->n_layers, sizeof *a->layers);
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *L = &a->layers[l];
        L->x = act_alloc(be, N * C);    L->ln1 = act_alloc(be, N * C); L->rstd1 = falloc(be, N);
        L->q = act_alloc(be, N * QD);   L->k = act_alloc(be, N * KVD); L->v = act_alloc(be, N * KVD);
        L->att = act_alloc(be, N * QD); L->lse = falloc(be, N * c->n_heads);
        L->x2 = act_alloc(be, N * C);   L->ln2 = act_alloc(be, N * C); L->rstd2 = falloc(be, N);
        L->gate = act_alloc(be, N * F); L->up = act_alloc(be, N * F);  L->act = act_alloc(be, N * F);
    }
    a->out = act_alloc(be, N * C); a->lnf = act_alloc(be, N * C); a->rstdf = falloc(be, N);
    a->tmp = act_alloc(be, N * C);
    a->rope_cos = falloc(be, (size_t)T * c->head_dim / 2);
    a->rope_sin = falloc(be, (size_t)T * c->head_dim / 2);
    a->tokens = be->alloc(N * sizeof(int)); a->lengths = be->alloc((size_t)B * sizeof(int));
    a->rows = be->alloc(N * sizeof(int)); a->targets = be->alloc(N * sizeof(int));
    a->head_lp = falloc(be, N); a->head_lse = falloc(be, N); a->head_w = falloc(be, N);
    // backward scratch: the MLP needs three [N,F] gradients at once; the
    // attention reuses one of them for d att [N,NH*D]
    const size_t wide = F > QD ? F : QD;
    a->dres = falloc(be, N * C); a->dtmp = falloc(be, N * C);
    a->dwide1 = falloc(be, N * wide); a->dwide2 = falloc(be, N * wide); a->dwide3 = falloc(be, N * wide);
    a->dq = falloc(be, N * QD); a->dk = falloc(be, N * KVD); a->dv = falloc(be, N * KVD);
    m->head_pos = xmalloc(N * sizeof(int));
    m->head_lp = xmalloc(N * sizeof(float));
    m->acts_ready = 1;
}

// ---- rotary tables -----------------------------------------------------------

static void rope_tables(Model *m, int T) {
    const size_t n = (size_t)T * (m->cfg.head_dim / 2);
    float *cs = xmalloc(n * sizeof(float)), *sn = xmalloc(n * sizeof(float));
    rope_tables_host(&m->cfg, T, cs, sn);
    m->be->upload(m->acts.rope_cos, cs, n * sizeof(float));
    m->be->upload(m->acts.rope_sin, sn, n * sizeof(float));
    free(cs); free(sn);
}

// ---- forward -----------------------------------------------------------------

// The forward of model_forward; with pos_weight (host, [B*T]) also the head's
// gradient of -sum_i pos_weight[head_pos[i]] * logprob[i] (model_forward_with_head_grad).
static int forward(Model *m, const Batch *batch, int all_positions, const float *pos_weight) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const int B = batch->B, T = batch->T, N = B * T, C = c->dim;
    if (T > c->max_seq_len)
        fail("batch has %d positions but the model's max_seq_len is %d", T, c->max_seq_len);
    acts_ensure(m, B, T);
    Acts *a = &m->acts;
    rope_tables(m, T);

    // tokens at padded positions are ignored: feed id 0 there so any filler works
    int *tok = xmalloc((size_t)N * sizeof(int)), *rows = xmalloc((size_t)N * sizeof(int)),
        *tgt = xmalloc((size_t)N * sizeof(int));
    int n = 0;
    double tokens = 0, attn_pairs = 0;
    for (int b = 0; b < B; b++) {
        const int len = batch->lengths[b];
        if (len < 0 || len > T) fail("batch: lengths[%d] = %d outside [0, %d]", b, len, T);
        tokens += len;
        attn_pairs += 0.5 * len * (len + 1.0);
        for (int t = 0; t < T; t++) {
            int id = batch->tokens[b * T + t];
            if (t < len && (id < 0 || id >= c->vocab_size))
                fail("batch: token id %d at [%d,%d] outside the vocabulary [0, %d)", id, b, t, c->vocab_size);
            tok[b * T + t] = t < len ? id : 0;
            if (t >= 1 && t < len && (all_positions || batch->mask[b * T + t] != 0.0f)) {
                rows[n] = b * T + t - 1;          // the hidden state at t-1 predicts token t
                tgt[n] = id;
                m->head_pos[n++] = b * T + t;
            }
        }
    }
    be->upload(a->tokens, tok, (size_t)N * sizeof(int));
    be->upload(a->lengths, batch->lengths, (size_t)B * sizeof(int));
    be->upload(a->rows, rows, (size_t)n * sizeof(int));
    be->upload(a->targets, tgt, (size_t)n * sizeof(int));
    if (pos_weight) {   // the head rows' loss weights, in tgt (no longer needed)
        float *hw = (float *)tgt;
        for (int i = 0; i < n; i++) hw[i] = pos_weight[m->head_pos[i]];
        be->upload(a->head_w, hw, (size_t)n * sizeof(float));
    }
    free(tok); free(rows); free(tgt);
    a->cur_B = B; a->cur_T = T; a->n_head = n;

    if (m->lora) lora_acts_ensure(m, N);   // the adapters' activations, kept for the backward
    const LayerMode mode = {.rope_cos = a->rope_cos, .rope_sin = a->rope_sin, .B = B, .T = T, .lengths = a->lengths};
    // each residual add is fused with the norm that reads its result: the
    // layer's ln2, and the next layer's ln1 (the final norm after the last)
    be->embedding_fwd(a->layers[0].x, a->tokens, m->w.embed, N, C);         // x[N,C]
    be->rmsnorm_fwd(a->layers[0].ln1, a->layers[0].rstd1, a->layers[0].x, m->w.layers[0].ln1, c->rms_eps, N, C);
    for (int l = 0; l < c->n_layers; l++) {
        LayerActs *L = &a->layers[l];
        const int last = l + 1 == c->n_layers;
        LayerActs *Ln = last ? NULL : &a->layers[l + 1];
        layer_forward(m, l, L, a->tmp, &mode, N);                           // x2, and the MLP's output in tmp
        // x' = x2 + mlp, then the next layer's ln1 (or the final norm: lnf)
        be->residual_rmsnorm_fwd(last ? a->out : Ln->x, last ? a->lnf : Ln->ln1, last ? a->rstdf : Ln->rstd1,
                                 L->x2, a->tmp, last ? m->w.norm : m->w.layers[l + 1].ln1, c->rms_eps, N, C);
    }
    if (pos_weight) {
        // d lnf (model_backward's first gradient) and the head's weight gradient, from the same logits
        be->zero(a->dtmp, (size_t)N * C * sizeof(float));
        if (n > 0)
            be->logprob_fwd_bwd(a->head_lp, a->head_lse, a->dtmp, m->lora ? NULL : m->g.lm_head, a->lnf,
                                m->w.lm_head, a->rows, a->targets, a->head_w, n, C, c->vocab_size);
    } else if (n > 0) {
        be->logprob_fwd(a->head_lp, a->head_lse, a->lnf, m->w.lm_head, a->rows, a->targets, n, C,
                        c->vocab_size);
    }
    if (n > 0) be->download(m->head_lp, a->head_lp, (size_t)n * sizeof(float));
    a->head_grad_done = pos_weight != NULL;
    m->n_head = n;
    m->last_fwd_flops = model_forward_flops(c, tokens, attn_pairs, n);
    m->work_flops += m->last_fwd_flops;
    m->work_tokens += tokens;
    return n;
}

int model_forward(Model *m, const Batch *batch, int all_positions) {
    return forward(m, batch, all_positions, NULL);
}

int model_forward_with_head_grad(Model *m, const Batch *batch, const float *pos_weight) {
    return forward(m, batch, 0, pos_weight);
}

// ---- backward ----------------------------------------------------------------

// Where the gradients of layer l start in the trainable buffer (both are laid out
// embedding, layers 0 .. n_layers-1, final norm, head: model.c; the adapters layer by
// layer: lora.c); l = n_layers: where the layers' end. The backward finishes the
// buffer from the end towards the start, a piece at a time.
static size_t grads_start(const Model *m, int l) {
    const Lora *lo = m->lora;
    if (!lo) return l < m->cfg.n_layers ? (size_t)((float *)m->g.layers[l].ln1 - m->grads)
                                        : (size_t)((float *)m->g.norm - m->grads);
    for (int s = l * LORA_N_TARGETS; s < m->cfg.n_layers * LORA_N_TARGETS; s++)
        if (lo->g[s].A) return (size_t)((float *)lo->g[s].A - lo->grads);
    return lo->numel;
}

// The piece of the backward that just ended (-1: the embedding; n_layers: the head and
// final norm; else that layer) wrote its last gradients: tell m->grads_final their range.
static void piece_done(const Model *m, int piece) {
    if (!m->grads_final) return;
    const int L = m->cfg.n_layers;
    const size_t end = m->lora ? m->lora->numel : m->numel;
    m->grads_final(piece < 0 ? 0 : grads_start(m, piece), piece < L ? grads_start(m, piece + 1) : end);
}

void model_backward(Model *m, const float *weight_host) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    Acts *a = &m->acts;
    check(m->acts_ready, "model_backward without a forward");
    const int B = a->cur_B, T = a->cur_T, N = B * T, C = c->dim, F = c->ffn_dim;
    const int NH = c->n_heads, NKV = c->n_kv_heads, D = c->head_dim;
    const int QD = NH * D, KVD = NKV * D, n = a->n_head;
    // With LoRA the base is frozen: its gradient outputs become NULL (skipped)
    // and the adapters get theirs from lora_bwd next to each targeted matmul.
    Lora *lo = m->lora;
    const int fz = lo != NULL;
#define G(p) (fz ? NULL : (p))
#define LORA_BWD(t, dinp, dout, inp) do { if (lo) lora_bwd(m, l, t, dinp, dout, inp, N); } while (0)

    // head: d lnf (already in dtmp after model_forward_with_head_grad), then
    // through the final norm into the residual stream
    if (a->head_grad_done) {
        check(weight_host == NULL, "model_backward: the head's gradient came with the forward; pass no weights");
        a->head_grad_done = 0;
    } else {
        be->zero(a->dtmp, (size_t)N * C * sizeof(float));
        if (n > 0) {
            if (weight_host) be->upload(a->head_w, weight_host, (size_t)n * sizeof(float));
            be->logprob_bwd(a->dtmp, G(m->g.lm_head), a->lnf, m->w.lm_head, a->rows, a->targets,
                            a->head_lse, a->head_w, n, C, c->vocab_size);
        }
    }
    be->zero(a->dres, (size_t)N * C * sizeof(float));
    be->rmsnorm_bwd(a->dres, G(m->g.norm), a->dtmp, a->out, m->w.norm, a->rstdf, N, C);
    piece_done(m, c->n_layers);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        LayerWeights *w = &m->w.layers[l], *g = &m->g.layers[l];
        LayerActs *L = &a->layers[l];
        // MLP branch: dres holds d x' and gains the branch's d x2
        float *dact = a->dwide1, *dgate = a->dwide2, *dup = a->dwide3;
        be->zero(dact, (size_t)N * F * sizeof(float));
        be->matmul_bwd(dact, G(g->wdown), NULL, a->dres, L->act, w->wdown, N, F, C);
        LORA_BWD(LORA_DOWN, dact, a->dres, L->act);
        be->zero(dgate, (size_t)N * F * sizeof(float));
        be->zero(dup, (size_t)N * F * sizeof(float));
        be->swiglu_bwd(dgate, dup, dact, L->gate, L->up, (size_t)N * F);
        be->zero(a->dtmp, (size_t)N * C * sizeof(float));
        be->matmul_bwd(a->dtmp, G(g->wgate), NULL, dgate, L->ln2, w->wgate, N, C, F);
        be->matmul_bwd(a->dtmp, G(g->wup), NULL, dup, L->ln2, w->wup, N, C, F);
        LORA_BWD(LORA_GATE, a->dtmp, dgate, L->ln2);
        LORA_BWD(LORA_UP, a->dtmp, dup, L->ln2);
        be->rmsnorm_bwd(a->dres, G(g->ln2), a->dtmp, L->x2, w->ln2, L->rstd2, N, C);

        // attention branch: dres holds d x2 and gains the branch's d x
        float *datt = a->dwide1;
        be->zero(datt, (size_t)N * QD * sizeof(float));
        be->matmul_bwd(datt, G(g->wo), NULL, a->dres, L->att, w->wo, N, QD, C);
        LORA_BWD(LORA_O, datt, a->dres, L->att);
        be->zero(a->dq, (size_t)N * QD * sizeof(float));
        be->zero(a->dk, (size_t)N * KVD * sizeof(float));
        be->zero(a->dv, (size_t)N * KVD * sizeof(float));
        be->attention_bwd(a->dq, a->dk, a->dv, datt, L->att, L->lse, L->q, L->k, L->v, a->lengths,
                          B, T, NH, NKV, D);
        be->rope_bwd(a->dq, a->rope_cos, a->rope_sin, B, T, NH, D);
        be->rope_bwd(a->dk, a->rope_cos, a->rope_sin, B, T, NKV, D);
        be->zero(a->dtmp, (size_t)N * C * sizeof(float));
        be->matmul_bwd(a->dtmp, G(g->wq), G(g->bq), a->dq, L->ln1, w->wq, N, C, QD);
        be->matmul_bwd(a->dtmp, G(g->wk), G(g->bk), a->dk, L->ln1, w->wk, N, C, KVD);
        be->matmul_bwd(a->dtmp, G(g->wv), G(g->bv), a->dv, L->ln1, w->wv, N, C, KVD);
        LORA_BWD(LORA_Q, a->dtmp, a->dq, L->ln1);
        LORA_BWD(LORA_K, a->dtmp, a->dk, L->ln1);
        LORA_BWD(LORA_V, a->dtmp, a->dv, L->ln1);
        be->rmsnorm_bwd(a->dres, G(g->ln1), a->dtmp, L->x, w->ln1, L->rstd1, N, C);
        piece_done(m, l);
    }
    if (!fz) be->embedding_bwd(m->g.embed, a->dres, a->tokens, N, C, c->vocab_size);
    piece_done(m, -1);
    m->work_flops += 2 * m->last_fwd_flops;
#undef G
#undef LORA_BWD
}

// ---- debugging outputs -------------------------------------------------------

// Full logits of the last forward, in row chunks so only [chunk, V] is ever
// temporary on the device. Padded positions are written as 0.
void model_logits(Model *m, const Batch *batch, float *logits_host) {
    const Backend *be = m->be;
    const int T = m->acts.cur_T, N = m->acts.cur_B * T, C = m->cfg.dim, V = m->cfg.vocab_size;
    const int chunk = 64;
    void *buf = act_alloc(be, (size_t)chunk * V);
    for (int r = 0; r < N; r += chunk) {
        int rows = N - r < chunk ? N - r : chunk;
        be->matmul_fwd(buf, act_at(be, m->acts.lnf, (size_t)r * C), m->w.lm_head, NULL, rows, C, V);
        act_download(be, logits_host + (size_t)r * V, buf, (size_t)rows * V);
    }
    be->free(buf);
    for (int i = 0; i < N; i++)
        if (i % T >= batch->lengths[i / T]) memset(logits_host + (size_t)i * V, 0, (size_t)V * sizeof(float));
}

// Final-normed hidden states of a forward over batch: the LM head's input,
// Hugging Face's hidden_states[-1] / last_hidden_state. The forward runs with
// no head rows (an all-zero mask), so no logits are computed.
void model_hidden(Model *m, const Batch *batch, float *hidden_host) {
    const int B = batch->B, T = batch->T, C = m->cfg.dim;
    float *zero = xcalloc((size_t)B * T, sizeof(float));
    Batch b = *batch;
    b.mask = zero;
    model_forward(m, &b, 0);
    free(zero);
    act_download(m->be, hidden_host, m->acts.lnf, (size_t)B * T * C);
    for (int i = 0; i < B * T; i++)
        if (i % T >= batch->lengths[i / T]) memset(hidden_host + (size_t)i * C, 0, (size_t)C * sizeof(float));
}

double model_forward_flops(const ModelConfig *c, double tokens, double attn_pairs, double head_rows) {
    const double C = c->dim, QD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    const double layer_w = C * QD + 2 * C * KVD + QD * C + 3 * C * c->ffn_dim;
    return 2 * layer_w * c->n_layers * tokens + 4.0 * c->n_layers * QD * attn_pairs +
           2.0 * c->vocab_size * C * head_rows;
}

double model_grad_norm(Model *m) {
    if (m->lora) return sqrt(m->be->sumsq(m->lora->grads, m->lora->numel));
    return sqrt(m->be->sumsq(m->grads, m->numel));
}

void model_zero_grad(Model *m) {
    if (m->lora) m->be->zero(m->lora->grads, m->lora->numel * sizeof(float));
    else m->be->zero(m->grads, m->numel * sizeof(float));
}
