// Whole-file reads for the text formats (JSON, CSV, config files).
#include <errno.h>
#include <stdio.h>
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
