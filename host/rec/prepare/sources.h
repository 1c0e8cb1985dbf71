// The sources of `sprec prepare` ([data] source), one file each: every one sets
// d->source, d->instruction and the catalogue (titles, genres), and appends
// its rows (rows.h) for prepare.c to split, count, tokenize and write.
#ifndef SPREC_PREPARE_SOURCES_H
#define SPREC_PREPARE_SOURCES_H

#include "rows.h"
#include "io/config.h"
#include "rec/recdata.h"

// `dir` is the source folder.
void prepare_goodreads(const Config *c, const char *dir, RecData *d, RowList *rows);   // prepare_goodreads.c
void prepare_movielens(const Config *c, const char *dir, RecData *d, RowList *rows);   // prepare_movielens.c
void prepare_synthetic(const Config *c, RecData *d, RowList *rows);                    // prepare_synthetic.c

#endif
