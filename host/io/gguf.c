// GGUF reader (format: ggml/docs/gguf.md). Layout: magic "GGUF", u32 version,
// u64 tensor count, u64 key/value count, the key/values, the tensor infos
// (name, n_dims, u64 dims, u32 type, u64 offset), padding to the alignment,
// then the tensor data (offsets relative to its start). Little-endian.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "gguf.h"
#include "kernels/errors.h"

// ---- bounds-checked reading ---------------------------------------------------

typedef struct { const unsigned char *p; size_t pos, size; const char *path; } Reader;

static const unsigned char *take(Reader *r, uint64_t n, const char *what) {
    if (n > r->size - r->pos) fail("%s: truncated GGUF file (reading %s at byte %zu)", r->path, what, r->pos);
    const unsigned char *at = r->p + r->pos;
    r->pos += (size_t)n;
    return at;
}
static uint64_t le(const unsigned char *b, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | b[i];
    return v;
}
static uint32_t rd_u32(Reader *r, const char *what) { return (uint32_t)le(take(r, 4, what), 4); }
static uint64_t rd_u64(Reader *r, const char *what) { return le(take(r, 8, what), 8); }
// A string is a u64 length and that many bytes (no NUL).
static const char *rd_str(Reader *r, uint64_t *len, const char *what) {
    *len = rd_u64(r, what);
    return (const char *)take(r, *len, what);
}
static char *dup_str(const char *s, uint64_t n) {
    char *d = xmalloc((size_t)n + 1);
    memcpy(d, s, (size_t)n);
    d[n] = 0;
    return d;
}

static const int SCALAR_SIZE[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};   // by GGUF_* (0: variable)

// Skips one value of type `type` (arrays recursively).
static void skip_value(Reader *r, int type, int depth) {
    if (type < 0 || type > GGUF_F64) fail("%s: unknown metadata value type %d at byte %zu", r->path, type, r->pos);
    if (type == GGUF_STR) { uint64_t n; rd_str(r, &n, "a metadata string"); return; }
    if (type != GGUF_ARR) { take(r, SCALAR_SIZE[type], "a metadata value"); return; }
    if (depth > 4) fail("%s: metadata arrays nested too deeply", r->path);
    int et = (int)rd_u32(r, "an array type");
    uint64_t n = rd_u64(r, "an array length");
    if (et >= 0 && et <= GGUF_F64 && SCALAR_SIZE[et]) { take(r, n * SCALAR_SIZE[et], "array data"); return; }
    for (uint64_t i = 0; i < n; i++) skip_value(r, et, depth + 1);
}

const char *gguf_type_name(int id) { const GgufType *t = gguf_type(id); return t ? t->name : "?"; }

// ---- open ---------------------------------------------------------------------

