// BERT's WordPiece pipeline as Hugging Face tokenizers runs it:
// BertNormalizer (drop control characters and make whitespace a space, put
// spaces around CJK ideographs, NFD and drop nonspacing marks, lowercase),
// BertPreTokenizer (split on whitespace, isolate each punctuation character),
// and the WordPiece model (greedy longest match from the left, continuations
// with "##", the whole word [UNK] when it cannot be covered or is too long).
// The character classes are tables probed from tokenizers itself
// (tokenizer_nfc_data.c, tests/ref/make_nfc_table.py). Also: a BERT vocab.txt
// turned into the tokenizer.json transformers would build from it.
#include <string.h>
#include <cJSON.h>
#include "tokenizer_impl.h"
#include "kernels/errors.h"

// BERT_* flags of a code point (0 for invalid bytes, which behave as letters)
static int bert_flags(int cp) {
    if (cp < 128) return bert_ascii[cp];
    int lo = 0, hi = bert_class_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < (int)bert_class[mid][0]) hi = mid - 1;
        else if (cp > (int)bert_class[mid][1]) lo = mid + 1;
        else return (int)bert_class[mid][2];
    }
    return 0;
}

// The CJK ideograph blocks BERT puts spaces around (not kana, not hangul)
static int is_cjk(int cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static void put_lower(int cp, Ints *out) {
    if (cp < 128) { ints_put(out, cp >= 'A' && cp <= 'Z' ? cp + 'a' - 'A' : cp); return; }
    int lo = 0, hi = bert_lower_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if ((int)bert_lower[mid][0] == cp) {
            ints_put(out, (int)bert_lower[mid][1]);
            if (bert_lower[mid][2]) ints_put(out, (int)bert_lower[mid][2]);
            return;
        }
        if ((int)bert_lower[mid][0] < cp) lo = mid + 1; else hi = mid - 1;
    }
    ints_put(out, cp);
}

// In tokenizers' order: clean_text, handle_chinese_chars, strip_accents, lowercase.
// Invalid bytes are kept as they are.
void bert_normalize(int opts, const char *s, size_t n, Bytes *out) {
    Ints a = {0}, b = {0};
    for (size_t k = 0; k < n;) {
        int cp, len = utf8_next((const unsigned char *)s + k, n - k, &cp);
        if (cp < 0) cp = -(int)(unsigned char)s[k] - 1;
        k += (size_t)len;
        int f = cp >= 0 ? bert_flags(cp) : 0;
        if ((opts & BERT_NORM_CLEAN) && (f & BERT_CTRL)) continue;
        if ((opts & BERT_NORM_CLEAN) && (f & BERT_SPACE)) cp = ' ';
        if ((opts & BERT_NORM_CHINESE) && is_cjk(cp)) {
            ints_put(&a, ' '); ints_put(&a, cp); ints_put(&a, ' ');
        } else ints_put(&a, cp);
    }
    if (opts & BERT_NORM_STRIP) {
        nfd_cps(a.p, a.n, &b);
        a.n = 0;
        for (size_t k = 0; k < b.n; k++)
            if (b.p[k] < 0 || !(bert_flags(b.p[k]) & BERT_MN)) ints_put(&a, b.p[k]);
    }
    if (opts & BERT_NORM_LOWER) {
        b.n = 0;
        for (size_t k = 0; k < a.n; k++)
            if (a.p[k] < 0) ints_put(&b, a.p[k]);
            else put_lower(a.p[k], &b);
        Ints t = a; a = b; b = t;
    }
    out->n = 0;
    bytes_put(out, "", 0);
    for (size_t k = 0; k < a.n; k++) {
        char u[4];
        if (a.p[k] < 0) { u[0] = (char)(-a.p[k] - 1); bytes_put(out, u, 1); }
        else bytes_put(out, u, (size_t)utf8_encode(a.p[k], u));
    }
    free(a.p); free(b.p);
}

// Words end at whitespace (dropped) and at punctuation (a piece of its own).
void bert_pre_split(const char *s, size_t n, Bytes *arena, Ints *pieces) {
    size_t word = 0;
    for (size_t k = 0; k < n;) {
        int cp, len = utf8_next((const unsigned char *)s + k, n - k, &cp);
        int f = cp >= 0 ? bert_flags(cp) : 0;
        if (f & (BERT_SPLIT_SPACE | BERT_PUNCT)) {
            emit_piece(arena, pieces, s + word, k - word);
            if (f & BERT_PUNCT) emit_piece(arena, pieces, s + k, (size_t)len);
            word = k + (size_t)len;
        }
        k += (size_t)len;
    }
    emit_piece(arena, pieces, s + word, n - word);
}

