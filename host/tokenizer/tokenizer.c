// Encoding and decoding, following Hugging Face tokenizers' pipeline:
// added tokens are cut out of the raw text first (leftmost, longest), each
// remaining chunk is normalized, pre-tokenized into pieces, and each piece goes
// through the model (BPE: tokenizer_bpe.c, WordPiece: tokenizer_wordpiece.c);
// then the post-processor's template wraps the ids. Decoding maps ids to token
// strings and runs the decoder op list.
// Loading is in tokenizer_json.c.
#include <string.h>
#include "tokenizer_impl.h"
#include "kernels/errors.h"

// Pieces are (offset, length) pairs into a byte arena; each pipeline step
// reads one arena and writes the other.
struct EncScratch { Bytes norm[2], arena[2]; Ints pieces[2], segs; };

struct EncScratch *enc_scratch_new(void) { return xcalloc(1, sizeof(struct EncScratch)); }
void enc_scratch_free(struct EncScratch *e) {
    for (int i = 0; i < 2; i++) { free(e->norm[i].p); free(e->arena[i].p); free(e->pieces[i].p); }
    free(e->segs.p);
    free(e);
}

// Replaces every occurrence of a by b (non-overlapping, left to right).
static void replace_all(Bytes *out, const char *s, size_t n, const char *a, size_t alen, const char *b, size_t blen) {
    out->n = 0;
    bytes_put(out, "", 0);
    for (size_t i = 0; i < n;) {
        const char *hit = alen <= n - i ? memmem(s + i, n - i, a, alen) : NULL;
        if (!hit) { bytes_put(out, s + i, n - i); break; }
        bytes_put(out, s + i, (size_t)(hit - (s + i)));
        bytes_put(out, b, blen);
        i = (size_t)(hit - s) + alen;
    }
}

// Regex split of one piece into dst, with tokenizers' SplitDelimiterBehavior.
static void split_piece(const PreStep *st, Ints *segs, const char *s, size_t n, Bytes *arena, Ints *pieces) {
    segs->n = 0;   // triples (start, end, is_match) covering the piece
    size_t pos = 0, last = 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
    while (pos < n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, 0, st->md, NULL);
        if (rc < 0) break;
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {   // an empty match splits nothing: step one character on
            int cp;
            pos = ms + (size_t)utf8_next((const unsigned char *)s + ms, n - ms, &cp);
            continue;
        }
        if (ms > last) { ints_put(segs, (int)last); ints_put(segs, (int)ms); ints_put(segs, 0); }
        ints_put(segs, (int)ms); ints_put(segs, (int)me); ints_put(segs, 1);
        last = pos = me;
    }
    if (n > last) { ints_put(segs, (int)last); ints_put(segs, (int)n); ints_put(segs, 0); }
    int *g = segs->p;
    size_t k = segs->n / 3, cut = 0;
    if (st->invert) for (size_t i = 0; i < k; i++) g[3 * i + 2] ^= 1;
    for (size_t i = 0; i < k; i++) {
        size_t a = (size_t)g[3 * i], b = (size_t)g[3 * i + 1];
        int m = g[3 * i + 2];
        switch (st->behavior) {
        case SPLIT_ISOLATED: emit_piece(arena, pieces, s + a, b - a); break;
        case SPLIT_REMOVED: if (!m) emit_piece(arena, pieces, s + a, b - a); break;
        case SPLIT_PREV: if (m) { emit_piece(arena, pieces, s + cut, b - cut); cut = b; } break;
        case SPLIT_NEXT: if (m) { emit_piece(arena, pieces, s + cut, a - cut); cut = a; } break;
        case SPLIT_CONTIGUOUS:
            if (m) {   // runs of adjacent matches are one piece
                size_t j = i;
                while (j + 1 < k && g[3 * (j + 1) + 2]) j++;
                b = (size_t)g[3 * j + 1];
                i = j;
            }
            emit_piece(arena, pieces, s + a, b - a);
            break;
        }
    }
    if (st->behavior == SPLIT_PREV || st->behavior == SPLIT_NEXT) emit_piece(arena, pieces, s + cut, n - cut);
}

#define META "\xe2\x96\x81"   // U+2581, SentencePiece's visible space

