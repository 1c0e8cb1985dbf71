// A whole-file checksum kept in the first FILESUM_BLOCK bytes of a file, which
// HDF5 leaves alone (a "user block": the HDF5 data starts after it), so a file
// can be checked before HDF5 parses a single byte of it (docs/checkpoint.md,
// Integrity). The block holds one text line, NUL-padded:
//
//   sprec-checksum v1 xxh64 HASH LENGTH
//
// HASH (16 hex digits) is the XXH64 (seed 0) of the LENGTH bytes after the block:
// `tail -c +513 FILE | xxhsum -H64` prints the same.
#ifndef SPREC_FILESUM_H
#define SPREC_FILESUM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FILESUM_BLOCK 512

// XXH64 with seed 0 of n bytes.
uint64_t xxh64(const void *data, size_t n);
// XXH64 with seed 0 of the bytes of the open file fd from offset `from` to its end, read in 1 MiB pieces;
// *len receives their count. path names the file in the one-line error of a failed read.
uint64_t xxh64_fd(int fd, const char *path, off_t from, uint64_t *len);
// Writes the checksum line for the bytes after the block into the block of path, if the block is empty (all
// NULs, as HDF5 leaves a new file's user block) or already a checksum line; returns 1 then, 0 if the block
// holds something else (left alone). Fails with one line on an I/O error (a full disk).
int filesum_seal(const char *path);
// Checks path against its checksum line: returns 1 if it matches, 0 if the file has no checksum line (an
// older file, or not ours); fails with one line naming the file if the file is shorter or longer than written,
// or its bytes do not match.
int filesum_verify(const char *path);

#endif