// Greedy longest match: from each start, the longest vocab entry (with the
// continuation prefix after the first), shortened one character at a time.
void wordpiece_word(const Tokenizer *t, const char *s, int n, Ints *out) {
    if (n <= 0 || word_cache_get(t, s, n, out)) return;
    Ints ends = {0};   // character boundaries
    Bytes key = {0};
    for (int k = 0; k < n;) {
        int cp;
        k += utf8_next((const unsigned char *)s + k, (size_t)(n - k), &cp);
        ints_put(&ends, k);
    }
    size_t mark = out->n;
    int bad = (int)ends.n > t->wp_max_chars;
    for (int start = 0, c0 = 0; !bad && start < n;) {   // c0: index of start's character
        int id = -1, c = (int)ends.n - 1;
        for (; c >= c0; c--) {
            int end = ends.p[c];
            if (!start) id = strmap_get(&t->vocab, s, end);
            else {
                key.n = 0;
                bytes_put(&key, t->wp_prefix, (size_t)t->wp_prefix_len);
                bytes_put(&key, s + start, (size_t)(end - start));
                id = strmap_get(&t->vocab, key.p, (int)key.n);
            }
            if (id >= 0) break;
        }
        if (id < 0) bad = 1;
        else { ints_put(out, id); start = ends.p[c]; c0 = c + 1; }
    }
    if (bad) { out->n = mark; ints_put(out, t->unk_id); }
    word_cache_put(t, s, n, out, mark);
    free(ends.p); free(key.p);
}

static const char *cfg_str(const cJSON *cfg, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");   // {"content": "[CLS]", ...}
    return cJSON_IsString(c) ? c->valuestring : dflt;
}

char *tokenizer_json_from_vocab_txt(const char *txt, size_t len, const char *config_json, size_t config_len,
                                    const char *where, size_t *out_len) {
    cJSON *cfg = config_json ? cJSON_ParseWithLength(config_json, config_len) : NULL;
    if (config_json && !cJSON_IsObject(cfg)) fail("%s: tokenizer_config.json is not a JSON object", where);
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(cfg, "do_lower_case"),
                *sa = cJSON_GetObjectItemCaseSensitive(cfg, "strip_accents"),
                *cc = cJSON_GetObjectItemCaseSensitive(cfg, "tokenize_chinese_chars");
    const char *unk = cfg_str(cfg, "unk_token", "[UNK]"), *cls = cfg_str(cfg, "cls_token", "[CLS]"),
               *sep = cfg_str(cfg, "sep_token", "[SEP]");
    const char *specials[] = {cfg_str(cfg, "pad_token", "[PAD]"), unk, cls, sep, cfg_str(cfg, "mask_token", "[MASK]")};

    cJSON *root = cJSON_CreateObject(), *vocab = cJSON_CreateObject(), *added = cJSON_AddArrayToObject(root, "added_tokens");
    int n = 0, cls_id = -1, sep_id = -1;
    for (size_t i = 0; i < len;) {   // one token a line, its id the line number; trailing whitespace dropped
        const char *nl = memchr(txt + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - txt) : len, z = e;
        while (z > i && (txt[z - 1] == ' ' || txt[z - 1] == '\t' || txt[z - 1] == '\r')) z--;
        char *tok = xmalloc(z - i + 1);
        memcpy(tok, txt + i, z - i);
        tok[z - i] = 0;
        cJSON_AddItemToObject(vocab, tok, cJSON_CreateNumber(n));
        for (size_t k = 0; k < sizeof specials / sizeof *specials; k++)
            if (!strcmp(tok, specials[k])) {
                cJSON *a = cJSON_CreateObject();
                cJSON_AddNumberToObject(a, "id", n);
                cJSON_AddStringToObject(a, "content", tok);
                cJSON_AddBoolToObject(a, "special", 1);
                cJSON_AddItemToArray(added, a);
            }
        if (!strcmp(tok, cls)) cls_id = n;
        if (!strcmp(tok, sep)) sep_id = n;
        free(tok);
        n++;
        i = e + 1;
    }
    if (!n) fail("%s: vocab.txt is empty", where);
    if (cls_id < 0 || sep_id < 0) fail("%s: vocab.txt has no '%s' or no '%s' token", where, cls, sep);

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "WordPiece");
    cJSON_AddStringToObject(model, "unk_token", unk);
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "##");
    cJSON_AddNumberToObject(model, "max_input_chars_per_word", 100);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(norm, "type", "BertNormalizer");
    cJSON_AddBoolToObject(norm, "clean_text", 1);
    cJSON_AddBoolToObject(norm, "handle_chinese_chars", !cJSON_IsFalse(cc));
    cJSON_AddItemToObject(norm, "strip_accents", cJSON_IsBool(sa) ? cJSON_CreateBool(cJSON_IsTrue(sa)) : cJSON_CreateNull());
    cJSON_AddBoolToObject(norm, "lowercase", !cJSON_IsFalse(lc));   // vocab.txt alone: uncased BERT
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "pre_tokenizer"), "type", "BertPreTokenizer");
    cJSON *post = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(post, "type", "BertProcessing");
    cJSON *pair = cJSON_AddArrayToObject(post, "cls");
    cJSON_AddItemToArray(pair, cJSON_CreateString(cls));
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(cls_id));
    pair = cJSON_AddArrayToObject(post, "sep");
    cJSON_AddItemToArray(pair, cJSON_CreateString(sep));
    cJSON_AddItemToArray(pair, cJSON_CreateNumber(sep_id));
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "WordPiece");
    cJSON_AddStringToObject(dec, "prefix", "##");
    cJSON_AddBoolToObject(dec, "cleanup", 1);

    char *json = cJSON_PrintUnformatted(root);
    if (!json) fail("out of memory (tokenizer)");
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (out_len) *out_len = strlen(json);
    return json;
}