void gguf_open(Gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->path = path;
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) fail("cannot stat '%s': %s", path, strerror(errno));
    g->size = (size_t)sb.st_size;
    if (g->size < 24) fail("%s: not a GGUF file (too short)", path);
    g->map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (g->map == MAP_FAILED) fail("cannot map '%s': %s", path, strerror(errno));
    close(fd);
    Reader r = {g->map, 0, g->size, path};
    if (memcmp(take(&r, 4, "the magic"), "GGUF", 4) != 0) fail("%s: not a GGUF file (bad magic)", path);
    g->version = rd_u32(&r, "the version");
    if (g->version != 2 && g->version != 3)
        fail("%s: GGUF version %u is not supported (2 and 3 are)", path, g->version);
    uint64_t n_t = rd_u64(&r, "the tensor count"), n_kv = rd_u64(&r, "the metadata count");
    // every entry takes at least 8 bytes, so counts beyond the file size are lies
    if (n_t > g->size / 8 || n_kv > g->size / 8) fail("%s: truncated GGUF file (implausible counts)", path);
    g->kv = xcalloc((size_t)n_kv, sizeof *g->kv);
    g->alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        GgufKV *kv = &g->kv[g->n_kv++];
        uint64_t klen;
        const char *k = rd_str(&r, &klen, "a metadata key");
        kv->key = dup_str(k, klen);
        for (uint64_t c = 0; c < klen; c++)   // keys go into one-line messages
            if ((unsigned char)k[c] < 0x20) fail("%s: metadata key %llu holds control characters (corrupt file?)",
                                                 path, (unsigned long long)i);
        kv->type = (int)rd_u32(&r, "a metadata type");
        if (kv->type < 0 || kv->type > GGUF_F64) fail("%s: metadata '%s' has unknown type %d", path, kv->key, kv->type);
        if (kv->type == GGUF_ARR) {
            size_t at = r.pos;
            kv->arr_type = (int)rd_u32(&r, "an array type");
            kv->n = rd_u64(&r, "an array length");
            kv->val = r.p + r.pos;
            r.pos = at;
        } else {
            kv->val = r.p + r.pos;
        }
        skip_value(&r, kv->type, 0);
        if (strcmp(kv->key, "general.alignment") == 0) {
            if (kv->type != GGUF_U32) fail("%s: general.alignment must be a uint32", path);
            g->alignment = (size_t)le(kv->val, 4);
            if (!g->alignment || (g->alignment & (g->alignment - 1)))
                fail("%s: general.alignment %zu is not a power of two", path, g->alignment);
        }
    }
    g->t = xcalloc((size_t)n_t, sizeof *g->t);
    for (uint64_t i = 0; i < n_t; i++) {
        GgufTensor *t = &g->t[g->n_t++];
        uint64_t nlen;
        const char *nm = rd_str(&r, &nlen, "a tensor name");
        t->name = dup_str(nm, nlen);
        for (uint64_t k = 0; k < nlen; k++)   // names go into one-line messages
            if ((unsigned char)nm[k] < 0x20) fail("%s: tensor %llu's name holds control characters (corrupt file?)",
                                                  path, (unsigned long long)i);
        t->n_dims = (int)rd_u32(&r, "a tensor rank");
        if (t->n_dims < 1 || t->n_dims > 4) fail("%s: tensor '%s' has %d dimensions", path, t->name, t->n_dims);
        double numel = 1;
        for (int d = 0; d < 4; d++) {
            t->ne[d] = d < t->n_dims ? rd_u64(&r, "tensor dims") : 1;
            numel *= (double)t->ne[d];
        }
        t->type = (int)rd_u32(&r, "a tensor type");
        const GgufType *ti = gguf_type(t->type);
        if (!ti) fail("%s: tensor '%s' has unknown tensor type %d", path, t->name, t->type);
        if (t->ne[0] % (uint64_t)ti->block) fail("%s: tensor '%s' row of %llu is not a multiple of the %s block %d",
                                                path, t->name, (unsigned long long)t->ne[0], ti->name, ti->block);
        if (numel > 1e13) fail("%s: tensor '%s' is implausibly large", path, t->name);
        t->nbytes = (size_t)(numel / ti->block) * (size_t)ti->bytes;
        t->data = (const unsigned char *)(uintptr_t)rd_u64(&r, "a tensor offset");   // offset for now
    }
    size_t data_start = (r.pos + g->alignment - 1) / g->alignment * g->alignment;
    for (int i = 0; i < g->n_t; i++) {
        GgufTensor *t = &g->t[i];
        uint64_t off = (uint64_t)(uintptr_t)t->data;
        if (off % g->alignment) fail("%s: tensor '%s' offset %llu is not aligned to %zu", path, t->name,
                                     (unsigned long long)off, g->alignment);
        if (data_start > g->size || off > g->size - data_start || t->nbytes > g->size - data_start - off)
            fail("%s: tensor '%s' data runs past the end of the file (truncated?)", path, t->name);
        t->data = (const unsigned char *)g->map + data_start + off;
    }
}

void gguf_close(Gguf *g) {
    for (int i = 0; i < g->n_kv; i++) free(g->kv[i].key);
    for (int i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    if (g->map) munmap(g->map, g->size);
    memset(g, 0, sizeof *g);
}

const GgufKV *gguf_find_kv(const Gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++) if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const GgufTensor *gguf_find_tensor(const Gguf *g, const char *name) {
    for (int i = 0; i < g->n_t; i++) if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

// A numeric scalar as double (integers, floats and bools).
static double scalar_at(const unsigned char *v, int type) {
    float f;
    double d;
    switch (type) {
    case GGUF_U8: case GGUF_BOOL: return v[0];
    case GGUF_I8: return (int8_t)v[0];
    case GGUF_U16: return (double)le(v, 2);
    case GGUF_I16: return (int16_t)le(v, 2);
    case GGUF_U32: return (double)le(v, 4);
    case GGUF_I32: return (int32_t)le(v, 4);
    case GGUF_U64: return (double)le(v, 8);
    case GGUF_I64: return (double)(int64_t)le(v, 8);
    case GGUF_F32: { uint32_t b = (uint32_t)le(v, 4); memcpy(&f, &b, 4); return f; }
    case GGUF_F64: { uint64_t b = le(v, 8); memcpy(&d, &b, 8); return d; }
    }
    return 0;
}

// Numeric metadata, or def when absent (NAN def: required).
static double kv_num(const Gguf *g, const char *key, double def) {
    const GgufKV *kv = gguf_find_kv(g, key);
    if (!kv) {
        if (isnan(def)) fail("%s: missing metadata '%s'", g->path, key);
        return def;
    }
    if (kv->type == GGUF_STR || kv->type == GGUF_ARR) fail("%s: metadata '%s' is not a number", g->path, key);
    return scalar_at(kv->val, kv->type);
}

static int kv_int(const Gguf *g, const char *key, double def) {
    double v = kv_num(g, key, def);
    if (!(v >= -2147483647.0 && v <= 2147483647.0) || v != floor(v))
        fail("%s: metadata '%s' = %g is not a 32-bit integer", g->path, key, v);
    return (int)v;
}

// String metadata copied into buf; 0 when absent.
static int kv_str(const Gguf *g, const char *key, char *buf, size_t cap) {
    const GgufKV *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_STR) fail("%s: metadata '%s' is not a string", g->path, key);
    uint64_t n = le(kv->val, 8);
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), (const char *)kv->val + 8);
    return 1;
}

