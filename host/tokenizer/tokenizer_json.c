// Loading a Hugging Face tokenizer.json (+ tokenizer_config.json) into a
// Tokenizer: vocab, merges (both the "a b" and the [a, b] form), added tokens,
// and the normalizer / pre-tokenizer / decoder / post-processor pipelines
// turned into flat op lists. Anything we cannot reproduce exactly is an error
// naming the component, never a silent approximation.
#include <string.h>
#include <cJSON.h>
#include "tokenizer_impl.h"
#include "kernels/errors.h"

static const char *GPT2_RE =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static char *dupn(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}
static int is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

// {"String": s} or {"Regex": s}; *is_regex tells which
static const char *pattern_of(const cJSON *o, int *is_regex, const char *what, const char *where) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s;
    if ((s = jstr(p, "Regex"))) { *is_regex = 1; return s; }
    if ((s = jstr(p, "String"))) { *is_regex = 0; return s; }
    fail("%s: %s has no pattern {\"String\": ...} or {\"Regex\": ...}", where, what);
}

static void add_split(Tokenizer *t, const char *re, size_t relen, SplitBehavior b, int invert, const char *where) {
    int err;
    PCRE2_SIZE off;
    // MATCH_INVALID_UTF: invalid UTF-8 never matches and is left in the gaps, so
    // it flows through byte-wise instead of being rejected
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, relen, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                     &err, &off, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        fail("%s: pre-tokenizer regex does not compile at offset %zu: %s", where, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);   // falls back to the interpreter when JIT is unavailable
    t->pre = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *t->pre);
    t->pre[t->n_pre++] = (PreStep){.kind = PRE_SPLIT, .re = code, .md = pcre2_match_data_create_from_pattern(code, NULL),
                                   .behavior = b, .invert = invert};
}

// A literal string as a regex: escape every non-alphanumeric ASCII byte.
static char *regex_escape(const char *s) {
    size_t n = strlen(s);
    char *o = xmalloc(2 * n + 1), *q = o;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) *q++ = '\\';
        *q++ = (char)c;
    }
    *q = 0;
    return o;
}

static int prepend_scheme(const cJSON *o) {
    const char *s = jstr(o, "prepend_scheme");
    if (s) return !strcmp(s, "never") ? 0 : !strcmp(s, "first") ? 2 : 1;
    return jbool(o, "add_prefix_space", 1);
}

static void parse_pre(Tokenizer *t, const cJSON *p, const char *where) {
    if (is_null(p)) return;
    const char *type = jstr(p, "type");
    if (!type) fail("%s: pre_tokenizer has no \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) parse_pre(t, e, where);
    } else if (!strcmp(type, "ByteLevel")) {
        t->byte_level = 1;
        if (jbool(p, "add_prefix_space", 1)) {
            t->pre = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *t->pre);
            t->pre[t->n_pre++] = (PreStep){.kind = PRE_BYTELEVEL_PREFIX};
        }
        if (jbool(p, "use_regex", 1)) add_split(t, GPT2_RE, strlen(GPT2_RE), SPLIT_ISOLATED, 0, where);
    } else if (!strcmp(type, "Split")) {
        int is_re;
        const char *pat = pattern_of(p, &is_re, "Split pre-tokenizer", where), *b = jstr(p, "behavior");
        SplitBehavior sb;
        if (!b) fail("%s: Split pre-tokenizer has no behavior", where);
        else if (!strcmp(b, "Removed")) sb = SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated")) sb = SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) sb = SPLIT_PREV;
        else if (!strcmp(b, "MergedWithNext")) sb = SPLIT_NEXT;
        else if (!strcmp(b, "Contiguous")) sb = SPLIT_CONTIGUOUS;
        else fail("%s: unknown Split behavior '%s'", where, b);
        char *re = is_re ? dupn(pat, strlen(pat)) : regex_escape(pat);
        add_split(t, re, strlen(re), sb, jbool(p, "invert", 0), where);
        free(re);
    } else if (!strcmp(type, "Digits")) {
        // tokenizers uses char::is_numeric: any Unicode number, \p{N}
        const char *re = jbool(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+";
        add_split(t, re, strlen(re), SPLIT_ISOLATED, 0, where);
    } else if (!strcmp(type, "Whitespace")) {
        add_split(t, "\\w+|[^\\w\\s]+", 12, SPLIT_REMOVED, 1, where);   // keeps the matches, drops the whitespace
    } else if (!strcmp(type, "WhitespaceSplit")) {
        add_split(t, "\\s+", 3, SPLIT_REMOVED, 0, where);
    } else if (!strcmp(type, "BertPreTokenizer")) {
        t->pre = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *t->pre);
        t->pre[t->n_pre++] = (PreStep){.kind = PRE_BERT};
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = jstr(p, "replacement");
        if (r && strcmp(r, "\xe2\x96\x81")) fail("%s: Metaspace with replacement other than U+2581 is not supported", where);
        t->pre = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *t->pre);
        t->pre[t->n_pre++] = (PreStep){.kind = PRE_METASPACE, .prepend = prepend_scheme(p), .split = jbool(p, "split", 1)};
    } else fail("%s: unsupported pre_tokenizer type '%s'", where, type);
}

