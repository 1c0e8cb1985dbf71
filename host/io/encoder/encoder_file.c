// Sentence-encoder checkpoints and their importers (encoder_file.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cJSON.h>
#include "encoder_file.h"
#include "onnx.h"
#include "io/safetensors.h"
#include "base/atomic_write.h"
#include "base/fileio.h"
#include "base/h5io.h"
#include "kernels/errors.h"

#define ENCODER_VERSION 1
#define TEXT_CHUNK ((size_t)1 << 20)

// the config as root attributes: name and field
#define ENC_INTS(X) X(vocab_size) X(dim) X(n_layers) X(n_heads) X(ffn_dim) X(max_pos) X(type_vocab) X(max_tokens)

int encoder_file_is(const char *path) {
    hid_t f = h5_open_read(path);
    char format[64] = "";
    if (h5_attr_has(f, "format")) h5_attr_read_str(f, path, "format", format, sizeof format);
    h5_close(f);
    return strcmp(format, ENCODER_FORMAT) == 0;
}

void encoder_save(const char *path, const Encoder *e, const char *source) {
    AtomicFile *out = atomic_begin(path, NULL);
    hid_t f = h5_create_checksummed(out->tmp);
    h5_attr_write_str(f, "format", ENCODER_FORMAT);
    h5_attr_write_i64(f, "version", ENCODER_VERSION);
    h5_attr_write_str(f, "arch", "bert");
    h5_attr_write_str(f, "pooling", "mean");
    h5_attr_write_str(f, "source", source);
#define W_INT(x) h5_attr_write_i64(f, #x, e->cfg.x);
    ENC_INTS(W_INT)
#undef W_INT
    h5_attr_write_f64(f, "layer_norm_eps", e->cfg.eps);
    hid_t g = h5_group(f, "params");
    for (int i = 0; i < e->n_params; i++) {
        const ParamInfo *p = &e->table[i];
        const long dims[2] = {p->shape[0], p->shape[1]};
        h5_write_f32(g, p->name, p->rank, dims, e->host + p->offset);
    }
    h5_group_close(g);
    if (e->tokenizer_json) {
        g = h5_group(f, "tokenizer");
        h5_write_bytes(g, "tokenizer.json", e->tokenizer_json, e->tokenizer_json_len, TEXT_CHUNK);
        h5_group_close(g);
    }
    h5_close(f);
    atomic_commit(out);
}

void encoder_load(const char *path, Encoder *e) {
    hid_t f = h5_open_read(path);
    char format[64] = "";
    if (h5_attr_has(f, "format")) h5_attr_read_str(f, path, "format", format, sizeof format);
    if (strcmp(format, ENCODER_FORMAT) != 0)
        fail("%s: not a sentence-encoder checkpoint (format '%s', expected '%s': make one with sprec import "
             "MODEL.onnx|FOLDER -o ENC.h5)", path, format, ENCODER_FORMAT);
    const int64_t version = h5_attr_read_i64(f, path, "version");
    if (version != ENCODER_VERSION)
        fail("%s: encoder checkpoint version %lld (this sprec reads %d)", path, (long long)version, ENCODER_VERSION);
    EncoderConfig c;
#define R_INT(x) { int64_t v = h5_attr_read_i64(f, path, #x); \
                   if (v < 0 || v > (1 << 30)) fail("%s: attribute %s = %lld is out of range", path, #x, (long long)v); \
                   c.x = (int)v; }
    ENC_INTS(R_INT)
#undef R_INT
    c.eps = (float)h5_attr_read_f64(f, path, "layer_norm_eps");
    encoder_config_validate(&c, path);
    encoder_init(e, &c);
    for (int i = 0; i < e->n_params; i++) {
        const ParamInfo *p = &e->table[i];
        char name[MAX_PARAM_NAME + 8];
        snprintf(name, sizeof name, "params/%s", p->name);
        if (!h5_exists(f, name)) fail("%s: missing tensor /%s", path, name);
        const long dims[2] = {p->shape[0], p->shape[1]};
        h5_read_f32_into(f, path, name, p->rank, dims, e->host + p->offset);
    }
    if (h5_exists(f, "tokenizer/tokenizer.json")) {
        size_t len;
        char *json = h5_read_bytes(f, path, "tokenizer/tokenizer.json", &len);
        encoder_set_tokenizer(e, json, len, path);
        free(json);
    }
    h5_close(f);
}

