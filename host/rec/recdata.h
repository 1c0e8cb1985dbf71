// Recommendation dataset files (layout in docs/recdata.md), written by
// `sprec prepare`: the catalogue (titles, genres, popularity), the train /
// valid / test rows (history item ids, true next item, prompt and completion
// text) and, when a tokenizer was given, each split in the SFT token layout
// (docs/formats.md) plus the tokenized completion of every catalogue item.
#ifndef SPREC_RECDATA_H
#define SPREC_RECDATA_H

#include "tokenizer/tokenizer.h"

enum { SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST, N_SPLITS };
extern const char *const SPLIT_NAMES[N_SPLITS];   // "train", "valid", "test"

typedef struct {
    int n;                   // rows
    int *hist_offsets;       // [n+1]  row r's history = hist_items[hist_offsets[r] .. hist_offsets[r+1])
    int *hist_items;         // [hist_offsets[n]]  item ids in time order, -1 = title outside the catalogue
    int *target;             // [n]  the true next item, -1 = outside the catalogue
    int *source_row;         // [n]  where the row came from (train.json row, user id, synthetic user)
    char **prompt;           // [n]  the full prompt text (template of method.md section 1)
    char **completion;       // [n]  "\"Title\"\n"
    // tokenized (RecData.tokenized): the SFT layout of docs/formats.md
    int T;                   // longest row (prompt + completion tokens)
    int *tokens;             // [n,T]  prompt ids ++ completion ids, right-padded with 0
    float *mask;             // [n,T]  1 on the completion tokens, 0 elsewhere
    int *lengths;            // [n]
    int *prompt_len;         // [n]  prompt tokens (the completion starts there)
} RecSplit;

typedef struct {
    char source[16];         // goodreads | movielens | synthetic
    char instruction[256];   // the instruction line of every prompt
    int n_items, n_genres;
    char **titles;           // [n_items]  unique
    int *genre_offsets;      // [n_items+1]  item i's genres = genre_ids[genre_offsets[i] .. genre_offsets[i+1])
    int *genre_ids;          // ids into genre_names, each item's list without repeats
    char **genre_names;      // [n_genres]
    int *popularity;         // [n_items]  times the item is the target of a train row
    RecSplit split[N_SPLITS];
    int tokenized;           // the token arrays below and in each split are present
    int *item_tok_offsets;   // [n_items+1]  tokens of completion "\"Title\"\n" of item i
    int *item_tok;           // [item_tok_offsets[n_items]]
} RecData;

// Writes PATH.PID-N.tmp and renames it to PATH (so PATH is never half written: base/atomic_write.h).
void recdata_save(const RecData *d, const char *path);
// Loads and validates (offsets, ids in range, sizes); one-line error on a bad file.
void recdata_load(RecData *d, const char *path);
void recdata_free(RecData *d);

// The tokenizer of [data] tokenizer: a checkpoint (its /tokenizer group), a
// .gguf file, or tokenizer.json (with tokenizer_config.json from the same folder
// when there is one). Used by prepare and by the paper evaluation's decoding.
Tokenizer *recdata_tokenizer(const char *path);

#endif
