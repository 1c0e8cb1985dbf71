// sprec import SRC -o CKPT.h5: a Hugging Face model folder (config.json,
// model.safetensors or a sharded index, tokenizer files) or a llama.cpp .gguf
// file, converted to a model-only sprec checkpoint (fp32) that carries the
// tokenizer. Layout and formats: docs/import.md. A BERT sentence encoder (an
// ONNX export, or a folder whose config.json has model_type bert) becomes a
// sentence-encoder checkpoint instead (io/encoder/encoder_file.h).
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "commands.h"
#include "io/checkpoint.h"
#include "io/encoder/encoder_file.h"
#include "model/device.h"
#include "io/gguf.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/errors.h"

// Whole file as a NUL-terminated string; NULL when it does not exist.
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return NULL;
        fail("cannot open '%s': %s", path, strerror(errno));
    }
    char *s = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) { cap = 2 * cap + 65536 + 1; s = realloc(s, cap); if (!s) fail("out of memory"); }
        size_t r = fread(s + n, 1, 65536, f);
        n += r;
        if (r < 65536) break;
    }
    if (ferror(f)) fail("cannot read '%s'", path);
    fclose(f);
    s[n] = 0;
    if (len) *len = n;
    return s;
}

static void shape_str(char *buf, size_t cap, int rank, const long *dims) {
    int n = snprintf(buf, cap, "[");
    for (int i = 0; i < rank; i++) n += snprintf(buf + n, cap - (size_t)n, "%s%ld", i ? "," : "", dims[i]);
    snprintf(buf + n, cap - (size_t)n, "]");
}

static void import_hf(const char *dir, Model *m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = slurp(path, NULL);
    if (!text) fail("%s: no config.json (not a Hugging Face model folder)", dir);
    ModelConfig c;
    hf_config_parse(text, path, &c);
    free(text);

    SafeTensors st;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &sb) != 0) fail("%s: no model.safetensors or model.safetensors.index.json", dir);
    st_open(&st, path);
    // names, dtypes and shapes first, so a wrong file fails before the model is allocated
    int count;
    size_t total;
    ParamInfo *table = model_param_table(&c, &count, &total);
    for (int i = 0; i < st.n; i++) {   // every stored tensor must be one we load (or a known leftover)
        const char *nm = st.t[i].name;
        if (param_find(table, count, nm) || strstr(nm, "rotary_emb.inv_freq") ||
            (c.tie_embeddings && strcmp(nm, "lm_head.weight") == 0)) continue;
        fail("%s: unexpected tensor '%s' (not a parameter of this model)", st.paths[st.t[i].file], nm);
    }
    for (int i = 0; i < count; i++) {
        const ParamInfo *p = &table[i];
        const StTensor *t = st_find(&st, p->name);
        if (!t) fail("%s: missing tensor '%s'", path, p->name);
        if (t->dtype > ST_BF16) fail("%s: tensor '%s' has an unsupported dtype (F32, F16, BF16 are read)",
                                     st.paths[t->file], p->name);
        long want[2] = {p->shape[0], p->shape[1]};
        int ok = t->rank == p->rank;
        for (int r = 0; ok && r < p->rank; r++) ok = t->shape[r] == want[r];
        if (!ok) {
            char have_s[128], want_s[128];
            shape_str(have_s, sizeof have_s, t->rank, t->shape);
            shape_str(want_s, sizeof want_s, p->rank, want);
            fail("%s: tensor '%s' has shape %s, config.json implies %s", st.paths[t->file], p->name, have_s, want_s);
        }
    }
    free(table);
    model_create(m, &c, backend_select("cpu"));
    for (int i = 0; i < m->n_params; i++) {
        const ParamInfo *p = &m->table[i];
        const StTensor *t = st_find(&st, p->name);
        float *host = xmalloc(p->numel * sizeof(float));
        st_to_f32(t, host);
        m->be->upload(m->params + p->offset, host, p->numel * sizeof(float));
        free(host);
    }
    model_sync_compute(m);
    st_close(&st);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    m->tokenizer_json = slurp(path, &m->tokenizer_json_len);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    m->tokenizer_config_json = slurp(path, &m->tokenizer_config_json_len);
    if (!m->tokenizer_json && m->tokenizer_config_json) {   // a config alone is no tokenizer
        free(m->tokenizer_config_json);
        m->tokenizer_config_json = NULL;
    }
}