static void parse_norm(Tokenizer *t, const cJSON *n, const char *where) {
    if (is_null(n)) return;
    const char *type = jstr(n, "type");
    if (!type) fail("%s: normalizer has no \"type\"", where);
    NormOp op = {0};
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) parse_norm(t, e, where);
        return;
    } else if (!strcmp(type, "Prepend")) {
        const char *s = jstr(n, "prepend");
        if (!s) fail("%s: Prepend normalizer has no \"prepend\" string", where);
        op = (NormOp){NORM_PREPEND, dupn(s, strlen(s)), NULL, (int)strlen(s), 0, 0};
    } else if (!strcmp(type, "Replace")) {
        int is_re;
        const char *pat = pattern_of(n, &is_re, "Replace normalizer", where), *c = jstr(n, "content");
        if (is_re) fail("%s: Replace normalizer with a Regex pattern is not supported", where);
        if (!c || !*pat) fail("%s: Replace normalizer needs a non-empty pattern and a content", where);
        op = (NormOp){NORM_REPLACE, dupn(pat, strlen(pat)), dupn(c, strlen(c)), (int)strlen(pat), (int)strlen(c), 0};
    } else if (!strcmp(type, "NFC")) {
        op.kind = NORM_NFC;
    } else if (!strcmp(type, "BertNormalizer")) {   // strip_accents null: follows lowercase, as in tokenizers
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(n, "strip_accents");
        int lower = jbool(n, "lowercase", 1), strip = cJSON_IsBool(sa) ? cJSON_IsTrue(sa) : lower;
        op.kind = NORM_BERT;
        op.bert = (jbool(n, "clean_text", 1) ? BERT_NORM_CLEAN : 0) | (jbool(n, "handle_chinese_chars", 1) ? BERT_NORM_CHINESE : 0) |
                  (strip ? BERT_NORM_STRIP : 0) | (lower ? BERT_NORM_LOWER : 0);
    } else fail("%s: unsupported normalizer type '%s'", where, type);
    t->norm = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *t->norm);
    t->norm[t->n_norm++] = op;
}