// Walks the elements of a string array (already bounds-checked by gguf_open).
typedef struct { const unsigned char *p; } StrIter;
static const char *str_next(StrIter *it, uint64_t *len) {
    *len = le(it->p, 8);
    const char *s = (const char *)it->p + 8;
    it->p += 8 + *len;
    return s;
}
static const GgufKV *kv_str_array(const Gguf *g, const char *key, int required) {
    const GgufKV *kv = gguf_find_kv(g, key);
    if (!kv) { if (required) fail("%s: missing metadata '%s'", g->path, key); return NULL; }
    if (kv->type != GGUF_ARR || kv->arr_type != GGUF_STR) fail("%s: metadata '%s' is not a string array", g->path, key);
    return kv;
}

void gguf_dequantize(const Gguf *g, const GgufTensor *t, float *dst) {
    const GgufType *ti = gguf_type(t->type);
    if (ti->refused) fail("%s: tensor '%s' has type %s: %s", g->path, t->name, ti->name, ti->refused);
    gguf_dequantize_blocks(t->type, t->data, t->nbytes / (size_t)ti->bytes, dst);
}

// ---- Q/K row permutation --------------------------------------------------------

// llama.cpp (convert_hf_to_gguf.py, LlamaModel.permute) reshapes the rows of
// each head as [2, D/2] and swaps the axes: GGUF row h*D + 2i + s holds Hugging
// Face row h*D + s*D/2 + i (s = 0: first half, s = 1: second half).
static void permute_rows(float *w, int n_head, int D, int cols, int to_hf) {
    float *tmp = xmalloc((size_t)D * cols * sizeof(float));
    for (int h = 0; h < n_head; h++) {
        float *head = w + (size_t)h * D * cols;
        for (int i = 0; i < D / 2; i++)
            for (int s = 0; s < 2; s++) {
                size_t hf = (size_t)s * (D / 2) + i, gg = 2 * (size_t)i + s;
                memcpy(tmp + (to_hf ? hf : gg) * cols, head + (to_hf ? gg : hf) * cols, (size_t)cols * sizeof(float));
            }
        memcpy(head, tmp, (size_t)D * cols * sizeof(float));
    }
    free(tmp);
}
void gguf_unpermute_rows(float *w, int n_head, int head_dim, int cols) { permute_rows(w, n_head, head_dim, cols, 1); }
void gguf_permute_rows(float *w, int n_head, int head_dim, int cols) { permute_rows(w, n_head, head_dim, cols, 0); }

// ---- Llama 3 rope frequency factors ----------------------------------------------
// llama.cpp stores Llama 3.x's frequency scaling as the tensor rope_freqs.weight:
// for each rotary pair i a factor by which its inverse frequency is divided (1 for
// the fast pairs, `factor` for the slow ones, interpolated between). The engine runs
// them as given (ROPE_FREQS), as llama.cpp does. When the file also has
// rope.scaling.factor, the Llama-3 curve of that metadata is compared with them: a
// difference is a warning naming the largest one, never a different rope.

static void rope_from_freqs(const Gguf *g, const GgufTensor *t, double md_factor, int md_orig, ModelConfig *c) {
    const int n = c->head_dim / 2;
    if (t->n_dims != 1 || t->ne[0] != (uint64_t)n)
        fail("%s: rope_freqs.weight has %llu values, the model's head_dim %d needs %d", g->path,
             (unsigned long long)t->ne[0], c->head_dim, n);
    if (n > ROPE_MAX_PAIRS)
        fail("%s: rope_freqs.weight has %d values; sprec runs at most %d (head_dim %d)", g->path, n, ROPE_MAX_PAIRS,
             2 * ROPE_MAX_PAIRS);
    gguf_dequantize(g, t, c->rope_freqs);
    for (int i = 0; i < n; i++)
        if (!(isfinite(c->rope_freqs[i]) && c->rope_freqs[i] > 0))
            fail("%s: rope_freqs.weight[%d] = %g (factors must be finite and > 0)", g->path, i, c->rope_freqs[i]);
    c->rope_scaling = ROPE_FREQS;
    if (md_orig > 0) c->rope_original_max_pos = md_orig;   // else Llama 3's 8192: for a llama3 curve (export)
    if (md_factor > 0) {   // the metadata's own curve (GGUF has no keys for low/high_freq_factor: Llama 3's 1/4)
        ModelConfig m = *c;
        m.rope_scaling = ROPE_LLAMA3;
        m.rope_factor = (float)md_factor;
        m.rope_low_freq_factor = 1.0f;
        m.rope_high_freq_factor = 4.0f;
        int at = 0;
        const double w = rope_llama3_worst(&m, c->rope_freqs, &at);
        if (!(w <= 1e-5))
            fprintf(stderr, "sprec: warning: %s: rope_freqs.weight differs from the Llama-3 curve of its metadata "
                    "(rope.scaling.factor %g, original_context_length %d, low/high_freq_factor 1/4): largest at "
                    "pair %d, %.6g in the file vs %.6g (relative %.2g); using the file's factors\n", g->path,
                    md_factor, c->rope_original_max_pos, at, c->rope_freqs[at], rope_llama3_divisor(&m, at), w);
    }
}

