// What every source of `sprec prepare` builds with (sources.h) and prepare.c
// then splits and writes: the row list, the exact-title index, the prompt
// template with the wording of each domain, and small string helpers.
#ifndef SPREC_PREPARE_ROWS_H
#define SPREC_PREPARE_ROWS_H

#include <stddef.h>
#include <stdio.h>

// Rows in source order. split[i] is SPLIT_* when the source decides it
// (MovieLens: by time), -1 when prepare.c's seeded split should.
typedef struct {
    int n, cap, n_hist, cap_hist;
    int *split, *source_row, *target;
    int *hist_offsets;     // [n+1]
    int *hist_items;
    char **prompt, **completion;
} RowList;

// Appends a row; takes ownership of prompt and completion (malloc'd).
void rows_add(RowList *r, int split, int source_row, const int *hist, int n_hist, int target, char *prompt,
              char *completion);
void rows_free(RowList *r);

// Exact title -> catalogue id lookup (open addressing over the titles).
typedef struct { int cap; int *slot; char *const *names; } NameIndex;
// Fails naming `where` when two names are equal.
void names_build(NameIndex *ix, char *const *names, int n, const char *where);
int names_find(const NameIndex *ix, const char *s, size_t len);   // id or -1
void names_free(NameIndex *ix);

// The wording of one domain (method.md section 1; the Goodreads typos kept).
typedef struct { const char *instruction, *input_head, *input_tail; } Wording;
extern const Wording WORDING_BOOKS, WORDING_MOVIES;
// The one prompt template: "Below is an instruction ... ### Response:\n".
char *prompt_text(const char *instruction, const char *input);
// "\"Title\"\n"
char *completion_text(const char *title);
// head + "\"T1\", \"T2\", ..." + tail
char *input_text(const Wording *w, char *const *titles, int n);

// A progress or summary line on stdout, flushed at once (so it never lands
// after an error message).
#define say(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)

char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
