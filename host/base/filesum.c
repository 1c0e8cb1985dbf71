// The whole-file checksum of filesum.h: XXH64 (Yann Collet's public algorithm,
// written out here; about 10 GB/s on one core, far above disk speed) streamed over
// the file in 1 MiB reads, and the text line in the file's first 512 bytes.
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "filesum.h"
#include "kernels/errors.h"

// ---- XXH64 -----------------------------------------------------------------------------------------------------

static const uint64_t P1 = 0x9E3779B185EBCA87u, P2 = 0xC2B2AE3D27D4EB4Fu, P3 = 0x165667B19E3779F9u,
                      P4 = 0x85EBCA77C2B2AE63u, P5 = 0x27D4EB2F165667C5u;

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }   // little-endian hosts
static uint64_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t mix(uint64_t acc, uint64_t lane) { return rotl(acc + lane * P2, 31) * P1; }
static uint64_t merge(uint64_t h, uint64_t v) { return (h ^ mix(0, v)) * P1 + P4; }

typedef struct { uint64_t v[4], done; } Xxh64;   // four lanes; bytes consumed in 32-byte stripes

static void xxh64_start(Xxh64 *s) { *s = (Xxh64){{P1 + P2, P2, 0, -P1}, 0}; }

// Consumes the whole 32-byte stripes of p[0..n); returns how many bytes that was.
static size_t xxh64_stripes(Xxh64 *s, const unsigned char *p, size_t n) {
    size_t k = n - n % 32;
    uint64_t v0 = s->v[0], v1 = s->v[1], v2 = s->v[2], v3 = s->v[3];
    for (size_t i = 0; i < k; i += 32) {
        v0 = mix(v0, rd64(p + i)); v1 = mix(v1, rd64(p + i + 8));
        v2 = mix(v2, rd64(p + i + 16)); v3 = mix(v3, rd64(p + i + 24));
    }
    s->v[0] = v0; s->v[1] = v1; s->v[2] = v2; s->v[3] = v3;
    s->done += k;
    return k;
}

// The hash of everything consumed plus the tail p[0..n), n < 32.
static uint64_t xxh64_end(const Xxh64 *s, const unsigned char *p, size_t n) {
    uint64_t h = P5;
    if (s->done) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = merge(h, s->v[i]);
    }
    h += s->done + n;
    for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ mix(0, rd64(p)), 27) * P1 + P4;
    if (n >= 4) { h = rotl(h ^ rd32(p) * P1, 23) * P2 + P3; p += 4; n -= 4; }
    for (; n; p++, n--) h = rotl(h ^ *p * P5, 11) * P1;
    h ^= h >> 33; h *= P2;
    h ^= h >> 29; h *= P3;
    return h ^ (h >> 32);
}

uint64_t xxh64(const void *data, size_t n) {
    Xxh64 s;
    xxh64_start(&s);
    size_t k = xxh64_stripes(&s, data, n);
    return xxh64_end(&s, (const unsigned char *)data + k, n - k);
}

// ---- the checksum block --------------------------------------------------------------------------------------

#define PREFIX "sprec-checksum "

uint64_t xxh64_fd(int fd, const char *path, off_t from, uint64_t *len) {
    enum { CHUNK = 1 << 20 };   // a multiple of 32: only the last read leaves a tail
    unsigned char *buf = xmalloc(CHUNK);
    Xxh64 s;
    xxh64_start(&s);
    off_t at = from;
    for (;;) {
        size_t n = 0;   // fill the buffer (a read may return less), so every full one is whole stripes
        ssize_t r = 0;
        while (n < CHUNK && (r = pread(fd, buf + n, CHUNK - n, at + (off_t)n)) > 0) n += (size_t)r;
        if (r < 0) fail("cannot read '%s': %s", path, strerror(errno));
        at += (off_t)n;
        size_t k = xxh64_stripes(&s, buf, n);
        if (n < CHUNK) {
            uint64_t h = xxh64_end(&s, buf + k, n - k);
            free(buf);
            *len = (uint64_t)(at - from);
            return h;
        }
    }
}

// Reads the block; returns 1 if it starts with the checksum line's prefix, 0 if not; *empty: all NULs.
static int read_block(int fd, const char *path, char block[FILESUM_BLOCK + 1], int *empty) {
    ssize_t n = pread(fd, block, FILESUM_BLOCK, 0);
    if (n < 0) fail("cannot read '%s': %s", path, strerror(errno));
    memset(block + n, 0, FILESUM_BLOCK + 1 - (size_t)n);
    *empty = n == FILESUM_BLOCK;
    for (ssize_t i = 0; i < n && *empty; i++) *empty = block[i] == 0;
    return !strncmp(block, PREFIX, strlen(PREFIX));
}

int filesum_seal(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) fail("cannot open '%s' to write its checksum: %s", path, strerror(errno));
    char block[FILESUM_BLOCK + 1];
    int empty;
    if (!read_block(fd, path, block, &empty) && !empty) { close(fd); return 0; }
    uint64_t len, h = xxh64_fd(fd, path, FILESUM_BLOCK, &len);
    memset(block, 0, sizeof block);
    snprintf(block, sizeof block, PREFIX "v1 xxh64 %016" PRIx64 " %" PRIu64 "\n", h, len);
    errno = 0;
    if (pwrite(fd, block, FILESUM_BLOCK, 0) != FILESUM_BLOCK)
        fail("cannot write the checksum of '%s': %s", path, errno ? strerror(errno) : "short write (disk full?)");
    if (close(fd) != 0) fail("cannot write the checksum of '%s': %s", path, strerror(errno));
    return 1;
}

int filesum_verify(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("cannot open '%s': %s", path, strerror(errno));
    char block[FILESUM_BLOCK + 1];
    int empty;
    if (!read_block(fd, path, block, &empty)) {
        // no checksum line: an older file (its block all NULs, or no block: HDF5 at byte 0) is not checked, but a
        // block that holds something else in front of HDF5 data is a damaged line (a flipped byte in the prefix
        // must not switch the check off)
        static const char hdf5_sig[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
        char sig[8];
        const int user_block = pread(fd, sig, sizeof sig, FILESUM_BLOCK) == (ssize_t)sizeof sig &&
                               !memcmp(sig, hdf5_sig, sizeof sig);
        close(fd);
        if (user_block && !empty)
            fail("%s: the checksum line in the first %d bytes is damaged (file corrupt?)", path, FILESUM_BLOCK);
        return 0;
    }
    uint64_t want, want_len, len;
    int used = 0;
    if (sscanf(block, PREFIX "v1 xxh64 %16" SCNx64 " %" SCNu64 "%n", &want, &want_len, &used) != 2 || block[used] != '\n')
        fail("%s: the checksum line in the first %d bytes is damaged (file corrupt?)", path, FILESUM_BLOCK);
    struct stat st;
    if (fstat(fd, &st) != 0) fail("cannot stat '%s': %s", path, strerror(errno));
    if ((uint64_t)st.st_size != FILESUM_BLOCK + want_len)
        fail("%s: %lld bytes, but %llu were written: truncated or corrupt", path, (long long)st.st_size,
             (unsigned long long)(FILESUM_BLOCK + want_len));
    uint64_t h = xxh64_fd(fd, path, FILESUM_BLOCK, &len);
    close(fd);
    if (h != want)
        fail("%s: whole-file checksum mismatch (xxh64 %016" PRIx64 ", written %016" PRIx64 "): the file is corrupt",
             path, h, want);
    return 1;
}
