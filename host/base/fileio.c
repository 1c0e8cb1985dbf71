// Whole-file reads for the text formats (JSON, CSV, config files), and the logs.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fileio.h"
#include "kernels/errors.h"

char *read_file_text_if_exists(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *buf = xmalloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0)
        if ((n += r) + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            if (!buf) fail("out of memory reading %s", path);
        }
    if (ferror(f)) fail("cannot read '%s'", path);
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *read_file_text(const char *path, size_t *len) {
    char *text = read_file_text_if_exists(path, len);
    if (!text) fail("cannot open '%s': %s", path, strerror(errno));
    return text;
}

void make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) fail("cannot create directory %s: %s", buf, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
}

int file_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }

// ---- logs ------------------------------------------------------------------

// The open logs' paths (a run has three at most).
static struct { FILE *f; char *path; } logs[8];

FILE *log_open(const char *path, int append) {
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) fail("cannot write '%s': %s", path, strerror(errno));
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++)
        if (!logs[i].f) {
            logs[i].f = f;
            logs[i].path = strdup(path);
            return f;
        }
    fail("log_open: more than %zu logs open at once", sizeof logs / sizeof logs[0]);
}

static size_t log_slot(FILE *f) {
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) if (logs[i].f == f) return i;
    fail("log_flush: a stream log_open did not open");
}

// errno 0: the stream kept an earlier write's error, whose errno is gone
static void log_failed(size_t i) {
    fail("cannot write '%s': %s", logs[i].path, errno ? strerror(errno) : "write error (disk full?)");
}

void log_flush(FILE *f) {
    if (!f) return;
    size_t i = log_slot(f);
    errno = 0;
    if (fflush(f) != 0 || ferror(f)) log_failed(i);
}

void log_close(FILE *f) {
    if (!f) return;
    size_t i = log_slot(f);
    log_flush(f);
    if (fclose(f) != 0) log_failed(i);
    free(logs[i].path);
    logs[i].f = NULL;
    logs[i].path = NULL;
}