// ---- model config -----------------------------------------------------------------

void gguf_model_config(const Gguf *g, ModelConfig *c, char *arch, size_t cap) {
    if (!kv_str(g, "general.architecture", arch, cap)) fail("%s: missing metadata 'general.architecture'", g->path);
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0)
        fail("%s: GGUF architecture '%s' is not supported (llama, qwen2)", g->path, arch);
    char key[128];
#define K(name) (snprintf(key, sizeof key, "%s." name, arch), key)
    memset(c, 0, sizeof *c);
    c->rope_factor = 8.0f; c->rope_low_freq_factor = 1.0f; c->rope_high_freq_factor = 4.0f;
    c->rope_original_max_pos = 8192;   // unused without scaling; the defaults hf_config writes
    c->dim = kv_int(g, K("embedding_length"), NAN);
    c->n_layers = kv_int(g, K("block_count"), NAN);
    c->ffn_dim = kv_int(g, K("feed_forward_length"), NAN);
    c->n_heads = kv_int(g, K("attention.head_count"), NAN);
    c->n_kv_heads = kv_int(g, K("attention.head_count_kv"), c->n_heads);
    // head size: key_length when written, else the rotary dimension (all of the head in the Llama family)
    c->head_dim = kv_int(g, K("rope.dimension_count"), c->n_heads > 0 ? c->dim / c->n_heads : 0);
    c->head_dim = kv_int(g, K("attention.key_length"), c->head_dim);
    c->max_seq_len = kv_int(g, K("context_length"), NAN);
    c->rope_theta = (float)kv_num(g, K("rope.freq_base"), 10000.0);
    c->rms_eps = (float)kv_num(g, K("attention.layer_norm_rms_epsilon"), NAN);
    const GgufTensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb) fail("%s: missing tensor 'token_embd.weight'", g->path);
    c->vocab_size = kv_int(g, K("vocab_size"), (double)emb->ne[1]);
    c->tie_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    c->qkv_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    const GgufKV *sc = gguf_find_kv(g, K("rope.scaling.type"));
    if (sc) {
        char t[32];
        kv_str(g, key, t, sizeof t);
        if (strcmp(t, "none") != 0) fail("%s: rope scaling '%s' is not supported", g->path, t);
    }
    const double md_factor = kv_num(g, K("rope.scaling.factor"), 0);
    const int md_orig = kv_int(g, K("rope.scaling.original_context_length"), 0);
    const GgufTensor *rf = gguf_find_tensor(g, "rope_freqs.weight");
    if (!rf && md_factor != 0 && md_factor != 1)   // llama.cpp applies a factor without rope_freqs linearly
        fail("%s: %s = %g without rope_freqs.weight is linear rope scaling, which sprec does not run", g->path,
             K("rope.scaling.factor"), md_factor);
#undef K
    if (c->n_layers > 4096) fail("%s: block_count = %d is implausible", g->path, c->n_layers);
    model_config_validate(c, g->path);
    if (rf) rope_from_freqs(g, rf, md_factor, md_orig, c);
}

// ---- tokenizer -------------------------------------------------------------------

#include <cJSON.h>

// Pre-tokenizer regexes as llama.cpp (llama-vocab.cpp) and the original
// tokenizer.json files use them.
#define RE_LLAMA3 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static cJSON *byte_level(int use_regex) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "ByteLevel");
    cJSON_AddBoolToObject(b, "add_prefix_space", 0);
    cJSON_AddBoolToObject(b, "trim_offsets", 1);
    cJSON_AddBoolToObject(b, "use_regex", use_regex);
    return b;
}

