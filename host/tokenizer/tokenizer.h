// Tokenizers as Hugging Face's tokenizer.json describes them: byte-level BPE
// (GPT-2, Llama-3, SmolLM2, Qwen2) with PCRE2 pre-tokenizer regexes,
// SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama), and BERT's
// WordPiece (MiniLM sentence encoders; also from a bare vocab.txt). Special
// tokens are matched before BPE. A checkpoint stores tokenizer.json (and
// tokenizer_config.json) verbatim, so a checkpoint alone is a usable model.
#ifndef SPREC_TOKENIZER_H
#define SPREC_TOKENIZER_H

#include <stddef.h>

typedef struct Tokenizer Tokenizer;

// Builds from the text of tokenizer.json and, optionally (NULL), of
// tokenizer_config.json (bos/eos tokens, add_bos_token). `where` names the
// source in error messages. Unsupported or malformed files: one-line error, exit 1.
Tokenizer *tokenizer_from_json(const char *json, size_t len, const char *config_json, size_t config_len,
                               const char *where);
void tokenizer_free(Tokenizer *t);
// A BERT vocab.txt (one token a line, id = line number) as the tokenizer.json
// transformers builds from it: WordPiece, BertNormalizer (lowercase unless the
// config's do_lower_case is false; strip_accents / tokenize_chinese_chars from
// the config), BertPreTokenizer, [CLS] ... [SEP]. config_json may be NULL.
// Returns malloc'd JSON text; one-line error without [CLS] / [SEP] lines.
char *tokenizer_json_from_vocab_txt(const char *txt, size_t len, const char *config_json, size_t config_len,
                                    const char *where, size_t *out_len);

// Encodes UTF-8 text (any bytes; invalid UTF-8 is encoded byte-wise, never
// rejected). Special tokens in the text are recognised. add_special: prepend
// BOS / apply the post-processor as HF's encode(add_special_tokens=True) does.
// Returns the count; *ids is malloc'd (caller frees).
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_special, int **ids);
// The same, at most max_len ids (max_len <= 0: no limit), cut as transformers /
// sentence-transformers truncate one sequence: the text's ids lose their tail,
// the special tokens stay (BERT: [CLS] first max_len-2 ids [SEP]). The
// tokenizer.json "truncation" and "padding" settings are not applied (as
// transformers, which sets them per call): the caller names the limit.
int tokenizer_encode_max(const Tokenizer *t, const char *text, size_t len, int add_special, int max_len, int **ids);
// Decodes ids back to bytes (malloc'd, NUL-terminated; *len_out may be NULL).
// skip_special drops special tokens; ids with no token are dropped (as HF does).
// decode(encode(s)) == s for any s with byte-level BPE (invalid UTF-8 included;
// NFC-normalizing tokenizers give NFC(s)); SentencePiece-style: as HF decodes
// (a chunk after a special token gets its own leading space). See docs/tokenizer.md.
char *tokenizer_decode(const Tokenizer *t, const int *ids, int n, int skip_special, size_t *len_out);

int tokenizer_vocab_size(const Tokenizer *t);    // largest id + 1, added tokens included
int tokenizer_token_id(const Tokenizer *t, const char *token);   // exact token string, -1 if absent
int tokenizer_bos_id(const Tokenizer *t);        // -1 when none
int tokenizer_eos_id(const Tokenizer *t);        // -1 when none

// A Tokenizer holds a word cache and scratch buffers: use one per thread.

#endif