// ---- importers -------------------------------------------------------------------

// "model.0.auto_model.encoder.layer.1.output.dense.bias" -> "encoder.layer.1.output.dense.bias"
// (also "bert.embeddings..." -> "embeddings..."); NULL when neither part is in the name.
static const char *bert_name(const char *name) {
    for (const char *p = name; *p; p++)
        if ((p == name || p[-1] == '.') && (!strncmp(p, "embeddings.", 11) || !strncmp(p, "encoder.layer.", 14)))
            return p;
    return NULL;
}

static int param_index(const Encoder *e, const char *name) {
    for (int i = 0; i < e->n_params; i++) if (!strcmp(e->table[i].name, name)) return i;
    return -1;
}

static void shape_check(const ParamInfo *p, int rank, const long *dims, const char *where, const char *what) {
    int ok = rank == p->rank;
    for (int r = 0; ok && r < rank; r++) ok = dims[r] == p->shape[r];
    if (!ok) fail("%s: tensor '%s' has shape [%ld%s%ld], the encoder expects [%d%s%d]", where, what, dims[0],
                  rank > 1 ? "," : "", rank > 1 ? dims[1] : 0L, p->shape[0], p->rank > 1 ? "," : "",
                  p->rank > 1 ? p->shape[1] : 0);
}

// Constant int64 scalar or 1-value tensor produced for `value`, or -1.
static long long onnx_const_int(const OnnxModel *m, const char *value) {
    const OnnxNode *n = onnx_producer(m, value);
    if (!n || strcmp(n->op, "Constant") || !n->has_value || n->value.dtype != ONNX_INT64 || n->value.numel != 1)
        return -1;
    return n->value.i[0];
}

// The layer-0 key projection's Reshape to [B, T, heads, head_dim]: its shape is
// a Concat whose last two inputs are constants.
static int onnx_heads(const OnnxModel *m, const char *key_bias, int dim) {
    for (int k = 0;; k++) {
        const OnnxNode *add = onnx_consumer(m, key_bias, k);
        if (!add) break;
        for (int r = 0;; r++) {
            const OnnxNode *rs = onnx_consumer(m, add->out[0], r);
            if (!rs) break;
            if (strcmp(rs->op, "Reshape") || rs->n_in < 2) continue;
            const OnnxNode *cat = onnx_producer(m, rs->in[1]);
            if (!cat || strcmp(cat->op, "Concat") || cat->n_in < 2) continue;
            const long long nh = onnx_const_int(m, cat->in[cat->n_in - 2]), hd = onnx_const_int(m, cat->in[cat->n_in - 1]);
            if (nh > 0 && hd > 0 && nh * hd == dim) return (int)nh;
            if (nh == -1 && hd > 0 && dim % hd == 0) return (int)(dim / hd);
        }
    }
    fail("%s: cannot find the number of attention heads (no Reshape of the layer-0 key projection to [.., heads, "
         "head_dim] constants)", m->path);
}

static const OnnxTensor *onnx_need(const OnnxModel *m, const char *suffix, int rank) {
    for (int i = 0; i < m->n_inits; i++) {
        const char *b = bert_name(m->inits[i].name);
        if (b && !strcmp(b, suffix) && m->inits[i].rank == rank && m->inits[i].dtype == ONNX_FLOAT) return &m->inits[i];
    }
    fail("%s: no float initializer '...%s' of rank %d (not a BERT sentence encoder export?)", m->path, suffix, rank);
}

