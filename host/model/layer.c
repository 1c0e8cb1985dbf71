// A transformer layer's forward as a flat list of named backend ops, shared
// by training and decoding (layer.h); only the attention step branches.
#include "layer.h"
#include "lora.h"

void layer_forward(Model *m, int l, const LayerActs *L, void *tmp, const LayerMode *mode, int N) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const LayerWeights *w = &m->w.layers[l];
    const int C = c->dim, F = c->ffn_dim, NH = c->n_heads, NKV = c->n_kv_heads, D = c->head_dim;
    const int QD = NH * D, KVD = NKV * D;
    Lora *lo = m->lora;       // adapters add their path after each targeted matmul
#define LORA_FWD(t, out, inp) do { if (lo) lora_fwd(m, l, t, out, inp, N, mode->lora_scratch); } while (0)
    be->matmul_fwd(L->q, L->ln1, w->wq, w->bq, N, C, QD);                // q[N,NH*D]
    be->matmul_fwd(L->k, L->ln1, w->wk, w->bk, N, C, KVD);               // k[N,NKV*D]
    be->matmul_fwd(L->v, L->ln1, w->wv, w->bv, N, C, KVD);               // v[N,NKV*D]
    LORA_FWD(LORA_Q, L->q, L->ln1);
    LORA_FWD(LORA_K, L->k, L->ln1);
    LORA_FWD(LORA_V, L->v, L->ln1);
    if (!mode->k_cache) {     // whole sequences [B,T], causal within each
        be->rope_fwd(L->q, mode->rope_cos, mode->rope_sin, mode->B, mode->T, NH, D);
        be->rope_fwd(L->k, mode->rope_cos, mode->rope_sin, mode->B, mode->T, NKV, D);
        be->attention_fwd(L->att, L->lse, L->q, L->k, L->v, mode->lengths, mode->B, mode->T, NH, NKV, D);
    } else {                  // new tokens [R,S]: the cache gains the block, attention reads all of it
        be->rope_at_fwd(L->q, mode->rope_cos, mode->rope_sin, mode->pos, N, NH, D);
        be->rope_at_fwd(L->k, mode->rope_cos, mode->rope_sin, mode->pos, N, NKV, D);
        be->kv_write(mode->k_cache, L->k, mode->start, mode->n_new, mode->R, mode->S, mode->P, KVD);
        be->kv_write(mode->v_cache, L->v, mode->start, mode->n_new, mode->R, mode->S, mode->P, KVD);
        be->attention_cached_fwd(L->att, L->q, mode->k_cache, mode->v_cache, mode->start, mode->n_new, mode->R,
                                 mode->S, mode->P, NH, NKV, D);
    }
    be->matmul_fwd(tmp, L->att, w->wo, NULL, N, QD, C);                  // o[N,C]
    LORA_FWD(LORA_O, tmp, L->att);
    be->residual_rmsnorm_fwd(L->x2, L->ln2, L->rstd2, L->x, tmp, w->ln2, c->rms_eps, N, C);   // x2 = x + o; ln2
    be->matmul_fwd(L->gate, L->ln2, w->wgate, NULL, N, C, F);            // gate[N,F]
    be->matmul_fwd(L->up, L->ln2, w->wup, NULL, N, C, F);                // up[N,F]
    LORA_FWD(LORA_GATE, L->gate, L->ln2);
    LORA_FWD(LORA_UP, L->up, L->ln2);
    be->swiglu_fwd(L->act, L->gate, L->up, (size_t)N * F);               // act[N,F]
    be->matmul_fwd(tmp, L->act, w->wdown, NULL, N, F, C);                // mlp out[N,C]
    LORA_FWD(LORA_DOWN, tmp, L->act);
#undef LORA_FWD
}
