// `sprec prepare`: builds a recommendation dataset file (docs/recdata.md) from
// one source ([data] source = goodreads | movielens | synthetic, sources.h).
// Each source fills the catalogue and a list of rows (history, target, prompt,
// completion: rows.h); prepare.c splits, counts, tokenizes and writes.
#ifndef SPREC_PREPARE_H
#define SPREC_PREPARE_H

#include "io/config.h"

// The whole job: source -> splits -> counts -> tokens -> file `out`.
void prepare_run(const Config *c, const char *out);

#endif