static void pre_step(const PreStep *st, Ints *segs, const char *s, size_t n, int at_start, Bytes *arena, Ints *pieces) {
    if (st->kind == PRE_SPLIT) { split_piece(st, segs, s, n, arena, pieces); return; }
    if (st->kind == PRE_BERT) { bert_pre_split(s, n, arena, pieces); return; }
    if (st->kind == PRE_BYTELEVEL_PREFIX) {
        size_t off = arena->n;
        if (n == 0 || s[0] != ' ') bytes_put(arena, " ", 1);
        bytes_put(arena, s, n);
        ints_put(pieces, (int)off);
        ints_put(pieces, (int)(arena->n - off));
        return;
    }
    // Metaspace: spaces become U+2581, maybe one is prepended, then split before each
    size_t off = arena->n;
    // spaces are replaced first, so a leading space counts as a leading U+2581
    if ((st->prepend == 1 || (st->prepend == 2 && at_start)) && !(n >= 1 && s[0] == ' ') && !(n >= 3 && !memcmp(s, META, 3)))
        bytes_put(arena, META, 3);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') bytes_put(arena, META, 3);
        else bytes_put(arena, s + i, 1);
    }
    size_t end = arena->n, cut = off;
    if (st->split)
        for (size_t i = off + 1; i + 3 <= end; i++)
            if (!memcmp(arena->p + i, META, 3)) { ints_put(pieces, (int)cut); ints_put(pieces, (int)(i - cut)); cut = i; }
    if (end > cut) { ints_put(pieces, (int)cut); ints_put(pieces, (int)(end - cut)); }
}

static void model_word(const Tokenizer *t, const char *s, int n, Ints *out) {
    if (t->wordpiece) wordpiece_word(t, s, n, out);
    else bpe_word(t, s, n, out);
}