// Unescapes a C-string regex literal (the defines above use JSON-style escapes).
static cJSON *split_regex(const char *re) {
    cJSON *s = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "Split");
    char *raw = xmalloc(strlen(re) + 1), *o = raw;
    for (const char *p = re; *p; p++) {
        if (p[0] == '\\' && p[1] == '\\') { *o++ = '\\'; p++; }
        else *o++ = *p;
    }
    *o = 0;
    cJSON_AddStringToObject(pat, "Regex", raw);
    free(raw);
    cJSON_AddItemToObject(s, "pattern", pat);
    cJSON_AddStringToObject(s, "behavior", "Isolated");
    cJSON_AddBoolToObject(s, "invert", 0);
    return s;
}

static cJSON *pre_tokenizer(const Gguf *g, const char *pre) {
    if (!strcmp(pre, "gpt2") || !strcmp(pre, "default")) return byte_level(1);
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    if (!strcmp(pre, "smollm")) {   // digits one by one, then GPT-2's regex
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", "Digits");
        cJSON_AddBoolToObject(d, "individual_digits", 1);
        cJSON_AddItemToArray(list, d);
        cJSON_AddItemToArray(list, byte_level(1));
    } else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) {
        cJSON_AddItemToArray(list, split_regex(RE_LLAMA3));
        cJSON_AddItemToArray(list, byte_level(0));
    } else if (!strcmp(pre, "qwen2")) {
        cJSON_AddItemToArray(list, split_regex(RE_QWEN2));
        cJSON_AddItemToArray(list, byte_level(0));
    } else {
        fail("%s: pre-tokenizer '%s' is not supported (gpt2, smollm, llama-bpe, qwen2)", g->path, pre);
    }
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    return seq;
}

// Token id -> text, or NULL when out of range.
static char *token_text(const Gguf *g, double id) {
    const GgufKV *toks = kv_str_array(g, "tokenizer.ggml.tokens", 1);
    if (id < 0 || id >= (double)toks->n) return NULL;
    StrIter it = {toks->val};
    uint64_t len;
    const char *s = NULL;
    for (uint64_t i = 0; i <= (uint64_t)id; i++) s = str_next(&it, &len);
    return dup_str(s, len);
}

// 0: "gpt2" (byte-level BPE), 1: "llama" (SentencePiece BPE with byte fallback).
static int tokenizer_kind(const Gguf *g) {
    char model[64] = "";
    if (!kv_str(g, "tokenizer.ggml.model", model, sizeof model)) fail("%s: no tokenizer (tokenizer.ggml.model)", g->path);
    if (!strcmp(model, "gpt2")) return 0;
    if (!strcmp(model, "llama")) return 1;
    fail("%s: tokenizer model '%s' is not supported (gpt2, llama)", g->path, model);
}

// ---- SentencePiece merges ----
// A "llama" GGUF stores tokens and scores but no merges. Like transformers'
// generate_merges: every split of a token (at character boundaries) into two
// vocab tokens is a merge; each token's splits ordered by (left id, right id),
// then all of them by score, left length, right length (characters), all
// descending, ties kept in that order.

typedef struct { const char *s; uint32_t len; int id; } VocabSlot;
typedef struct { VocabSlot *slot; size_t mask; } VocabMap;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}
static void vmap_put(VocabMap *m, const char *s, uint32_t len, int id) {   // later ids win, as in a Python dict
    for (size_t i = fnv(s, len) & m->mask;; i = (i + 1) & m->mask) {
        VocabSlot *e = &m->slot[i];
        if (!e->s || (e->len == len && !memcmp(e->s, s, len))) { e->s = s; e->len = len; e->id = id; return; }
    }
}
static int vmap_get(const VocabMap *m, const char *s, uint32_t len) {
    for (size_t i = fnv(s, len) & m->mask;; i = (i + 1) & m->mask) {
        const VocabSlot *e = &m->slot[i];
        if (!e->s) return -1;
        if (e->len == len && !memcmp(e->s, s, len)) return e->id;
    }
}

