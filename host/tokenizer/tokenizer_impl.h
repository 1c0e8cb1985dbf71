// Internals shared by tokenizer.c (pipeline, decode), tokenizer_json.c (loading),
// tokenizer_bpe.c (hash maps, the merge loop, the word cache) and
// tokenizer_wordpiece.c (BERT's normalizer, pre-tokenizer and WordPiece). Not an API.
#ifndef SPREC_TOKENIZER_IMPL_H
#define SPREC_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include "tokenizer.h"

// A growable byte buffer and int vector (both never shrink; reused across calls).
typedef struct { char *p; size_t n, cap; } Bytes;
typedef struct { int *p; size_t n, cap; } Ints;
void bytes_put(Bytes *b, const void *s, size_t n);
void ints_put(Ints *v, int x);

// Open-addressing map from byte strings to int; keys are copied.
typedef struct { uint64_t h; char *key; int klen, val; } StrSlot;
typedef struct { StrSlot *slots; size_t cap, n; } StrMap;
uint64_t hash_bytes(const void *s, size_t n);
void strmap_put(StrMap *m, const char *key, int klen, int val);   // overwrites
int strmap_get(const StrMap *m, const char *key, int klen);       // -1 when absent
void strmap_free(StrMap *m);

// Merges keyed by the pair of ids: rank and the id of the merged token.
typedef struct { uint64_t key; int rank, id; } MergeSlot;
typedef struct { MergeSlot *slots; size_t cap, n; } MergeMap;
void mergemap_put(MergeMap *m, int a, int b, int rank, int id);
const MergeSlot *mergemap_get(const MergeMap *m, int a, int b);

// word (piece bytes) -> ids, so the merge loop runs once per distinct word
typedef struct { StrMap map; Ints ids; } WordCache;   // map value: offset in ids; ids[off] = count

typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_BERT } NormKind;
typedef struct { NormKind kind; char *a, *b; int alen, blen, bert; } NormOp;   // bert: BERT_NORM_* flags

// Split behaviours as tokenizers names them
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREV, SPLIT_NEXT, SPLIT_CONTIGUOUS } SplitBehavior;
typedef enum { PRE_SPLIT, PRE_BYTELEVEL_PREFIX, PRE_METASPACE, PRE_BERT } PreKind;
typedef struct {
    PreKind kind;
    pcre2_code *re; pcre2_match_data *md;   // PRE_SPLIT
    SplitBehavior behavior; int invert;
    int prepend;                            // PRE_METASPACE: 0 never, 1 always, 2 first
    int split;                              // PRE_METASPACE
} PreStep;

typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE, DEC_WORDPIECE } DecKind;
typedef struct { DecKind kind; char *a, *b; int alen, blen, start, stop, prepend, cleanup; } DecOp;

typedef struct { char *s; int len, id, special, lstrip, rstrip, single_word; } AddedTok;

struct Tokenizer {
    int vocab_size;            // largest id + 1
    char **tok; int *tok_len;  // id -> token string as in the file (NULL for unused ids)
    unsigned char *is_special; // id -> special added token (skipped by decode(skip_special))
    StrMap vocab;              // model vocab: token string -> id
    StrMap added_map;          // added token content -> id
    MergeMap merges;
    int wordpiece;             // model WordPiece (else BPE)
    char *wp_prefix; int wp_prefix_len, wp_max_chars;   // continuing_subword_prefix, max_input_chars_per_word
    int byte_level;            // a ByteLevel pre-tokenizer: BPE starts from byte symbols
    int byte_id[256];          // byte-level: id of byte b's printable stand-in (-1 if not in vocab)
    int fallback_id[256];      // byte_fallback: id of <0xNN> (-1 if absent)
    int byte_fallback, fuse_unk, ignore_merges, unk_id;
    AddedTok *added; int n_added;   // longest first
    unsigned char added_first[256]; // some added token starts with this byte
    NormOp *norm; int n_norm;
    PreStep *pre; int n_pre;
    DecOp *dec; int n_dec;
    Ints prefix, suffix;            // add_special: ids around the text
    int bos_id, eos_id;
    // mutable scratch behind the const API (one thread per Tokenizer)
    WordCache *cache;
    struct Scratch *scratch;
    struct EncScratch *enc;
};

// GPT-2's byte <-> printable code point table
extern int byte_to_cp[256];
int cp_to_byte(int cp);   // -1 when cp is not in the table
void byte_table_init(void);
int utf8_encode(int cp, char *out);
// Length of the UTF-8 character at s (1 for an invalid byte), and its code point (-1 if invalid).
int utf8_next(const unsigned char *s, size_t n, int *cp);

// NFC (tokenizer_nfc.c) over generated tables (tokenizer_nfc_data.c); invalid
// bytes pass through unchanged and block composition.
void nfc_normalize(const char *s, size_t n, Bytes *out);
// NFD of code points (invalid bytes as -(byte + 1) pass through): out = canonical decomposition of cps, reordered.
void nfd_cps(const int *cps, size_t n, Ints *out);
extern const uint32_t nfc_ccc[], nfc_decomp[][3], nfc_comp[][3];
extern const int nfc_ccc_n, nfc_decomp_n, nfc_comp_n;

// Character classes of BERT's normalizer / pre-tokenizer, as tokenizers applies them (bert_class runs)
enum { BERT_CTRL = 1, BERT_SPACE = 2, BERT_SPLIT_SPACE = 4, BERT_PUNCT = 8, BERT_MN = 16 };
extern const uint32_t bert_class[][3], bert_lower[][3];
extern const unsigned char bert_ascii[128];
extern const int bert_class_n, bert_lower_n;
// BertNormalizer options
enum { BERT_NORM_CLEAN = 1, BERT_NORM_CHINESE = 2, BERT_NORM_STRIP = 4, BERT_NORM_LOWER = 8 };

// Appends a piece (offset, length) to pieces, its bytes to arena; empty pieces are dropped.
void emit_piece(Bytes *arena, Ints *pieces, const char *s, size_t n);

// The word cache: appends a cached word's ids (returns 1), or 0 when absent; put
// stores out[start..] as the word's ids.
int word_cache_get(const Tokenizer *t, const char *s, int n, Ints *out);
void word_cache_put(const Tokenizer *t, const char *s, int n, const Ints *out, size_t start);
// Appends the ids of one pre-tokenized piece (merge loop + cache).
void bpe_word(const Tokenizer *t, const char *s, int n, Ints *out);
// tokenizer_wordpiece.c: BertNormalizer, BertPreTokenizer, the WordPiece model
void bert_normalize(int opts, const char *s, size_t n, Bytes *out);
void bert_pre_split(const char *s, size_t n, Bytes *arena, Ints *pieces);
void wordpiece_word(const Tokenizer *t, const char *s, int n, Ints *out);
void bpe_free(Tokenizer *t);
struct Scratch *bpe_scratch_new(void);
// tokenizer.c: the pre-tokenizer/normalizer scratch
struct EncScratch *enc_scratch_new(void);
void enc_scratch_free(struct EncScratch *e);

#endif
