// libFuzzer harnesses over sprec's readers of user files (docs/testing.md, "Fuzzing"). Each harness is one
// LLVMFuzzerTestOneInput; fuzz.c replaces kernels/errors.c so that an input the reader rejects (fail(), one
// line, exit 1 in sprec) returns to the harness instead of ending the fuzzer, and releases what the aborted
// reader left open. A crash, a sanitizer report or a hang is a finding; a clean rejection is not.
#ifndef SPREC_FUZZ_H
#define SPREC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

// Writes the input to a new scratch file and returns its path (readers take paths).
const char *fuzz_file(const uint8_t *data, size_t size);
// Runs fn(path) on the input written to the scratch file; a rejection (error_exit) comes back here, after
// which the file descriptors and mappings the reader had open are released (HDF5 objects stay: each input has
// a file name of its own).
void fuzz_run(const uint8_t *data, size_t size, void (*fn)(const char *path, const uint8_t *data, size_t size));

#endif
