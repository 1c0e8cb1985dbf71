// Every test file contributes one array of cmocka tests; main.c runs them all
// as one group so the run ends in a single summary line.
#ifndef SPREC_TESTS_H
#define SPREC_TESTS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <setjmp.h>
#include <cmocka.h>

#define TEST_GROUP(name) extern const struct CMUnitTest name[]; extern const size_t name##_count;
#define DEFINE_TEST_GROUP(name, ...) \
    const struct CMUnitTest name[] = { __VA_ARGS__ }; \
    const size_t name##_count = sizeof(name) / sizeof(name[0]);

// The sanitized binary (AddressSanitizer + UBSan) that bad-input tests run, so
// a malformed file that corrupts memory fails the test instead of passing by luck.
// LeakSanitizer is on for the runs that must succeed: a leak there is a report (exit 86) that fails the test.
// An error exit skips freeing on purpose (the process ends there), so the commands run for their error
// (expect_error, error_run) get it switched off.
#define SPREC_CHECKED "ASAN_OPTIONS=detect_leaks=1:exitcode=86 UBSAN_OPTIONS=exitcode=87:print_stacktrace=1 " \
                      "build/asan/sprec"

// Run a shell command, capture stdout+stderr into out (truncated to cap) and
// return its exit status (-1 if it could not run).
int run_capture(const char *cmd, char *out, size_t cap);
// Runs cmd (error_run) and requires: exit status 1, no sanitizer report, and exactly one
// line "sprec: error: ..." containing each non-NULL needle.
void expect_error(const char *cmd, const char *needle1, const char *needle2);
// cmd with LeakSanitizer off (SPREC_CHECKED's detect_leaks=1 made 0), into buf: a command run for its error.
const char *error_run(const char *cmd, char *buf, size_t cap);
// Reads a file whole, NUL-terminated (*len = its size when len != NULL); a missing file fails the test.
char *read_text_file(const char *path, size_t *len);
// Reads a gzipped fixture whole (gzip -dc keeps zlib out of the link line); NUL-terminated.
char *read_gz(const char *path, size_t *len);
// The values of "key" in each line of a JSONL log (every line must have it); returns the count.
int read_jsonl_values(const char *path, const char *key, double *out, int cap);
// Runs cmd and requires exit status 0 (prints the output otherwise).
void run_ok(const char *cmd);
// mpirun for the multi-rank tests: one thread per rank (2 cores in CI), Open MPI's consent to run as root, and a
// timeout so that a hang fails the test instead of blocking make test.
#define MPIRUN_WITHIN(seconds) "OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " \
                               "timeout " #seconds " mpirun --oversubscribe "
#define MPIRUN MPIRUN_WITHIN(120)
// 1 when build/sprec was built with MPI and mpirun is on PATH; REQUIRE_MPI skips the test (naming its group) otherwise.
int have_mpi(void);
#define REQUIRE_MPI(group) do { if (!have_mpi()) { \
    print_message(group ": skipped: build/sprec was built without MPI (MPI=0 or no mpicc; scripts/setup.sh " \
                  "installs Open MPI)\n"); skip(); } } while (0)
// How often needle occurs in s (non-overlapping).
int count_of(const char *s, const char *needle);
// Writes text to path (test fixtures on the fly).
void write_file(const char *path, const char *text);
// A file's size in bytes, and one of its bytes XOR mask (corruption tests); a missing file fails the test.
long file_size(const char *path);
void flip_byte(const char *path, long off, unsigned char mask);
// Runs fn(arg) in a forked child with its stderr captured into err; returns the
// child's exit status, or 128 + signal if it crashed (or hung: 10 s alarm).
int run_forked(void (*fn)(void *), void *arg, char *err, size_t cap);

#endif
