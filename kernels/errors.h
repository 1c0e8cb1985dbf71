// Error handling for the whole program, kernels and host alike: every failure
// ends in one line "sprec: error: ..." on stderr and a non-zero exit.
#ifndef SPREC_ERRORS_H
#define SPREC_ERRORS_H

#include <stdio.h>
#include <stdlib.h>

// Prints "sprec: " + head + the formatted message as one line, control characters escaped (a newline as \n, a
// carriage return as \r, others as \xNN: a file name or config value cannot break the line), then exit(status).
__attribute__((noreturn, format(printf, 3, 4)))
void error_exit(int status, const char *head, const char *fmt, ...);

// A user-facing error: one line, exit 1. Use for bad input (files, configs, flags).
#define fail(...) error_exit(1, "error: ", __VA_ARGS__)

// An internal invariant: names file:line, exit 2. Use for "cannot happen".
#define check(cond, ...) do { if (!(cond)) { char at_[512]; \
                       snprintf(at_, sizeof at_, "internal error at %s:%d: ", __FILE__, __LINE__); \
                       error_exit(2, at_, __VA_ARGS__); } } while (0)

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