static void parse_dec(Tokenizer *t, const cJSON *d, const char *where) {
    if (is_null(d)) return;
    const char *type = jstr(d, "type");
    if (!type) fail("%s: decoder has no \"type\"", where);
    DecOp op = {0};
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "decoders")) parse_dec(t, e, where);
        return;
    } else if (!strcmp(type, "ByteLevel")) op.kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) op.kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) op.kind = DEC_FUSE;
    else if (!strcmp(type, "Replace")) {
        int is_re;
        const char *pat = pattern_of(d, &is_re, "Replace decoder", where), *c = jstr(d, "content");
        if (is_re || !c || !*pat) fail("%s: Replace decoder needs a String pattern and a content", where);
        op = (DecOp){.kind = DEC_REPLACE, .a = dupn(pat, strlen(pat)), .b = dupn(c, strlen(c)),
                     .alen = (int)strlen(pat), .blen = (int)strlen(c)};
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(d, "content");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "start"), *e = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!c || !*c) fail("%s: Strip decoder has no content", where);
        op = (DecOp){.kind = DEC_STRIP, .a = dupn(c, strlen(c)), .alen = (int)strlen(c),
                     .start = cJSON_IsNumber(s) ? s->valueint : 0, .stop = cJSON_IsNumber(e) ? e->valueint : 0};
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = jstr(d, "replacement");
        if (r && strcmp(r, "\xe2\x96\x81")) fail("%s: Metaspace with replacement other than U+2581 is not supported", where);
        op = (DecOp){.kind = DEC_METASPACE, .prepend = prepend_scheme(d)};
    } else if (!strcmp(type, "WordPiece")) {
        const char *pre = jstr(d, "prefix");
        if (!pre) pre = "##";
        op = (DecOp){.kind = DEC_WORDPIECE, .a = dupn(pre, strlen(pre)), .alen = (int)strlen(pre), .cleanup = jbool(d, "cleanup", 1)};
    } else fail("%s: unsupported decoder type '%s'", where, type);
    t->dec = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *t->dec);
    t->dec[t->n_dec++] = op;
}

static int special_id(const Tokenizer *t, const cJSON *special_tokens, const char *name, const char *where) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(special_tokens, name), *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
    if (cJSON_GetArraySize(ids) != 1 || !cJSON_IsNumber(cJSON_GetArrayItem(ids, 0)))
        fail("%s: TemplateProcessing special token '%s' must have exactly one id", where, name);
    int id = cJSON_GetArrayItem(ids, 0)->valueint;
    if (id < 0 || id >= t->vocab_size) fail("%s: TemplateProcessing id %d is out of range", where, id);
    return id;
}

static void parse_post(Tokenizer *t, const cJSON *p, const char *where) {
    if (is_null(p)) return;
    const char *type = jstr(p, "type");
    if (!type) fail("%s: post_processor has no \"type\"", where);
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "processors")) parse_post(t, e, where);
    } else if (!strcmp(type, "ByteLevel")) {
        // offsets only: no ids change
    } else if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *e, *st = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
        int seen_a = 0;
        t->prefix.n = t->suffix.n = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "single")) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) { seen_a = 1; continue; }
            const char *name = jstr(sp, "id");
            if (!name) fail("%s: TemplateProcessing item is neither SpecialToken nor Sequence", where);
            ints_put(seen_a ? &t->suffix : &t->prefix, special_id(t, st, name, where));
        }
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(p, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(p, "sep");
        if (!cJSON_IsNumber(cJSON_GetArrayItem(cls, 1)) || !cJSON_IsNumber(cJSON_GetArrayItem(sep, 1)))
            fail("%s: %s needs cls and sep [token, id] pairs", where, type);
        t->prefix.n = t->suffix.n = 0;
        ints_put(&t->prefix, cJSON_GetArrayItem(cls, 1)->valueint);
        ints_put(&t->suffix, cJSON_GetArrayItem(sep, 1)->valueint);
    } else fail("%s: unsupported post_processor type '%s'", where, type);
}

static void set_token(Tokenizer *t, int id, const char *s, int len) {
    free(t->tok[id]);
    t->tok[id] = dupn(s, (size_t)len);
    t->tok_len[id] = len;
}

// bos_token / eos_token: "<s>" or {"content": "<s>", ...}
static int config_token(const Tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    return s ? tokenizer_token_id(t, s) : -1;
}

static void parse_config(Tokenizer *t, const char *json, size_t len, const char *where) {
    cJSON *cfg = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(cfg)) fail("%s: tokenizer_config.json is not a JSON object", where);
    int bos = config_token(t, cfg, "bos_token"), eos = config_token(t, cfg, "eos_token");
    if (bos >= 0) t->bos_id = bos;
    if (eos >= 0) t->eos_id = eos;
    // transformers rebuilds the template from these flags when a config has them
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token"), *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (cJSON_IsBool(ab) || cJSON_IsBool(ae)) {
        t->prefix.n = t->suffix.n = 0;
        if (cJSON_IsTrue(ab) && t->bos_id >= 0) ints_put(&t->prefix, t->bos_id);
        if (cJSON_IsTrue(ae) && t->eos_id >= 0) ints_put(&t->suffix, t->eos_id);
    }
    cJSON_Delete(cfg);
}