void encoder_import_onnx(Encoder *e, const char *onnx_path, const char *tokenizer_json_path, int max_tokens) {
    OnnxModel m;
    onnx_load(&m, onnx_path);
    const OnnxTensor *word = onnx_need(&m, "embeddings.word_embeddings.weight", 2);
    const OnnxTensor *pos = onnx_need(&m, "embeddings.position_embeddings.weight", 2);
    const OnnxTensor *type = onnx_need(&m, "embeddings.token_type_embeddings.weight", 2);
    const OnnxTensor *ffn = onnx_need(&m, "encoder.layer.0.intermediate.dense.bias", 1);
    const OnnxTensor *kb = onnx_need(&m, "encoder.layer.0.attention.self.key.bias", 1);
    EncoderConfig c = {.vocab_size = (int)word->dims[0], .dim = (int)word->dims[1], .max_pos = (int)pos->dims[0],
                       .type_vocab = (int)type->dims[0], .ffn_dim = (int)ffn->dims[0], .max_tokens = max_tokens,
                       .eps = 1e-5f};   // ONNX's LayerNormalization default
    for (int i = 0; i < m.n_inits; i++) {
        int l;
        const char *b = bert_name(m.inits[i].name);
        if (b && sscanf(b, "encoder.layer.%d.", &l) == 1 && l >= c.n_layers) c.n_layers = l + 1;
    }
    c.n_heads = onnx_heads(&m, kb->name, c.dim);
    for (int i = 0; i < m.n_nodes; i++)
        if (!strcmp(m.nodes[i].op, "LayerNormalization")) {
            if (m.nodes[i].has_epsilon) c.eps = m.nodes[i].epsilon;
            break;
        }
    if (c.max_tokens > c.max_pos) c.max_tokens = c.max_pos;
    encoder_init(e, &c);
    char *filled = xcalloc((size_t)e->n_params, 1);
    for (int i = 0; i < m.n_inits; i++) {   // the named tensors
        const OnnxTensor *t = &m.inits[i];
        const char *b = bert_name(t->name);
        const int pi = b ? param_index(e, b) : -1;
        if (pi < 0) continue;
        if (t->dtype != ONNX_FLOAT) fail("%s: initializer '%s' is not float32", onnx_path, t->name);
        shape_check(&e->table[pi], t->rank, t->dims, onnx_path, t->name);
        memcpy(e->host + e->table[pi].offset, t->f, e->table[pi].numel * sizeof(float));
        filled[pi] = 1;
    }
    for (int i = 0; i < m.n_nodes; i++) {   // x @ W, then + bias: W is the bias's layer's weight, transposed
        const OnnxNode *mm = &m.nodes[i];
        if (strcmp(mm->op, "MatMul") || mm->n_in != 2 || mm->n_out < 1) continue;
        const OnnxTensor *w = onnx_initializer(&m, mm->in[1]);
        if (!w || w->rank != 2 || w->dtype != ONNX_FLOAT) continue;
        for (int k = 0;; k++) {
            const OnnxNode *add = onnx_consumer(&m, mm->out[0], k);
            if (!add) break;
            if (strcmp(add->op, "Add") || add->n_in != 2) continue;
            const char *bias = !strcmp(add->in[0], mm->out[0]) ? add->in[1] : add->in[0];
            const char *b = onnx_initializer(&m, bias) ? bert_name(bias) : NULL;
            const size_t bl = b ? strlen(b) : 0;
            if (bl < 5 || strcmp(b + bl - 5, ".bias")) continue;
            char name[MAX_PARAM_NAME];
            snprintf(name, sizeof name, "%.*sweight", (int)(bl - 4), b);
            const int pi = param_index(e, name);
            if (pi < 0) continue;
            const ParamInfo *p = &e->table[pi];
            const long tdims[2] = {w->dims[1], w->dims[0]};
            shape_check(p, 2, tdims, onnx_path, mm->in[1]);
            float *dst = e->host + p->offset;
            for (long r = 0; r < w->dims[0]; r++)       // [in, out] -> [out, in]
                for (long o = 0; o < w->dims[1]; o++) dst[o * w->dims[0] + r] = w->f[r * w->dims[1] + o];
            filled[pi] = 1;
            break;
        }
    }
    for (int i = 0; i < e->n_params; i++)
        if (!filled[i]) fail("%s: found no tensor for '%s' (neither an initializer of that name nor a MatMul before "
                             "its bias)", onnx_path, e->table[i].name);
    free(filled);
    onnx_free(&m);
    size_t len;
    char *json = read_file_text(tokenizer_json_path, &len);
    encoder_set_tokenizer(e, json, len, tokenizer_json_path);
    free(json);
}