// GGUF tensor name -> Hugging Face name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight").
static int hf_name(const char *g, char *out, size_t cap) {
    static const char *const MAP[][2] = {
        {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
        {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"},
    };
    if (!strcmp(g, "token_embd.weight")) return snprintf(out, cap, "model.embed_tokens.weight"), 1;
    if (!strcmp(g, "output_norm.weight")) return snprintf(out, cap, "model.norm.weight"), 1;
    if (!strcmp(g, "output.weight")) return snprintf(out, cap, "lm_head.weight"), 1;
    int layer, n = 0;
    char part[64], kind[16];
    if (sscanf(g, "blk.%d.%63[a-z_].%15[a-z]%n", &layer, part, kind, &n) != 3 || g[n]) return 0;
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++)
        if (!strcmp(part, MAP[i][0])) return snprintf(out, cap, "model.layers.%d.%s.%s", layer, MAP[i][1], kind), 1;
    return 0;
}

static void import_gguf(const char *path, Model *m) {
    Gguf g;
    gguf_open(&g, path);
    ModelConfig c;
    char arch[64];
    gguf_model_config(&g, &c, arch, sizeof arch);
    // types sprec cannot dequantise fail here, all of them named, before any work
    char refused[256] = "", named[64] = {0};   // ggml type ids are < 64
    const GgufType *first = NULL;
    for (int i = 0; i < g.n_t; i++) {
        const GgufType *ty = gguf_type(g.t[i].type);
        if (!ty->refused || named[ty->id]++) continue;
        if (!first) first = ty;
        snprintf(refused + strlen(refused), sizeof refused - strlen(refused), "%s%s", *refused ? ", " : "", ty->name);
    }
    if (first) fail("%s: tensors of type %s: %s is %s", path, refused, first->name, first->refused);
    // every tensor of the model present with its shape before anything is allocated
    // (a corrupt block_count or embedding_length fails here, not in malloc)
    int count;
    size_t total;
    ParamInfo *table = model_param_table(&c, &count, &total);
    for (int i = 0; i < count; i++) {
        const ParamInfo *p = &table[i];
        const GgufTensor *t = NULL;
        char name[MAX_PARAM_NAME + 32];
        for (int k = 0; k < g.n_t && !t; k++)
            if (hf_name(g.t[k].name, name, sizeof name) && !strcmp(name, p->name)) t = &g.t[k];
        if (!t) fail("%s: missing tensor for '%s'", path, p->name);
        int ok = t->n_dims == p->rank && t->ne[0] == (uint64_t)p->shape[p->rank - 1] &&
                 (p->rank == 1 || t->ne[1] == (uint64_t)p->shape[0]);
        if (!ok) fail("%s: tensor '%s' has shape ne=[%llu,%llu], the metadata implies %s [%d,%d]", path, t->name,
                      (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], p->name, p->shape[0],
                      p->rank == 2 ? p->shape[1] : 1);
    }
    free(table);
    model_create(m, &c, backend_select("cpu"));
    // llama.cpp permutes Q/K rows only for architectures it runs with interleaved (GPT-J style) RoPE
    const int permuted = strcmp(arch, "llama") == 0;
    const ParamInfo **seen = xcalloc((size_t)m->n_params, sizeof *seen);
    for (int i = 0; i < g.n_t; i++) {
        const GgufTensor *t = &g.t[i];
        if (!strcmp(t->name, "rope_freqs.weight")) continue;   // already in the config (gguf_model_config)
        char name[MAX_PARAM_NAME + 32];
        const ParamInfo *p = hf_name(t->name, name, sizeof name) ? param_find(m->table, m->n_params, name) : NULL;
        if (!p) fail("%s: unexpected tensor '%s' (not a parameter of this %s model)", path, t->name, arch);
        if (seen[p - m->table]) fail("%s: tensor '%s' appears twice", path, t->name);
        float *host = xmalloc(p->numel * sizeof(float));
        gguf_dequantize(&g, t, host);
        if (permuted && (strstr(p->name, "q_proj") || strstr(p->name, "k_proj"))) {
            int heads = strstr(p->name, "q_proj") ? c.n_heads : c.n_kv_heads;
            gguf_unpermute_rows(host, heads, c.head_dim, p->rank == 2 ? p->shape[1] : 1);
        }
        m->be->upload(m->params + p->offset, host, p->numel * sizeof(float));
        free(host);
        seen[p - m->table] = p;
    }
    free(seen);
    model_sync_compute(m);
    m->tokenizer_json = gguf_tokenizer_json_of(&g, &m->tokenizer_json_len);
    m->tokenizer_config_json = gguf_tokenizer_config_json_of(&g, &m->tokenizer_config_json_len);
    gguf_close(&g);
}

// max_tokens 0: --max-tokens not given (128)
static int import_encoder(const char *src, int onnx, const char *tokenizer, int max_tokens, const char *out) {
    const int mt = max_tokens ? max_tokens : 128;
    Encoder e;
    if (onnx) {
        if (!tokenizer) fail("sprec import: an ONNX file carries no vocabulary: give --tokenizer tokenizer.json");
        encoder_import_onnx(&e, src, tokenizer, mt);
    } else {
        if (tokenizer) fail("sprec import: --tokenizer is for ONNX files (a folder brings its tokenizer.json)");
        encoder_import_hf(&e, src, mt);
    }
    encoder_save(out, &e, src);
    printf("import: %s -> %s (sentence encoder: %zu parameters, %d layers, dim %d, %d heads, max %d tokens)\n", src,
           out, e.numel, e.cfg.n_layers, e.cfg.dim, e.cfg.n_heads, e.cfg.max_tokens);
    encoder_free(&e);
    return 0;
}

int cmd_import(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec import SRC -o CKPT.h5\n"
               "SRC: a Hugging Face model folder (config.json of LlamaForCausalLM, Qwen2ForCausalLM or\n"
               "MistralForCausalLM without sliding window; model.safetensors or model.safetensors.index.json,\n"
               "F32/F16/BF16; tokenizer.json, tokenizer_config.json) or a .gguf file (v2/v3; F32, F16, BF16,\n"
               "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, so every Q*_K_S/M/L mix; Llama 3\n"
               "rope_freqs; byte-level BPE or SentencePiece tokenizer; IQ types are refused). Weights are stored\n"
               "as float32; the tokenizer files go into the checkpoint.\n\n"
               "usage: sprec import ENCODER.onnx --tokenizer tokenizer.json [--max-tokens N] -o ENC.h5\n"
               "       sprec import BERT_FOLDER [--max-tokens N] -o ENC.h5\n"
               "A BERT sentence encoder (mean pooling; an ONNX export of a sentence-transformers model such as\n"
               "paraphrase-MiniLM-L3-v2, or a folder with config.json of model_type bert, model.safetensors and\n"
               "tokenizer.json, such as all-MiniLM-L6-v2) becomes a sentence-encoder checkpoint for\n"
               "[eval] mode = paper. --max-tokens: the model's max_seq_length (default 128; a folder's\n"
               "sentence_bert_config.json wins).\n");
        return 0;
    }
    const char *src = NULL, *out = NULL, *tokenizer = NULL;
    int max_tok = 0;   // 0: not given
    const CliFlag flags[] = {ARG_OPERAND("SRC", &src), ARG_PATH("-o CKPT.h5", &out, CLI_REQUIRED),
                             ARG_PATH("--tokenizer", &tokenizer, CLI_OPTIONAL),
                             ARG_INT("--max-tokens", &max_tok, 2, 1 << 20), ARG_END};
    cli_parse("import", argc, argv, flags);
    struct stat sb;
    if (stat(src, &sb) != 0) fail("cannot open '%s': %s", src, strerror(errno));
    const size_t sl = strlen(src);
    const int onnx = sl > 5 && !strcmp(src + sl - 5, ".onnx");
    if (onnx || (S_ISDIR(sb.st_mode) && encoder_hf_folder_is(src)))
        return import_encoder(src, onnx, tokenizer, max_tok, out);
    if (tokenizer || max_tok) fail("sprec import: --tokenizer and --max-tokens are for sentence encoders only");
    Model m;
    if (S_ISDIR(sb.st_mode)) import_hf(src, &m);
    else import_gguf(src, &m);
    checkpoint_save(out, &m, NULL, NULL);
    size_t n_weights = 0;
    for (int i = 0; i < m.n_params; i++) n_weights += m.table[i].numel;
    printf("import: %s -> %s (%zu parameters, %d tensors, tokenizer %s)\n", src, out, n_weights, m.n_params,
           m.tokenizer_json ? "included" : "none");
    model_free(&m);
    return 0;
}