typedef struct { int l, r; float score; int llen, rlen; size_t seq; } Merge;
static size_t utf8_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}
static int merge_local_cmp(const void *a, const void *b) {
    const Merge *x = a, *y = b;
    return x->l != y->l ? (x->l < y->l ? -1 : 1) : (x->r > y->r) - (x->r < y->r);
}
static int merge_global_cmp(const void *a, const void *b) {
    const Merge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->llen != y->llen) return x->llen > y->llen ? -1 : 1;
    if (x->rlen != y->rlen) return x->rlen > y->rlen ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static void spm_merges(const Gguf *g, const GgufKV *toks, cJSON *out) {
    const GgufKV *scores = gguf_find_kv(g, "tokenizer.ggml.scores");
    if (!scores || scores->type != GGUF_ARR || scores->arr_type != GGUF_F32 || scores->n != toks->n)
        fail("%s: tokenizer.ggml.scores must be a float32 array as long as the token list", g->path);
    const size_t n = (size_t)toks->n;
    const char **str = xmalloc(n * sizeof *str);
    uint32_t *len = xmalloc(n * sizeof *len);
    StrIter it = {toks->val};
    for (size_t i = 0; i < n; i++) {
        uint64_t l;
        str[i] = str_next(&it, &l);
        if (l > 0xffffffu) fail("%s: token %zu is implausibly long", g->path, i);
        len[i] = (uint32_t)l;
    }
    VocabMap m;
    size_t cap = 1;
    while (cap < 2 * n + 2) cap <<= 1;
    m.slot = xcalloc(cap, sizeof *m.slot);
    m.mask = cap - 1;
    for (size_t i = 0; i < n; i++) vmap_put(&m, str[i], len[i], (int)i);
    Merge *all = NULL;
    size_t count = 0, cap_all = 0;
    for (size_t i = 0; i < n; i++) {
        if (vmap_get(&m, str[i], len[i]) != (int)i) continue;   // a duplicate: the dict kept the later one
        float score;
        uint32_t bits = (uint32_t)le(scores->val + 4 * i, 4);
        memcpy(&score, &bits, 4);
        size_t first = count;
        for (uint32_t k = 1; k < len[i]; k++) {
            if (((unsigned char)str[i][k] & 0xC0) == 0x80) continue;   // split at character boundaries only
            int l = vmap_get(&m, str[i], k), r = vmap_get(&m, str[i] + k, len[i] - k);
            if (l < 0 || r < 0) continue;
            if (count == cap_all) { cap_all = cap_all ? 2 * cap_all : 1024; all = realloc(all, cap_all * sizeof *all); if (!all) fail("out of memory"); }
            all[count++] = (Merge){l, r, score, (int)utf8_chars(str[i], k), (int)utf8_chars(str[i] + k, len[i] - k), 0};
        }
        if (count > first) qsort(all + first, count - first, sizeof *all, merge_local_cmp);   // (all is NULL until a first merge)
    }
    for (size_t i = 0; i < count; i++) all[i].seq = i;
    if (count) qsort(all, count, sizeof *all, merge_global_cmp);
    for (size_t i = 0; i < count; i++) {
        cJSON *pair = cJSON_CreateArray();
        char *a = dup_str(str[all[i].l], len[all[i].l]), *b = dup_str(str[all[i].r], len[all[i].r]);
        cJSON_AddItemToArray(pair, cJSON_CreateString(a));
        cJSON_AddItemToArray(pair, cJSON_CreateString(b));
        cJSON_AddItemToArray(out, pair);
        free(a); free(b);
    }
    free(all); free(m.slot); free(str); free(len);
}

static cJSON *spm_decoder(void) {   // LlamaTokenizer's: "▁" -> " ", <0xNN> -> bytes, join, drop the first space
    cJSON *d = cJSON_CreateObject(), *list = cJSON_CreateArray(), *rep = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", "Sequence");
    cJSON_AddStringToObject(rep, "type", "Replace");
    cJSON_AddStringToObject(pat, "String", "\xe2\x96\x81");
    cJSON_AddItemToObject(rep, "pattern", pat);
    cJSON_AddStringToObject(rep, "content", " ");
    cJSON_AddItemToArray(list, rep);
    const char *simple[] = {"ByteFallback", "Fuse"};
    for (int i = 0; i < 2; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", simple[i]);
        cJSON_AddItemToArray(list, o);
    }
    cJSON *strip = cJSON_CreateObject();
    cJSON_AddStringToObject(strip, "type", "Strip");
    cJSON_AddStringToObject(strip, "content", " ");
    cJSON_AddNumberToObject(strip, "start", 1);
    cJSON_AddNumberToObject(strip, "stop", 0);
    cJSON_AddItemToArray(list, strip);
    cJSON_AddItemToObject(d, "decoders", list);
    return d;
}

