// The BPE core: hash maps, GPT-2's byte table, UTF-8 helpers and the merge
// loop. Merges are looked up by the pair of ids (no string building in the
// loop); pairs wait in a min-heap ordered by (rank, position), which is the
// order Hugging Face tokenizers merges in; a word cache makes repeated words
// (most of real text) a single hash lookup.
#include <string.h>
#include "tokenizer_impl.h"
#include "kernels/errors.h"

void bytes_put(Bytes *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) fail("out of memory (tokenizer)");
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void ints_put(Ints *v, int x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->p = realloc(v->p, v->cap * sizeof(int));
        if (!v->p) fail("out of memory (tokenizer)");
    }
    v->p[v->n++] = x;
}

void emit_piece(Bytes *arena, Ints *pieces, const char *s, size_t n) {
    if (!n) return;
    ints_put(pieces, (int)arena->n);
    ints_put(pieces, (int)n);
    bytes_put(arena, s, n);
}

// FNV-1a, then a final mix so low bits spread well for power-of-two tables
uint64_t hash_bytes(const void *s, size_t n) {
    const unsigned char *p = s;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 31; h *= 0x9e3779b97f4a7c15ull; h ^= h >> 29;
    return h;
}

static void strmap_grow(StrMap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    StrSlot *s = xcalloc(cap, sizeof *s);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        size_t j = m->slots[i].h & (cap - 1);
        while (s[j].key) j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
}

void strmap_put(StrMap *m, const char *key, int klen, int val) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    uint64_t h = hash_bytes(key, (size_t)klen);
    size_t j = h & (m->cap - 1);
    for (; m->slots[j].key; j = (j + 1) & (m->cap - 1))
        if (m->slots[j].h == h && m->slots[j].klen == klen && !memcmp(m->slots[j].key, key, (size_t)klen)) {
            m->slots[j].val = val;
            return;
        }
    char *k = xmalloc((size_t)klen + 1);
    memcpy(k, key, (size_t)klen);
    k[klen] = 0;
    m->slots[j] = (StrSlot){h, k, klen, val};
    m->n++;
}

int strmap_get(const StrMap *m, const char *key, int klen) {
    if (!m->cap) return -1;
    uint64_t h = hash_bytes(key, (size_t)klen);
    for (size_t j = h & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1))
        if (m->slots[j].h == h && m->slots[j].klen == klen && !memcmp(m->slots[j].key, key, (size_t)klen))
            return m->slots[j].val;
    return -1;
}

void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

#define EMPTY_PAIR UINT64_MAX
static inline uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline size_t pair_hash(uint64_t k) { k *= 0x9e3779b97f4a7c15ull; return (size_t)(k ^ (k >> 32)); }

void mergemap_put(MergeMap *m, int a, int b, int rank, int id) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4096;
        MergeSlot *s = xmalloc(cap * sizeof *s);
        for (size_t i = 0; i < cap; i++) s[i].key = EMPTY_PAIR;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i].key == EMPTY_PAIR) continue;
            size_t j = pair_hash(m->slots[i].key) & (cap - 1);
            while (s[j].key != EMPTY_PAIR) j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = s;
        m->cap = cap;
    }
    uint64_t k = pair_key(a, b);
    size_t j = pair_hash(k) & (m->cap - 1);
    for (; m->slots[j].key != EMPTY_PAIR; j = (j + 1) & (m->cap - 1))
        if (m->slots[j].key == k) { m->slots[j].rank = rank; m->slots[j].id = id; return; }   // later wins, as in HF
    m->slots[j] = (MergeSlot){k, rank, id};
    m->n++;
}

const MergeSlot *mergemap_get(const MergeMap *m, int a, int b) {
    if (!m->cap) return NULL;
    uint64_t k = pair_key(a, b);
    for (size_t j = pair_hash(k) & (m->cap - 1); m->slots[j].key != EMPTY_PAIR; j = (j + 1) & (m->cap - 1))
        if (m->slots[j].key == k) return &m->slots[j];
    return NULL;
}