static int by_length_desc(const void *a, const void *b) {
    const AddedTok *x = a, *y = b;
    return x->len != y->len ? y->len - x->len : x->id - y->id;
}

Tokenizer *tokenizer_from_json(const char *json, size_t len, const char *config_json, size_t config_len,
                               const char *where) {
    byte_table_init();
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) fail("%s: not a tokenizer.json (not a JSON object)", where);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) fail("%s: tokenizer.json has no \"model\" object", where);
    const char *type = jstr(model, "type");
    const int wordpiece = type && !strcmp(type, "WordPiece");
    if (type && strcmp(type, "BPE") && !wordpiece)
        fail("%s: tokenizer model type '%s' is not supported (only BPE and WordPiece)", where, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) fail("%s: model.vocab is missing or not an object", where);
    const char *cont = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    const cJSON *max_chars = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    if (wordpiece && max_chars && (!cJSON_IsNumber(max_chars) || max_chars->valuedouble < 1 || max_chars->valuedouble > 1e9))
        fail("%s: model.max_input_chars_per_word must be a positive number", where);
    if (!wordpiece) {
        if (!cJSON_IsArray(merges)) fail("%s: model.merges is missing or not an array", where);
        const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
        if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0) fail("%s: BPE dropout is not supported", where);
        if ((cont && *cont) || (eow && *eow)) fail("%s: continuing_subword_prefix / end_of_word_suffix are not supported", where);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;

    Tokenizer *t = xcalloc(1, sizeof *t);
    t->bos_id = t->eos_id = t->unk_id = -1;
    // The ids index tables sized by the largest one, so an id beyond the number of tokens the file
    // holds (vocab + added_tokens: the ids of a real tokenizer are dense) is refused, not allocated.
    const int n_ids = cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added);
    int max_id = -1;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (1 << 30) || e->valuedouble != (int)e->valuedouble)
            fail("%s: model.vocab entry '%s' has no valid id", where, e->string);
        if (e->valueint >= n_ids)
            fail("%s: model.vocab token '%s' has id %d, but vocab and added_tokens hold %d tokens (ids 0..%d)",
                 where, e->string, e->valueint, n_ids, n_ids - 1);
        if (e->valueint > max_id) max_id = e->valueint;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= (1 << 30) || !jstr(e, "content"))
            fail("%s: added_tokens entry without a valid id and content", where);
        if (id->valueint >= n_ids)
            fail("%s: added token '%s' has id %d, but vocab and added_tokens hold %d tokens (ids 0..%d)",
                 where, jstr(e, "content"), id->valueint, n_ids, n_ids - 1);
        if (id->valueint > max_id) max_id = id->valueint;
    }
    t->vocab_size = max_id + 1;
    t->tok = xcalloc((size_t)t->vocab_size, sizeof(char *));
    t->tok_len = xcalloc((size_t)t->vocab_size, sizeof(int));
    t->is_special = xcalloc((size_t)t->vocab_size, 1);
    cJSON_ArrayForEach(e, vocab) {
        int l = (int)strlen(e->string);
        strmap_put(&t->vocab, e->string, l, e->valueint);
        set_token(t, e->valueint, e->string, l);
    }

    int rank = 0;
    if (!wordpiece) cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        int alen, blen;
        if (cJSON_IsString(e)) {   // "a b": tokens never contain a space in this form
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) fail("%s: merges entry %d ('%s') is not two tokens", where, rank, e->valuestring);
            a = e->valuestring; alen = (int)(sp - a); b = sp + 1; blen = (int)strlen(b);
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) && cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring; alen = (int)strlen(a);
            b = cJSON_GetArrayItem(e, 1)->valuestring; blen = (int)strlen(b);
        } else fail("%s: merges entry %d is neither \"a b\" nor [a, b]", where, rank);
        int ia = strmap_get(&t->vocab, a, alen), ib = strmap_get(&t->vocab, b, blen);
        char *ab = xmalloc((size_t)alen + (size_t)blen + 1);
        memcpy(ab, a, (size_t)alen);
        memcpy(ab + alen, b, (size_t)blen);
        int iab = strmap_get(&t->vocab, ab, alen + blen);
        free(ab);
        if (ia < 0 || ib < 0 || iab < 0) fail("%s: merges entry %d: '%.*s' + '%.*s' is not in the vocab", where, rank, alen, a, blen, b);
        mergemap_put(&t->merges, ia, ib, rank++, iab);
    }
    const char *unk = jstr(model, "unk_token");
    if (wordpiece && !unk) unk = "[UNK]";   // tokenizers' default; WordPiece cannot do without one
    if (unk && (t->unk_id = strmap_get(&t->vocab, unk, (int)strlen(unk))) < 0)
        fail("%s: unk_token '%s' is not in the vocab", where, unk);
    if ((t->wordpiece = wordpiece)) {
        if (!cont) cont = "##";
        t->wp_prefix = dupn(cont, strlen(cont));
        t->wp_prefix_len = (int)strlen(cont);
        t->wp_max_chars = max_chars ? (int)max_chars->valuedouble : 100;
    }
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);

    cJSON_ArrayForEach(e, added) {
        const char *s = jstr(e, "content");
        int id = cJSON_GetObjectItemCaseSensitive(e, "id")->valueint, l = (int)strlen(s);
        if (!l) fail("%s: added token %d has empty content", where, id);
        t->added = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *t->added);
        t->added[t->n_added++] = (AddedTok){dupn(s, (size_t)l), l, id, jbool(e, "special", 0),
                                            jbool(e, "lstrip", 0), jbool(e, "rstrip", 0), jbool(e, "single_word", 0)};
        t->added_first[(unsigned char)s[0]] = 1;
        t->is_special[id] = (unsigned char)jbool(e, "special", 0);
        strmap_put(&t->added_map, s, l, id);
        set_token(t, id, s, l);
    }
    if (t->n_added) qsort(t->added, (size_t)t->n_added, sizeof *t->added, by_length_desc);

    parse_norm(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), where);
    parse_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), where);
    parse_dec(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), where);
    parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), where);
    cJSON_Delete(root);

    for (int b = 0; b < 256; b++) {
        char u[8];
        int n = utf8_encode(byte_to_cp[b], u);
        t->byte_id[b] = strmap_get(&t->vocab, u, n);
        snprintf(u, sizeof u, "<0x%02X>", b);
        t->fallback_id[b] = strmap_get(&t->vocab, u, 6);
    }
    // BOS/EOS: the config names them; else the template's first token is BOS
    // and a conventional end token is EOS
    if (t->prefix.n) t->bos_id = t->prefix.p[0];
    if (t->suffix.n) t->eos_id = t->suffix.p[t->suffix.n - 1];
    static const char *eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<eos>"};
    for (size_t i = 0; i < sizeof eos_names / sizeof *eos_names && t->eos_id < 0; i++)
        t->eos_id = strmap_get(&t->added_map, eos_names[i], (int)strlen(eos_names[i]));
    if (config_json) parse_config(t, config_json, config_len, where);

    t->cache = xcalloc(1, sizeof *t->cache);
    t->scratch = bpe_scratch_new();
    t->enc = enc_scratch_new();
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->vocab_size; i++) free(t->tok[i]);
    free(t->tok); free(t->tok_len); free(t->is_special);
    strmap_free(&t->vocab);
    strmap_free(&t->added_map);
    free(t->merges.slots);
    free(t->wp_prefix);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].s);
    free(t->added);
    for (int i = 0; i < t->n_norm; i++) { free(t->norm[i].a); free(t->norm[i].b); }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].kind == PRE_SPLIT) { pcre2_match_data_free(t->pre[i].md); pcre2_code_free(t->pre[i].re); }
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    free(t->dec);
    free(t->prefix.p); free(t->suffix.p);
    bpe_free(t);
    enc_scratch_free(t->enc);
    free(t);
}
