// A decoder-only Llama-family model: configuration, the parameter layout
// (one allocation carved into tensors with Hugging Face names), and the
// forward/backward orchestration over a Backend.
#ifndef SPREC_MODEL_H
#define SPREC_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/backend.h"

// rope_scaling: how the rotary inverse frequencies are scaled
enum { ROPE_NONE = 0, ROPE_LLAMA3 = 1, ROPE_FREQS = 2 };
#define ROPE_MAX_PAIRS 256   // rope_freqs capacity: head_dim <= 512

typedef struct {
    int vocab_size, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, max_seq_len;
    float rope_theta, rms_eps;
    int tie_embeddings, qkv_bias;
    // ROPE_LLAMA3: transformers' "llama3" curve of the next four fields (Llama 3.1);
    // ROPE_FREQS: pair i's inverse frequency divided by rope_freqs[i], the per-frequency
    // factors as given (a GGUF's rope_freqs.weight); rope_original_max_pos is kept
    // for the llama3 curve an export fits to them.
    int rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    float rope_freqs[ROPE_MAX_PAIRS];   // [head_dim/2] with ROPE_FREQS, else unused (0)
} ModelConfig;

// Checks ranges and divisibility; on a problem calls fail() naming `where`.
void model_config_validate(const ModelConfig *c, const char *where);

// RoPE frequencies of a config (rope_tables.c; the tables: rope_tables_host below).
// Pair i's inverse frequency before scaling, float32 as Hugging Face computes it.
float rope_base_freq(const ModelConfig *c, int i);
// The divisor the llama3 curve of c (rope_factor, low/high_freq_factor,
// original_max_pos) gives pair i's inverse frequency.
double rope_llama3_divisor(const ModelConfig *c, int i);
// Largest relative difference between the llama3 curve of c and factors[head_dim/2]
// (NaN counts as largest); *at: its pair.
double rope_llama3_worst(const ModelConfig *c, const float *factors, int *at);
// The llama3 curve that gives every factor of c's rope_freqs (ROPE_FREQS) within
// 1e-5 relative, for original_max_pos = c's: returns 1 and *out = c with that curve
// (ROPE_NONE when every factor is 1); else 0, *at and *worst the pair farthest off
// the closest candidate curve and its relative difference.
int rope_fit_llama3(const ModelConfig *c, ModelConfig *out, int *at, double *worst);

#define MAX_PARAM_NAME 96
#define MAX_PARAM_RANK 2

typedef struct {
    char name[MAX_PARAM_NAME];   // Hugging Face name, e.g. model.layers.3.mlp.up_proj.weight
    int rank;                    // 1 or 2
    int shape[MAX_PARAM_RANK];   // Hugging Face shape
    size_t offset, numel;        // position inside the flat parameter buffer (floats)
    int decay;                   // 1 for matrices; 0 for norms and biases
} ParamInfo;

// Per-layer views into a flat buffer laid out by the parameter table: the
// compute copy (act elements), the fp32 master weights or the fp32 gradients.
// void * because the element type depends on the buffer (kernels/backend.h).
typedef struct {
    void *ln1;                   // [C]            input_layernorm.weight
    void *wq, *wk, *wv;          // [NH*D,C] [NKV*D,C] [NKV*D,C]
    void *bq, *bk, *bv;          // [NH*D] [NKV*D] [NKV*D], NULL without qkv_bias
    void *wo;                    // [C, NH*D]
    void *ln2;                   // [C]            post_attention_layernorm.weight
    void *wgate, *wup;           // [F, C]
    void *wdown;                 // [C, F]
} LayerWeights;

typedef struct {
    void *embed;                 // [V, C]
    LayerWeights *layers;        // [n_layers]
    void *norm;                  // [C]
    void *lm_head;               // [V, C]; == embed when tied
} Weights;