// One chunk of text between added tokens.
static void encode_chunk(const Tokenizer *t, const char *s, size_t n, int at_start, Ints *out) {
    if (!n) return;
    struct EncScratch *e = t->enc;
    int w = 0;
    for (int i = 0; i < t->n_norm; i++) {
        const NormOp *op = &t->norm[i];
        Bytes *o = &e->norm[w];
        if (op->kind == NORM_NFC) nfc_normalize(s, n, o);
        else if (op->kind == NORM_BERT) bert_normalize(op->bert, s, n, o);
        else if (op->kind == NORM_PREPEND) {   // tokenizers prepends only to non-empty text
            o->n = 0;
            if (n) bytes_put(o, op->a, (size_t)op->alen);
            bytes_put(o, s, n);
        } else replace_all(o, s, n, op->a, (size_t)op->alen, op->b, (size_t)op->blen);
        s = o->p; n = o->n; w ^= 1;
    }
    if (!t->n_pre) { model_word(t, s, (int)n, out); return; }
    int cur = 0;
    e->arena[0].n = 0; e->pieces[0].n = 0;
    emit_piece(&e->arena[0], &e->pieces[0], s, n);
    for (int k = 0; k < t->n_pre; k++) {
        Bytes *src = &e->arena[cur], *dst = &e->arena[cur ^ 1];
        Ints *sp = &e->pieces[cur], *dp = &e->pieces[cur ^ 1];
        dst->n = 0; dp->n = 0;
        for (size_t i = 0; i < sp->n; i += 2)
            pre_step(&t->pre[k], &e->segs, src->p + sp->p[i], (size_t)sp->p[i + 1], at_start && i == 0, dst, dp);
        cur ^= 1;
    }
    for (size_t i = 0; i < e->pieces[cur].n; i += 2)
        model_word(t, e->arena[cur].p + e->pieces[cur].p[i], e->pieces[cur].p[i + 1], out);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
// single_word tokens match only between non-word characters (ASCII \w here;
// tokenizers uses Unicode \w: a non-ASCII letter next to the token differs)
static int is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

int tokenizer_encode_max(const Tokenizer *t, const char *text, size_t len, int add_special, int max_len, int **ids) {
    Ints out = {0};
    const size_t n_special = add_special ? t->prefix.n + t->suffix.n : 0;
    if (max_len > 0 && (size_t)max_len <= n_special)
        fail("tokenizer: max_len %d leaves no room for text beside %zu special tokens", max_len, n_special);
    if (add_special) for (size_t i = 0; i < t->prefix.n; i++) ints_put(&out, t->prefix.p[i]);
    size_t chunk = 0;
    for (size_t i = 0; i < len;) {
        const AddedTok *hit = NULL;
        if (t->added_first[(unsigned char)text[i]])   // longest first, so the first hit is the longest
            for (int k = 0; k < t->n_added; k++)
                if (t->added[k].len <= (int)(len - i) && !memcmp(text + i, t->added[k].s, (size_t)t->added[k].len) &&
                    !(t->added[k].single_word && ((i > 0 && is_word(text[i - 1])) ||
                      (i + (size_t)t->added[k].len < len && is_word(text[i + (size_t)t->added[k].len]))))) {
                    hit = &t->added[k];
                    break;
                }
        if (!hit) { i++; continue; }
        size_t a = i, b = i + (size_t)hit->len;
        if (hit->lstrip) while (a > chunk && is_space(text[a - 1])) a--;
        if (hit->rstrip) while (b < len && is_space(text[b])) b++;
        encode_chunk(t, text + chunk, a - chunk, chunk == 0, &out);
        ints_put(&out, hit->id);
        chunk = i = b;
    }
    encode_chunk(t, text + chunk, len - chunk, chunk == 0, &out);
    const size_t text_start = add_special ? t->prefix.n : 0;   // the text's ids are cut from the right
    if (max_len > 0 && out.n - text_start + n_special > (size_t)max_len) out.n = text_start + (size_t)max_len - n_special;
    if (add_special) for (size_t i = 0; i < t->suffix.n; i++) ints_put(&out, t->suffix.p[i]);
    if (!out.p) out.p = xmalloc(sizeof(int));
    *ids = out.p;
    return (int)out.n;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_special, int **ids) {
    return tokenizer_encode_max(t, text, len, add_special, 0, ids);
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// <0xNN> -> byte value, else -1
static int byte_token(const char *s, int n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

// One decoder op over the token list (src arena/pieces -> dst).
static void dec_step(const DecOp *op, const Bytes *src, const Ints *sp, Bytes *dst, Ints *dp) {
    size_t fuse_off = dst->n, pend = 0;   // pend: ByteFallback bytes waiting in dst since pend_off
    size_t pend_off = 0;
    for (size_t i = 0; i < sp->n; i += 2) {
        const char *s = src->p + sp->p[i];
        int n = sp->p[i + 1];
        size_t off = dst->n;
        switch (op->kind) {
        case DEC_BYTELEVEL: {   // each char back to its byte; a token with foreign chars stays as is
            int ok = 1;
            for (int j = 0; j < n && ok;) {
                int cp, l = utf8_next((const unsigned char *)s + j, (size_t)(n - j), &cp), b = cp_to_byte(cp);
                if (b < 0) ok = 0;
                else { char c = (char)b; bytes_put(dst, &c, 1); }
                j += l;
            }
            if (!ok) { dst->n = off; bytes_put(dst, s, (size_t)n); }
            break;
        }
        case DEC_REPLACE: {
            Bytes tmp = {0};
            replace_all(&tmp, s, (size_t)n, op->a, (size_t)op->alen, op->b, (size_t)op->blen);
            bytes_put(dst, tmp.p, tmp.n);
            free(tmp.p);
            break;
        }
        case DEC_BYTEFALLBACK: {   // runs of <0xNN> become their raw bytes (HF would use U+FFFD for invalid UTF-8)
            int b = byte_token(s, n);
            if (b >= 0) {
                char c = (char)b;
                if (!pend) pend_off = off;
                bytes_put(dst, &c, 1);
                pend++;
                continue;
            }
            if (pend) { ints_put(dp, (int)pend_off); ints_put(dp, (int)pend); pend = 0; off = dst->n; }
            bytes_put(dst, s, (size_t)n);
            break;
        }
        case DEC_FUSE:
            bytes_put(dst, s, (size_t)n);
            continue;
        case DEC_STRIP: {
            int a = 0, z = n;
            for (int k = 0; k < op->start && z - a >= op->alen && !memcmp(s + a, op->a, (size_t)op->alen); k++) a += op->alen;
            for (int k = 0; k < op->stop && z - a >= op->alen && !memcmp(s + z - op->alen, op->a, (size_t)op->alen); k++) z -= op->alen;
            bytes_put(dst, s + a, (size_t)(z - a));
            break;
        }
        case DEC_WORDPIECE: {   // continuations lose the prefix, other tokens get a space; then HF's cleanup
            Bytes tok = {0}, tmp = {0};
            if (i && n >= op->alen && !memcmp(s, op->a, (size_t)op->alen)) bytes_put(&tok, s + op->alen, (size_t)(n - op->alen));
            else {
                if (i) bytes_put(&tok, " ", 1);
                bytes_put(&tok, s, (size_t)n);
            }
            static const char *const cleanup[][2] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
            for (size_t k = 0; op->cleanup && k < sizeof cleanup / sizeof *cleanup; k++) {
                replace_all(&tmp, tok.p, tok.n, cleanup[k][0], strlen(cleanup[k][0]), cleanup[k][1], strlen(cleanup[k][1]));
                Bytes x = tok; tok = tmp; tmp = x;
            }
            bytes_put(dst, tok.p, tok.n);
            free(tok.p); free(tmp.p);
            break;
        }
        case DEC_METASPACE:   // as tokenizers does: in the first token every U+2581 is dropped
            for (int j = 0; j < n;) {
                if (j + 3 <= n && !memcmp(s + j, META, 3)) {
                    if (!(i == 0 && op->prepend)) bytes_put(dst, " ", 1);
                    j += 3;
                } else bytes_put(dst, s + j++, 1);
            }
            break;
        }
        ints_put(dp, (int)off);
        ints_put(dp, (int)(dst->n - off));
    }
    if (pend) { ints_put(dp, (int)pend_off); ints_put(dp, (int)pend); }
    if (op->kind == DEC_FUSE) { ints_put(dp, (int)fuse_off); ints_put(dp, (int)(dst->n - fuse_off)); }
}

char *tokenizer_decode(const Tokenizer *t, const int *ids, int n, int skip_special, size_t *len_out) {
    Bytes arena[2] = {{0}}, out = {0};
    Ints pieces[2] = {{0}};
    bytes_put(&arena[0], "", 0);
    bytes_put(&out, "", 0);
    for (int i = 0; i < n; i++) {
        // ids without a token are dropped, as HF does: models often pad the
        // embedding past the tokenizer's vocab, and sampling may land there
        if (ids[i] < 0 || ids[i] >= t->vocab_size || !t->tok[ids[i]]) continue;
        if (skip_special && t->is_special[ids[i]]) continue;
        emit_piece(&arena[0], &pieces[0], t->tok[ids[i]], (size_t)t->tok_len[ids[i]]);
    }
    int cur = 0;
    for (int k = 0; k < t->n_dec; k++) {
        arena[cur ^ 1].n = 0; pieces[cur ^ 1].n = 0;
        bytes_put(&arena[cur ^ 1], "", 0);
        dec_step(&t->dec[k], &arena[cur], &pieces[cur], &arena[cur ^ 1], &pieces[cur ^ 1]);
        cur ^= 1;
    }
    for (size_t i = 0; i < pieces[cur].n; i += 2) {
        if (!t->n_dec && i) bytes_put(&out, " ", 1);   // tokenizers joins with spaces when there is no decoder
        bytes_put(&out, arena[cur].p + pieces[cur].p[i], (size_t)pieces[cur].p[i + 1]);
    }
    for (int i = 0; i < 2; i++) { free(arena[i].p); free(pieces[i].p); }
    if (len_out) *len_out = out.n;
    return out.p;
}

int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int tokenizer_bos_id(const Tokenizer *t) { return t->bos_id; }
int tokenizer_eos_id(const Tokenizer *t) { return t->eos_id; }
int tokenizer_token_id(const Tokenizer *t, const char *token) {
    int l = (int)strlen(token), id = strmap_get(&t->added_map, token, l);
    return id >= 0 ? id : strmap_get(&t->vocab, token, l);
}