// GPT-2: printable bytes stand for themselves, the other 68 map to 256, 257, ...
// so every byte is a visible character in vocab.json.
int byte_to_cp[256];
static int cp_table[324];
void byte_table_init(void) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = printable ? b : 256 + n++;
    }
    for (int i = 0; i < 324; i++) cp_table[i] = -1;
    for (int b = 0; b < 256; b++) cp_table[byte_to_cp[b]] = b;
}
int cp_to_byte(int cp) { return cp >= 0 && cp < 324 ? cp_table[cp] : -1; }

int utf8_encode(int cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
                        o[2] = (char)(0x80 | (cp & 63)); return 3; }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

// Strict UTF-8 (no overlongs, surrogates or > U+10FFFF); an invalid byte is a
// one-byte "character" with cp -1, so invalid input flows through byte-wise.
int utf8_next(const unsigned char *s, size_t n, int *cp) {
    unsigned c = s[0];
    int len, min;
    if (c < 0x80) { *cp = (int)c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; c &= 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; c &= 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; c &= 0x07; }
    else { *cp = -1; return 1; }
    if ((size_t)len > n) { *cp = -1; return 1; }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = -1; return 1; }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((int)c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) { *cp = -1; return 1; }
    *cp = (int)c;
    return len;
}

// Merge-loop scratch: symbols as a doubly linked list over an array, and the heap.
typedef struct { int rank, pos; } HeapE;
struct Scratch { int *id, *prev, *next; HeapE *heap; size_t cap, hcap; Bytes mapped; };

static void heap_push(struct Scratch *s, size_t *n, HeapE e) {
    if (*n == s->hcap) {
        s->hcap = s->hcap ? s->hcap * 2 : 256;
        s->heap = realloc(s->heap, s->hcap * sizeof(HeapE));
        if (!s->heap) fail("out of memory (tokenizer)");
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        HeapE q = s->heap[p];
        if (q.rank < e.rank || (q.rank == e.rank && q.pos < e.pos)) break;
        s->heap[i] = q;
        i = p;
    }
    s->heap[i] = e;
}

static HeapE heap_pop(struct Scratch *s, size_t *n) {
    HeapE top = s->heap[0], last = s->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && (s->heap[c + 1].rank < s->heap[c].rank ||
                           (s->heap[c + 1].rank == s->heap[c].rank && s->heap[c + 1].pos < s->heap[c].pos))) c++;
        if (last.rank < s->heap[c].rank || (last.rank == s->heap[c].rank && last.pos < s->heap[c].pos)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    s->heap[i] = last;
    return top;
}

static void scratch_reserve(struct Scratch *s, size_t n) {
    if (n <= s->cap) return;
    s->cap = n * 2;
    s->id = realloc(s->id, s->cap * sizeof(int));
    s->prev = realloc(s->prev, s->cap * sizeof(int));
    s->next = realloc(s->next, s->cap * sizeof(int));
    if (!s->id || !s->prev || !s->next) fail("out of memory (tokenizer)");
}

// Initial symbols: bytes (byte-level) or characters with byte fallback / unk.
static int initial_symbols(const Tokenizer *t, const unsigned char *s, int n, struct Scratch *sc) {
    int k = 0;
    scratch_reserve(sc, (size_t)n + 1);
    if (t->byte_level) {
        for (int i = 0; i < n; i++) {
            int id = t->byte_id[s[i]];
            if (id < 0) id = t->unk_id;
            if (id < 0) continue;   // HF drops characters it cannot represent when there is no unk
            if (id == t->unk_id && t->fuse_unk && k > 0 && sc->id[k - 1] == id) continue;
            sc->id[k++] = id;
        }
        return k;
    }
    for (int i = 0; i < n;) {
        int cp, len = utf8_next(s + i, (size_t)(n - i), &cp);
        int id = cp >= 0 ? strmap_get(&t->vocab, (const char *)s + i, len) : -1;
        if (id >= 0) { sc->id[k++] = id; i += len; continue; }
        if (t->byte_fallback) {
            int ok = 1;
            for (int j = 0; j < len; j++) ok &= t->fallback_id[s[i + j]] >= 0;
            if (ok) {
                for (int j = 0; j < len; j++) sc->id[k++] = t->fallback_id[s[i + j]];
                i += len;
                continue;
            }
        }
        i += len;
        if (t->unk_id < 0) continue;
        if (t->fuse_unk && k > 0 && sc->id[k - 1] == t->unk_id) continue;
        sc->id[k++] = t->unk_id;
    }
    return k;
}

