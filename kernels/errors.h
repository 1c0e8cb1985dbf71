// Error handling for the whole program, kernels and host alike: every failure
// ends in one line "sprec: error: ..." on stderr and a non-zero exit.
#ifndef SPREC_ERRORS_H
#define SPREC_ERRORS_H

#include <stdio.h>
#include <stdlib.h>

// A user-facing error: one line, exit 1. Use for bad input (files, configs, flags).
#define fail(...) do { fprintf(stderr, "sprec: error: "); fprintf(stderr, __VA_ARGS__); \
                       fprintf(stderr, "\n"); exit(1); } while (0)

// An internal invariant: names file:line, exit 2. Use for "cannot happen".
#define check(cond, ...) do { if (!(cond)) { fprintf(stderr, "sprec: internal error at %s:%d: ", \
                       __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); \
                       exit(2); } } while (0)

// malloc that never returns NULL
static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("out of memory allocating %zu bytes", n);
    return p;
}
static inline void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) fail("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

#endif
