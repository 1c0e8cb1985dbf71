// TensorBoard event files (tensorboard.h). The protobuf encoding is written
// out by hand for the few fields used, in field-number order and without
// proto3 defaults, as protobuf serializes them (so the bytes equal
// TensorFlow's own writer's; tests/unit/test_logs.c checks that):
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include "tensorboard.h"
#include "base/fileio.h"
#include "kernels/errors.h"

struct TbWriter { FILE *f; char path[4200]; };

// CRC-32C, reflected polynomial 0x82F63B78, one table lookup a byte
uint32_t crc32c(const void *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
    const unsigned char *b = p;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// TFRecord's masking, so that a CRC of data holding CRCs stays well mixed
static uint32_t masked_crc(const void *p, size_t n) {
    const uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

typedef struct { unsigned char *p; size_t n, cap; } Buf;

static void put(Buf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) fail("out of memory (tensorboard)");
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void put_varint(Buf *b, uint64_t v) {
    unsigned char c[10];
    int k = 0;
    do { c[k++] = (unsigned char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0)); v >>= 7; } while (v);
    put(b, c, (size_t)k);
}
static void put_le(Buf *b, uint64_t v, int bytes) {
    unsigned char c[8];
    for (int i = 0; i < bytes; i++) c[i] = (unsigned char)(v >> (8 * i));
    put(b, c, (size_t)bytes);
}
// a length-delimited field (wire type 2)
static void put_bytes(Buf *b, int field, const void *s, size_t n) {
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, s, n);
}

void tb_encode_event(unsigned char **buf, size_t *len, double wall_time, long step, const char *const *tags,
                     const double *values, int n) {
    Buf ev = {0}, sum = {0}, val = {0};
    uint64_t bits;
    if (wall_time != 0) {
        memcpy(&bits, &wall_time, 8);
        put_varint(&ev, 1 << 3 | 1);
        put_le(&ev, bits, 8);
    }
    if (step != 0) { put_varint(&ev, 2 << 3 | 0); put_varint(&ev, (uint64_t)step); }
    if (!tags) put_bytes(&ev, 3, "brain.Event:2", 13);
    else {
        for (int i = 0; i < n; i++) {
            const float f = (float)values[i];
            uint32_t fb;
            memcpy(&fb, &f, 4);
            val.n = 0;
            put_bytes(&val, 1, tags[i], strlen(tags[i]));
            put_varint(&val, 2 << 3 | 5);
            put_le(&val, fb, 4);
            put_bytes(&sum, 1, val.p, val.n);
        }
        put_bytes(&ev, 5, sum.p, sum.n);
    }
    Buf rec = {*buf, *len, *len};
    unsigned char hdr[8];
    for (int i = 0; i < 8; i++) hdr[i] = (unsigned char)((uint64_t)ev.n >> (8 * i));
    put(&rec, hdr, 8);
    put_le(&rec, masked_crc(hdr, 8), 4);
    put(&rec, ev.p, ev.n);
    put_le(&rec, masked_crc(ev.p, ev.n), 4);
    *buf = rec.p;
    *len = rec.n;
    free(ev.p); free(sum.p); free(val.p);
}

static double wall_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static void write_event(TbWriter *w, long step, const char *const *tags, const double *values, int n) {
    unsigned char *rec = NULL;
    size_t len = 0;
    tb_encode_event(&rec, &len, wall_now(), step, tags, values, n);
    if (fwrite(rec, 1, len, w->f) != len || fflush(w->f) != 0) fail("cannot write %s: %s", w->path, strerror(errno));
    free(rec);
}

TbWriter *tb_open(const char *dir) {
    make_dirs(dir);
    TbWriter *w = xcalloc(1, sizeof *w);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[strcspn(host, "/")] = 0;
    snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s.%ld", dir, (long)wall_now(), host, (long)getpid());
    w->f = fopen(w->path, "wb");
    if (!w->f) fail("cannot write %s: %s", w->path, strerror(errno));
    write_event(w, 0, NULL, NULL, 0);
    return w;
}

void tb_scalars(TbWriter *w, long step, const char *const *tags, const double *values, int n) {
    if (n > 0) write_event(w, step, tags, values, n);
}

void tb_close(TbWriter *w) {
    if (!w) return;
    if (fclose(w->f) != 0) fail("cannot write %s: %s", w->path, strerror(errno));
    free(w);
}