// Parameter table of a config, in a fixed order. Caller frees with free().
ParamInfo *model_param_table(const ModelConfig *c, int *count, size_t *total_numel);
// Carve a flat buffer of elem_bytes-sized elements (params, grads: 4; the
// compute copy: the backend's act_bytes) into named views. layers is allocated.
void weights_view(Weights *w, const ModelConfig *c, const ParamInfo *table, int count, void *flat,
                  size_t elem_bytes);
void weights_free_view(Weights *w);
const ParamInfo *param_find(const ParamInfo *table, int count, const char *name);

// Activations kept from forward for backward, sized for a [B, T] batch.
// void *: act elements (the backend's storage type); float *: fp32.
typedef struct {
    void *x;                     // [N,C] residual stream entering the layer
    void *ln1; float *rstd1;     // [N,C] [N]
    void *q, *k, *v;             // [N,NH*D] [N,NKV*D] [N,NKV*D], q/k after RoPE
    void *att; float *lse;       // [N,NH*D] [B,NH,T]
    void *x2;                    // [N,C] after the attention residual
    void *ln2; float *rstd2;     // [N,C] [N]
    void *gate, *up, *act;       // [N,F] each; act = silu(gate)*up
} LayerActs;

typedef struct {
    int B, T;                    // capacity
    LayerActs *layers;
    void *out;                   // [N,C] residual after the last layer
    void *lnf; float *rstdf;     // [N,C] [N] final norm output (the head input)
    void *tmp;                   // [N,C] a branch's output before its residual add
    float *rope_cos, *rope_sin;  // [T, D/2]
    int *tokens, *lengths;       // device copies of the batch
    int *rows, *targets;         // [N] head rows/targets for the current batch
    float *head_lp, *head_lse, *head_w;   // [N]
    int cur_B, cur_T, n_head;    // shape and head rows of the last forward
    int head_grad_done;          // the last forward already put the head's gradient in dtmp (and dW)
    // backward scratch: dres, dtmp [N,C]; dwide1..3 [N, max(F, NH*D)]; dq [N,NH*D]; dk, dv [N,NKV*D]
    float *dres, *dtmp, *dwide1, *dwide2, *dwide3, *dq, *dk, *dv;
} Acts;

typedef struct {
    ModelConfig cfg;
    const Backend *be;
    ParamInfo *table; int n_params; size_t numel;
    float *params, *grads;       // flat device buffers, numel floats each (master weights, gradients)
    void *wc;                    // compute copy of params, numel act elements (== params when
                                 // act_bytes is 4); refreshed by the optimizer and model_sync_compute
    Weights w, g, master;        // views into wc (what the ops read) / grads / params
    Acts acts; int acts_ready;
    int n_head; int *head_pos; float *head_lp;   // host results of the last forward
    // tokenizer.json / tokenizer_config.json text as imported (NULL when the
    // model has none, e.g. `sprec init`); kept in the checkpoint verbatim
    char *tokenizer_json; size_t tokenizer_json_len;
    char *tokenizer_config_json; size_t tokenizer_config_json_len;
    // Work done by model_forward and model_backward since model_create, counted
    // on the host over valid tokens only: model FLOPs (model_forward_flops; a
    // backward counts twice its forward) and the forward's tokens. Stage timing
    // (host/train/stage_time.h) reads the difference across a stage.
    double work_flops, work_tokens;
    double last_fwd_flops;       // the last forward's share, for its backward
    // LoRA adapters (host/model/lora.h); NULL = full fine-tuning. While set, the base
    // parameters are frozen: model_backward leaves m->grads untouched.
    struct Lora *lora;
    // NULL, or called by model_backward after each piece (head and final norm,
    // layers n_layers-1 .. 0, embedding) with the range [lo, hi) of the trainable
    // gradient buffer (m->grads, or the adapters' with LoRA) that the piece wrote
    // last: final when this backward is the step's last on this rank. Set for that
    // backward by the optimizer (adamw_sum_begin: the overlapped gradient sum).
    void (*grads_final)(size_t lo, size_t hi);
} Model;