char *gguf_tokenizer_json_of(const Gguf *g, size_t *len) {
    const int spm = tokenizer_kind(g);
    const GgufKV *toks = kv_str_array(g, "tokenizer.ggml.tokens", 1);
    const GgufKV *merges = kv_str_array(g, "tokenizer.ggml.merges", !spm);
    const GgufKV *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_ARR || types->n != toks->n || (types->arr_type != GGUF_I32 && types->arr_type != GGUF_U32)))
        fail("%s: tokenizer.ggml.token_type must be an int32 array as long as the token list", g->path);
    char pre[64] = "default";
    kv_str(g, "tokenizer.ggml.pre", pre, sizeof pre);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens"), *vocab = cJSON_CreateObject();
    StrIter it = {toks->val};
    for (uint64_t i = 0; i < toks->n; i++) {
        uint64_t l;
        const char *s = str_next(&it, &l);
        char *text = dup_str(s, l);
        cJSON_AddItemToObject(vocab, text, cJSON_CreateNumber((double)i));
        int type = types ? (int)le(types->val + 4 * i, 4) : 1;
        if (type == 2 || type == 3 || type == 4) {   // unknown, control (special), user-defined: matched before BPE
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", text);
            cJSON_AddBoolToObject(a, "single_word", 0);
            cJSON_AddBoolToObject(a, "lstrip", 0);
            cJSON_AddBoolToObject(a, "rstrip", 0);
            cJSON_AddBoolToObject(a, "normalized", type == 4);
            cJSON_AddBoolToObject(a, "special", type != 4);
            cJSON_AddItemToArray(added, a);
        }
        free(text);
    }
    cJSON_AddNullToObject(j, "normalizer");
    if (spm) {   // LlamaTokenizer's: spaces -> "▁", one prepended to the text, no splitting
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "Metaspace");
        cJSON_AddStringToObject(p, "replacement", "\xe2\x96\x81");
        cJSON_AddStringToObject(p, "prepend_scheme", "first");
        cJSON_AddBoolToObject(p, "split", 0);
        cJSON_AddItemToObject(j, "pre_tokenizer", p);
    } else {
        cJSON_AddItemToObject(j, "pre_tokenizer", pre_tokenizer(g, pre));
    }
    double bos = kv_num(g, "tokenizer.ggml.bos_token_id", -1);
    // llama.cpp adds BOS for a SentencePiece vocabulary unless the file says otherwise
    int add_bos = (int)kv_num(g, "tokenizer.ggml.add_bos_token", spm);
    char *bos_text = token_text(g, bos);
    if (add_bos && bos_text) {   // the post-processor prepends BOS, as Llama 3's tokenizer.json does
        cJSON *pp = cJSON_CreateObject(), *single = cJSON_CreateArray(), *sp = cJSON_CreateObject();
        cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
        const char *seq[2] = {bos_text, "A"};
        for (int k = 0; k < 2; k++) {
            cJSON *item = cJSON_CreateObject(), *inner = cJSON_CreateObject();
            cJSON_AddStringToObject(inner, "id", seq[k]);
            cJSON_AddNumberToObject(inner, "type_id", 0);
            cJSON_AddItemToObject(item, k ? "Sequence" : "SpecialToken", inner);
            cJSON_AddItemToArray(single, item);
        }
        cJSON_AddItemToObject(pp, "single", single);
        cJSON_AddItemToObject(pp, "pair", cJSON_Duplicate(single, 1));
        cJSON *ids = cJSON_CreateArray(), *tok = cJSON_CreateArray();
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(bos));
        cJSON_AddItemToArray(tok, cJSON_CreateString(bos_text));
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", bos_text);
        cJSON_AddItemToObject(e, "ids", ids);
        cJSON_AddItemToObject(e, "tokens", tok);
        cJSON_AddItemToObject(sp, bos_text, e);
        cJSON_AddItemToObject(pp, "special_tokens", sp);
        cJSON_AddItemToObject(j, "post_processor", pp);
    } else if (spm) {
        cJSON_AddNullToObject(j, "post_processor");
    } else {
        cJSON *pp = byte_level(1);
        cJSON_ReplaceItemInObject(pp, "trim_offsets", cJSON_CreateFalse());
        cJSON_AddItemToObject(j, "post_processor", pp);
    }
    free(bos_text);
    cJSON_AddItemToObject(j, "decoder", spm ? spm_decoder() : byte_level(1));
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    char *unk = spm ? token_text(g, kv_num(g, "tokenizer.ggml.unknown_token_id", -1)) : NULL;
    if (unk) cJSON_AddStringToObject(model, "unk_token", unk);
    else cJSON_AddNullToObject(model, "unk_token");
    free(unk);
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", spm);
    cJSON_AddBoolToObject(model, "byte_fallback", spm);
    cJSON_AddBoolToObject(model, "ignore_merges", !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3"));
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON *ml = cJSON_AddArrayToObject(model, "merges");
    if (!merges) spm_merges(g, toks, ml);
    it.p = merges ? merges->val : NULL;
    for (uint64_t i = 0; merges && i < merges->n; i++) {
        uint64_t l;
        const char *s = str_next(&it, &l);
        char *text = dup_str(s, l);
        cJSON_AddItemToArray(ml, cJSON_CreateString(text));
        free(text);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!out) fail("out of memory printing tokenizer.json");
    *len = strlen(out);
    return out;
}