static void merge_loop(const Tokenizer *t, struct Scratch *sc, int k, Ints *out) {
    int *id = sc->id, *prev = sc->prev, *next = sc->next;
    size_t hn = 0;
    for (int i = 0; i < k; i++) { prev[i] = i - 1; next[i] = i + 1 < k ? i + 1 : -1; }
    for (int i = 0; i + 1 < k; i++) {
        const MergeSlot *m = mergemap_get(&t->merges, id[i], id[i + 1]);
        if (m) heap_push(sc, &hn, (HeapE){m->rank, i});
    }
    while (hn) {
        HeapE e = heap_pop(sc, &hn);
        int p = e.pos, q;
        if (id[p] < 0 || (q = next[p]) < 0) continue;
        const MergeSlot *m = mergemap_get(&t->merges, id[p], id[q]);
        if (!m || m->rank != e.rank) continue;   // stale: a neighbour changed since the push
        id[p] = m->id;
        id[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0 && (m = mergemap_get(&t->merges, id[prev[p]], id[p])))
            heap_push(sc, &hn, (HeapE){m->rank, prev[p]});
        if (next[p] >= 0 && (m = mergemap_get(&t->merges, id[p], id[next[p]])))
            heap_push(sc, &hn, (HeapE){m->rank, p});
    }
    for (int i = k ? 0 : -1; i >= 0; i = next[i]) ints_put(out, id[i]);
}

#define CACHE_MAX_WORD 128       // longer pieces (whole SentencePiece lines) are not cached
#define CACHE_MAX_ENTRIES (1 << 20)

int word_cache_get(const Tokenizer *t, const char *s, int n, Ints *out) {
    WordCache *c = t->cache;
    int off = n <= CACHE_MAX_WORD ? strmap_get(&c->map, s, n) : -1;
    if (off < 0) return 0;
    for (int i = 0; i < c->ids.p[off]; i++) ints_put(out, c->ids.p[off + 1 + i]);
    return 1;
}

void word_cache_put(const Tokenizer *t, const char *s, int n, const Ints *out, size_t start) {
    WordCache *c = t->cache;
    if (n > CACHE_MAX_WORD) return;
    if (c->map.n >= CACHE_MAX_ENTRIES) { strmap_free(&c->map); c->ids.n = 0; }
    int off = (int)c->ids.n;
    ints_put(&c->ids, (int)(out->n - start));
    for (size_t i = start; i < out->n; i++) ints_put(&c->ids, out->p[i]);
    strmap_put(&c->map, s, n, off);
}

void bpe_word(const Tokenizer *t, const char *s, int n, Ints *out) {
    if (n <= 0 || word_cache_get(t, s, n, out)) return;
    struct Scratch *sc = t->scratch;
    size_t start = out->n;
    int whole = -1;
    if (t->ignore_merges) {   // a word that is itself a token skips the merges (Llama-3)
        if (t->byte_level) {
            sc->mapped.n = 0;
            for (int i = 0; i < n; i++) {
                char u[4];
                bytes_put(&sc->mapped, u, (size_t)utf8_encode(byte_to_cp[(unsigned char)s[i]], u));
            }
            whole = strmap_get(&t->vocab, sc->mapped.p, (int)sc->mapped.n);
        } else whole = strmap_get(&t->vocab, s, n);
    }
    if (whole >= 0) ints_put(out, whole);
    else merge_loop(t, sc, initial_symbols(t, (const unsigned char *)s, n, sc), out);
    word_cache_put(t, s, n, out, start);
}

void bpe_free(Tokenizer *t) {
    strmap_free(&t->cache->map);
    free(t->cache->ids.p);
    free(t->cache);
    struct Scratch *s = t->scratch;
    free(s->id); free(s->prev); free(s->next); free(s->heap); free(s->mapped.p);
    free(s);
}

struct Scratch *bpe_scratch_new(void) { return xcalloc(1, sizeof(struct Scratch)); }