void model_create(Model *m, const ModelConfig *c, const Backend *be);   // params zeroed
// Refreshes the compute copy (base and LoRA adapters) from the fp32 master
// weights: call after anything but the optimizer wrote m->params (load,
// import, init, merge, a test's perturbation).
void model_sync_compute(Model *m);
void model_free(Model *m);
// The trainable fp32 master weights: m->params, or the adapters' (m->lora->params)
// with LoRA. NULL while a ZeRO-1 optimizer holds them as shards (optimizer.h);
// model_set_trainable_master puts a buffer (or NULL) there and re-points the views.
float *model_trainable_master(const Model *m);
void model_set_trainable_master(Model *m, float *params);
void acts_free(Model *m);          // activation buffers (re-made on the next forward)
// Random init: N(0, std) for matrices and embeddings, 1 for norms, 0 for biases.
void model_init_random(Model *m, uint64_t seed, float std);

// A batch on the host: tokens [B,T] int32, mask [B,T] float, lengths [B].
typedef struct {
    int B, T;
    int *tokens; float *mask; int *lengths;
} Batch;

// Forward over a batch (B*T must fit the model's context: T <= max_seq_len).
// Scores every position (b, t) with 1 <= t < lengths[b] and, unless
// all_positions, mask[b,t] != 0: log p(tokens[b,t] | tokens[b,<t]).
// Returns their count n; m->head_pos[i] = b*T + t and m->head_lp[i] (host).
int model_forward(Model *m, const Batch *batch, int all_positions);
// model_forward(m, batch, 0) for a loss whose weights are known before it
// runs (SFT): pos_weight[b*T + t] (host, [B*T]) weighs the log-prob at
// position (b, t), and the LM head's gradient of -sum_i pos_weight[head_pos[i]] *
// logprob[i] (the lm_head's, added into m->grads unless LoRA freezes it, and
// the head input's) is taken in the same pass over the logits (backend
// logprob_fwd_bwd: three GEMMs per chunk instead of the forward's one and the
// backward's three). The log-probs are those of model_forward, bit for bit;
// the model_backward that follows must be called with weight_host NULL.
int model_forward_with_head_grad(Model *m, const Batch *batch, const float *pos_weight);
// Backward of loss = -sum_i weight[i] * logprob[i] over the n positions of the
// last forward (weight_host[n]). Adds into m->grads. weight_host NULL: the
// weights are already on the device in m->acts.head_w (dpo_step writes them
// there with be->dpo_loss, so they never pass through the host).
void model_backward(Model *m, const float *weight_host);
// Full logits [B,T,V] of the last forward on this batch (debugging / dump
// only); padded positions are 0.
void model_logits(Model *m, const Batch *batch, float *logits_host);
// Runs the forward over batch (no head) and writes the final-normed hidden
// states [B,T,C] (the LM head's input, Hugging Face's last_hidden_state);
// padded positions are 0.
void model_hidden(Model *m, const Batch *batch, float *hidden_host);
// Rotary cos/sin tables [P, D/2] of a config, on the host, computed exactly as
// the training forward computes them (Hugging Face's float32 angles, Llama-3.1
// frequency scaling when configured).
void rope_tables_host(const ModelConfig *c, int P, float *cos_out, float *sin_out);
// Model FLOPs of a forward over sequences holding `tokens` valid tokens in
// all, `attn_pairs` causal (query, key) pairs (sum over sequences of
// len * (len + 1) / 2) and `head_rows` scored rows (bench/README.md, "Stage
// FLOPs"): 2 * (linear weights of the layers) * tokens + 2 * 2 * layers * NH*D
// * attn_pairs (QK^T and PV) + 2 * V * C * head_rows. A backward is twice that.
double model_forward_flops(const ModelConfig *c, double tokens, double attn_pairs, double head_rows);
// Global L2 norm of the gradient of the trainable parameters (the adapters
// when LoRA is enabled), double accumulation.
double model_grad_norm(Model *m);
// Zeroes the gradient of the trainable parameters (base and adapters).
void model_zero_grad(Model *m);

#endif