char *gguf_tokenizer_config_json_of(const Gguf *g, size_t *len) {
    const int spm = tokenizer_kind(g);
    cJSON *j = cJSON_CreateObject();
    const char *ids[] = {"bos", "eos", "unknown", "padding"}, *names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int i = 0; i < 4; i++) {
        char key[64];
        snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", ids[i]);
        char *t = token_text(g, kv_num(g, key, -1));
        if (t) cJSON_AddStringToObject(j, names[i], t);
        free(t);
    }
    cJSON_AddBoolToObject(j, "add_bos_token", kv_num(g, "tokenizer.ggml.add_bos_token", spm) != 0);
    cJSON_AddBoolToObject(j, "add_eos_token", kv_num(g, "tokenizer.ggml.add_eos_token", 0) != 0);
    cJSON_AddBoolToObject(j, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(j, "tokenizer_class", "PreTrainedTokenizerFast");
    const GgufKV *tmpl = gguf_find_kv(g, "tokenizer.chat_template");
    if (tmpl && tmpl->type == GGUF_STR) {
        char *t = dup_str((const char *)tmpl->val + 8, le(tmpl->val, 8));
        cJSON_AddStringToObject(j, "chat_template", t);
        free(t);
    }
    char *out = cJSON_Print(j);
    cJSON_Delete(j);
    *len = strlen(out);
    return out;
}

char *gguf_tokenizer_json(const char *path, size_t *len) {
    Gguf g;
    gguf_open(&g, path);
    char *s = gguf_tokenizer_json_of(&g, len);
    gguf_close(&g);
    return s;
}

// ---- info ---------------------------------------------------------------------------

static const char *KV_TYPE[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};

static void print_value(FILE *out, const unsigned char *v, int type) {
    if (type == GGUF_STR) {
        uint64_t n = le(v, 8);
        int shown = n > 60 ? 60 : (int)n;
        fputc('"', out);
        for (int i = 0; i < shown; i++) fputc(v[8 + i] == '\n' ? ' ' : v[8 + i], out);
        fprintf(out, "\"%s", n > 60 ? "..." : "");
    } else if (type == GGUF_F32 || type == GGUF_F64) {
        fprintf(out, "%g", scalar_at(v, type));
    } else {
        fprintf(out, "%.0f", scalar_at(v, type));
    }
}

void gguf_info(const char *path, FILE *out) {
    Gguf g;
    gguf_open(&g, path);
    fprintf(out, "%s: GGUF version %u, alignment %zu, %d metadata entries, %d tensors\n\nmetadata:\n", path,
            g.version, g.alignment, g.n_kv, g.n_t);
    for (int i = 0; i < g.n_kv; i++) {
        const GgufKV *kv = &g.kv[i];
        fprintf(out, "  %-44s ", kv->key);
        if (kv->type != GGUF_ARR) { fprintf(out, "%-4s ", KV_TYPE[kv->type]); print_value(out, kv->val, kv->type); }
        else {
            fprintf(out, "arr[%s, %llu]", kv->arr_type >= 0 && kv->arr_type <= GGUF_F64 ? KV_TYPE[kv->arr_type] : "?",
                    (unsigned long long)kv->n);
            if (kv->arr_type != GGUF_ARR && kv->arr_type >= 0 && kv->arr_type <= GGUF_F64) {
                const unsigned char *p = kv->val;
                fprintf(out, " [");
                for (uint64_t k = 0; k < kv->n && k < 4; k++) {
                    fprintf(out, "%s", k ? ", " : "");
                    print_value(out, p, kv->arr_type);
                    p += kv->arr_type == GGUF_STR ? 8 + le(p, 8) : (uint64_t)SCALAR_SIZE[kv->arr_type];
                }
                fprintf(out, "%s]", kv->n > 4 ? ", ..." : "");
            }
        }
        fputc('\n', out);
    }
    fprintf(out, "\ntensors:\n");
    int count[64] = {0};
    size_t total = 0, bytes[64] = {0};
    for (int i = 0; i < g.n_t; i++) {
        const GgufTensor *t = &g.t[i];
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[");
        for (int d = t->n_dims - 1; d >= 0; d--)   // Hugging Face order: rows first
            n += snprintf(shape + n, sizeof shape - n, "%llu%s", (unsigned long long)t->ne[d], d ? "," : "]");
        fprintf(out, "  %-36s %-6s %-16s %zu bytes\n", t->name, gguf_type_name(t->type), shape, t->nbytes);
        if (t->type >= 0 && t->type < 64) { count[t->type]++; bytes[t->type] += t->nbytes; }
        total += t->nbytes;
    }
    fprintf(out, "\ntensor types (the file's mix):");
    for (int k = 0, n = 0; k < 64; k++)
        if (count[k]) fprintf(out, "%s %s x%d (%.1f MiB)", n++ ? "," : "", gguf_type_name(k), count[k], bytes[k] / 1048576.0);
    fprintf(out, "; %.1f MiB of tensor data\n", total / 1048576.0);
    for (int k = 0; k < 64; k++)
        if (count[k] && gguf_type(k)->refused) fprintf(out, "not importable: %s (%s)\n", gguf_type_name(k), gguf_type(k)->refused);
    gguf_close(&g);
}
