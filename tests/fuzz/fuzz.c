// The harnesses' error_exit (see fuzz.h): a longjmp back to fuzz_run, then a clean-up of what the reader had
// open (descriptors, mappings), so the next input starts from the same state.
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "fuzz.h"
#include "kernels/errors.h"

static jmp_buf back;
static int armed;
static char scratch[64];

void error_exit(int status, const char *head, const char *fmt, ...) {
    if (!armed) {   // outside a reader: a real error of the harness itself
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "sprec: %s", head);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(status);
    }
    if (status != 1) {   // check(): an internal invariant broken by an input is a finding
        fprintf(stderr, "fuzz: internal error (exit %d) from %s\n", status, head);
        abort();
    }
    if (getenv("FUZZ_VERBOSE")) {   // which line the reader rejected the input with
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "fuzz: rejected: ");
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    longjmp(back, 1);
}

// A new name for every input: libhdf5 keeps a rejected file's objects open (closing them after the longjmp
// crashed inside H5F__close), and a second open of the same name would share that stale file.
const char *fuzz_file(const uint8_t *data, size_t size) {
    static unsigned long inputs;
    snprintf(scratch, sizeof scratch, "/tmp/sprec-fuzz-%ld-%lu.bin", (long)getpid(), inputs++);
    FILE *f = fopen(scratch, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(scratch);
        abort();
    }
    return scratch;
}

// Descriptors and mappings of the scratch file that the rejected reader did not close.
static void release_scratch(void) {
    char link[PATH_MAX], fdpath[64];
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const int fd = atoi(e->d_name);
        snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
        const ssize_t n = readlink(fdpath, link, sizeof link - 1);
        if (n > 0 && fd != dirfd(d)) {
            link[n] = 0;
            if (!strcmp(link, scratch)) close(fd);
        }
    }
    if (d) closedir(d);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[PATH_MAX + 128];
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        const char *name = strchr(line, '/');
        line[strcspn(line, "\n")] = 0;
        if (name && !strcmp(name, scratch) && sscanf(line, "%lx-%lx", &lo, &hi) == 2) munmap((void *)lo, hi - lo);
    }
    if (maps) fclose(maps);
}

void fuzz_run(const uint8_t *data, size_t size, void (*fn)(const char *path, const uint8_t *data, size_t size)) {
    const char *path = fuzz_file(data, size);
    if (setjmp(back) == 0) {
        armed = 1;
        fn(path, data, size);
    } else {
        release_scratch();
    }
    armed = 0;
    unlink(path);
}