static int json_int(const cJSON *j, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        fail("%s: '%s' is missing or not an integer", path, key);
    return (int)v->valuedouble;
}

int encoder_hf_folder_is(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = read_file_text_if_exists(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *mt = j ? cJSON_GetObjectItemCaseSensitive(j, "model_type") : NULL;
    const int bert = cJSON_IsString(mt) && !strcmp(mt->valuestring, "bert");
    cJSON_Delete(j);
    free(text);
    return bert;
}

void encoder_import_hf(Encoder *e, const char *dir, int max_tokens) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = read_file_text(path, NULL);
    cJSON *j = cJSON_Parse(text);
    if (!j) fail("%s: not valid JSON", path);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "bert"))
        fail("%s: model_type is not \"bert\" (a sentence encoder folder needs a BertModel)", path);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu")))
        fail("%s: hidden_act must be \"gelu\" (the erf form)", path);
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(j, "position_embedding_type");
    if (pe && (!cJSON_IsString(pe) || strcmp(pe->valuestring, "absolute")))
        fail("%s: position_embedding_type must be \"absolute\"", path);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_eps");
    EncoderConfig c = {.vocab_size = json_int(j, "vocab_size", path), .dim = json_int(j, "hidden_size", path),
                       .n_layers = json_int(j, "num_hidden_layers", path),
                       .n_heads = json_int(j, "num_attention_heads", path),
                       .ffn_dim = json_int(j, "intermediate_size", path),
                       .max_pos = json_int(j, "max_position_embeddings", path),
                       .type_vocab = json_int(j, "type_vocab_size", path), .max_tokens = max_tokens,
                       .eps = cJSON_IsNumber(eps) ? (float)eps->valuedouble : 1e-12f};
    cJSON_Delete(j);
    free(text);
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", dir);
    text = read_file_text_if_exists(path, NULL);
    if (text) {
        j = cJSON_Parse(text);
        if (!j) fail("%s: not valid JSON", path);
        c.max_tokens = json_int(j, "max_seq_length", path);
        cJSON_Delete(j);
        free(text);
    }
    if (c.max_tokens > c.max_pos) c.max_tokens = c.max_pos;
    snprintf(path, sizeof path, "%s/config.json", dir);
    encoder_config_validate(&c, path);
    encoder_init(e, &c);
    SafeTensors st;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_open(&st, path);
    for (int i = 0; i < st.n; i++) {   // every stored tensor is ours or a known leftover
        const char *b = bert_name(st.t[i].name);
        if ((b && param_index(e, b) >= 0) || strstr(st.t[i].name, "position_ids") || strstr(st.t[i].name, "pooler."))
            continue;
        fail("%s: unexpected tensor '%s' (not a BertModel parameter)", path, st.t[i].name);
    }
    for (int pi = 0; pi < e->n_params; pi++) {
        const ParamInfo *p = &e->table[pi];
        const StTensor *t = NULL;
        for (int i = 0; i < st.n && !t; i++) {
            const char *b = bert_name(st.t[i].name);
            if (b && !strcmp(b, p->name)) t = &st.t[i];
        }
        if (!t) fail("%s: missing tensor '%s'", path, p->name);
        if (t->dtype > ST_BF16) fail("%s: tensor '%s' has an unsupported dtype (F32, F16, BF16 are read)", path, t->name);
        shape_check(p, t->rank, t->shape, path, t->name);
        st_to_f32(t, e->host + p->offset);
    }
    st_close(&st);
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *json = read_file_text(path, &len);
    encoder_set_tokenizer(e, json, len, path);
    free(json);
}
