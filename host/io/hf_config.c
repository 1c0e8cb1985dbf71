// config.json <-> ModelConfig. transformers 5 writes rope settings as
// "rope_parameters": {"rope_type", "rope_theta", factor...}; 4.x wrote a top-level
// "rope_theta" and "rope_scaling": {"rope_type" | "type", factor...}. Both are read.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include "hf_config.h"
#include "kernels/errors.h"

static const char *ARCHS[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"};

void hf_config_rope_defaults(ModelConfig *c) {
    c->rope_scaling = 0;
    c->rope_factor = 8.0f;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_original_max_pos = 8192;
}

// A number field: required (def = NAN) or defaulted.
static double num(const cJSON *j, const char *key, double def, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (isnan(def)) fail("%s: missing '%s'", path, key);
        return def;
    }
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (!cJSON_IsNumber(v)) fail("%s: '%s' must be a number", path, key);
    return v->valuedouble;
}

static int int_field(const cJSON *j, const char *key, double def, const char *path) {
    double v = num(j, key, def, path);
    if (v != floor(v) || v < -2147483647.0 || v > 2147483647.0) fail("%s: '%s' = %g is not an integer", path, key, v);
    return (int)v;
}

static int truthy(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return v && (cJSON_IsTrue(v) || (cJSON_IsNumber(v) && v->valuedouble != 0));
}

void hf_config_parse(const char *text, const char *path, ModelConfig *c) {
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsObject(j)) fail("%s: not valid JSON (or not an object)", path);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) fail("%s: no 'architectures' list", path);
    int arch = -1;
    for (int i = 0; i < 3; i++) if (strcmp(a0->valuestring, ARCHS[i]) == 0) arch = i;
    if (arch < 0)
        fail("%s: architecture '%s' is not supported (LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM)", path,
             a0->valuestring);
    memset(c, 0, sizeof *c);
    hf_config_rope_defaults(c);
    c->vocab_size = int_field(j, "vocab_size", NAN, path);
    c->dim = int_field(j, "hidden_size", NAN, path);
    c->n_layers = int_field(j, "num_hidden_layers", NAN, path);
    c->n_heads = int_field(j, "num_attention_heads", NAN, path);
    c->n_kv_heads = int_field(j, "num_key_value_heads", c->n_heads, path);
    c->head_dim = c->n_heads > 0 ? int_field(j, "head_dim", c->dim / c->n_heads, path) : 0;
    c->ffn_dim = int_field(j, "intermediate_size", NAN, path);
    c->max_seq_len = int_field(j, "max_position_embeddings", NAN, path);
    c->rms_eps = (float)num(j, "rms_norm_eps", 1e-6, path);
    c->tie_embeddings = truthy(j, "tie_word_embeddings");
    c->qkv_bias = arch == 1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        fail("%s: hidden_act must be 'silu' (SwiGLU)", path);
    if (truthy(j, "attention_bias") && arch != 1) fail("%s: attention_bias (o_proj bias) is not supported", path);
    if (truthy(j, "mlp_bias")) fail("%s: mlp_bias is not supported", path);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(j, "sliding_window");
    int sliding = arch == 1 ? truthy(j, "use_sliding_window") : (sw && !cJSON_IsNull(sw));
    if (sliding) fail("%s: sliding-window attention is not supported", path);

    // rope: transformers 5 "rope_parameters", else 4.x "rope_theta" + "rope_scaling"
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    if (!cJSON_IsObject(rp)) rp = NULL;
    c->rope_theta = (float)num(rp ? rp : j, "rope_theta", rp ? num(j, "rope_theta", 10000.0, path) : 10000.0, path);
    const cJSON *rs = rp ? rp : cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (cJSON_IsObject(rs)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : "default";
        if (strcmp(type, "llama3") == 0) {
            c->rope_scaling = 1;
            c->rope_factor = (float)num(rs, "factor", NAN, path);
            c->rope_low_freq_factor = (float)num(rs, "low_freq_factor", NAN, path);
            c->rope_high_freq_factor = (float)num(rs, "high_freq_factor", NAN, path);
            c->rope_original_max_pos = int_field(rs, "original_max_position_embeddings", NAN, path);
        } else if (strcmp(type, "default") != 0) {
            fail("%s: rope type '%s' is not supported (default or llama3)", path, type);
        }
    } else if (rs && !cJSON_IsNull(rs)) {
        fail("%s: rope_scaling must be an object or null", path);
    }
    cJSON_Delete(j);
    // a lying config must not make us build a parameter table of billions of entries
    if (c->n_layers > 4096) fail("%s: num_hidden_layers = %d is implausible", path, c->n_layers);
    model_config_validate(c, path);
}

// Shortest decimal that reads back as the same float32 (1e-05, not 9.99999975e-06).
static cJSON *f32_number(float v) {
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

static void add_ids(cJSON *j, const HfTokenIds *ids) {
    const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    const int vals[] = {ids->bos, ids->eos, ids->pad};
    for (int i = 0; i < 3; i++) if (vals[i] >= 0) cJSON_AddNumberToObject(j, keys[i], vals[i]);
}

char *hf_generation_config_write(const HfTokenIds *ids) {
    cJSON *j = cJSON_CreateObject();
    add_ids(j, ids);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

void hf_config_for_export(const ModelConfig *c, ModelConfig *out, const char *path) {
    *out = *c;
    int at;
    double worst;
    if (c->rope_scaling == ROPE_FREQS && !rope_fit_llama3(c, out, &at, &worst))
        fail("%s: cannot export: its rope_freqs follow no Llama-3 curve (pair %d: factor %g, off by %.2g relative), "
             "the only per-frequency scaling config.json can express; nothing written", path, at,
             (double)c->rope_freqs[at], worst);
}

char *hf_config_write(const ModelConfig *c, const char *dtype, const HfTokenIds *ids) {
    check(c->rope_scaling != ROPE_FREQS, "hf_config_write: per-frequency rope (use hf_config_for_export first)");
    cJSON *j = cJSON_CreateObject();
    cJSON *archs = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(c->qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", c->qkv_bias ? "qwen2" : "llama");
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->ffn_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_seq_len);
    cJSON_AddItemToObject(j, "rms_norm_eps", f32_number(c->rms_eps));
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    if (!c->qkv_bias) {
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
    } else {
        cJSON_AddBoolToObject(j, "use_sliding_window", 0);
    }
    // both spellings, so transformers 4.x and 5.x read the same rope
    cJSON_AddItemToObject(j, "rope_theta", f32_number(c->rope_theta));
    cJSON *rp = cJSON_CreateObject();
    cJSON_AddStringToObject(rp, "rope_type", c->rope_scaling ? "llama3" : "default");
    cJSON_AddItemToObject(rp, "rope_theta", f32_number(c->rope_theta));
    if (c->rope_scaling) {
        cJSON_AddItemToObject(rp, "factor", f32_number(c->rope_factor));
        cJSON_AddItemToObject(rp, "low_freq_factor", f32_number(c->rope_low_freq_factor));
        cJSON_AddItemToObject(rp, "high_freq_factor", f32_number(c->rope_high_freq_factor));
        cJSON_AddNumberToObject(rp, "original_max_position_embeddings", c->rope_original_max_pos);
    }
    cJSON_AddItemToObject(j, "rope_scaling", c->rope_scaling ? cJSON_Duplicate(rp, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "rope_parameters", rp);
    add_ids(j, ids);
    cJSON_AddStringToObject(j, "torch_dtype", dtype);
    cJSON_AddStringToObject(j, "dtype", dtype);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}
