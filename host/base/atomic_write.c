// Atomic replacement of files and folders (see atomic_write.h): temporary,
// sync, rename, sync of the folder; pending temporaries removed at exit.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atomic_write.h"
#include "kernels/errors.h"

// Writes begun and neither committed nor abandoned, newest first.
static AtomicFile *pending;

// a + b, malloc'd
static char *concat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = xmalloc(na + nb + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

// Removes a temporary: a file, or a folder with the files in it.
static void remove_tmp(const AtomicFile *a) {
    if (!a->is_dir) {
        unlink(a->tmp);
        return;
    }
    DIR *d = opendir(a->tmp);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(a->tmp);
}

// The exit handler: an error exit (fail()) in the middle of a write leaves no temporary behind.
static void remove_pending(void) {
    for (AtomicFile *a = pending; a; a = a->next)
        if (a->owner == getpid()) remove_tmp(a);
}

// The folder that holds path: "." for a bare name, "/" for a name in the root.
static char *parent_of(const char *path) {
    char *dir = concat(path, "");
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    return dir;
}

// Removes the temporaries NAME.PID-N.tmp of path that a killed process left: those whose PID is
// not alive on this machine (a live one may be writing: the name is its own).
static void remove_stale(const char *path) {
    char *dir = parent_of(path);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const size_t nb = strlen(base);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long pid;
        unsigned long n;
        int used = 0;
        if (strncmp(e->d_name, base, nb) || e->d_name[nb] != '.' ||
            sscanf(e->d_name + nb + 1, "%ld-%lu.tmp%n", &pid, &n, &used) != 2 || e->d_name[nb + 1 + used] ||
            pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d) closedir(d);
    free(dir);
}

static AtomicFile *start(const char *path, const char *suffix, int is_dir) {
    static int registered;
    static unsigned long writes;   // this process's, for unique temporary names
    if (!registered) {
        check(atexit(remove_pending) == 0, "atexit failed");
        registered = 1;
    }
    AtomicFile *a = xcalloc(1, sizeof *a);
    a->path = concat(path, "");
    if (suffix || is_dir) {
        a->tmp = concat(path, suffix ? suffix : ".tmp");
    } else {
        remove_stale(path);
        char own[64];
        snprintf(own, sizeof own, ".%ld-%lu.tmp", (long)getpid(), writes++);
        a->tmp = concat(path, own);
    }
    a->is_dir = is_dir;
    a->owner = getpid();
    a->next = pending;
    pending = a;
    return a;
}

AtomicFile *atomic_begin(const char *path, const char *suffix) { return start(path, suffix, 0); }

AtomicFile *atomic_begin_dir(const char *path) {
    char *tmp = concat(path, ".tmp");
    if (mkdir(tmp, 0755) != 0) fail("cannot create '%s': %s", tmp, strerror(errno));   // (not ours to remove)
    free(tmp);
    return start(path, NULL, 1);
}

FILE *atomic_fopen(AtomicFile *a, const char *mode) {
    check(!a->fp && !a->is_dir, "atomic_fopen: '%s' already has a stream or is a folder", a->tmp);
    a->fp = fopen(a->tmp, mode);
    if (!a->fp) fail("cannot create '%s': %s", a->tmp, strerror(errno));
    return a->fp;
}

// errno 0: the stream kept an earlier write's error, whose errno is gone
static void write_failed(const AtomicFile *a) {
    fail("cannot write '%s': %s", a->tmp, errno ? strerror(errno) : "write error (disk full?)");
}

void atomic_flush(FILE *f) {
    const AtomicFile *a = pending;
    while (a && a->fp != f) a = a->next;
    check(a && f, "atomic_flush: a stream atomic_fopen did not return");
    errno = 0;
    if (fflush(f) != 0 || ferror(f)) write_failed(a);
}

// Unlinks a from the pending list and frees it.
static void finish(AtomicFile *a) {
    for (AtomicFile **p = &pending; *p; p = &(*p)->next)
        if (*p == a) { *p = a->next; break; }
    free(a->path);
    free(a->tmp);
    free(a);
}

// fsync of a file or a folder. Some file systems cannot sync a folder
// (EINVAL, ENOTSUP); a rename there is still atomic, only perhaps not durable yet.
static void sync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) fail("cannot open '%s' to sync it: %s", path, strerror(errno));
    if (fsync(fd) != 0 && !(is_dir && (errno == EINVAL || errno == ENOTSUP)))
        fail("cannot sync '%s' to disk: %s", path, strerror(errno));
    close(fd);
}

// The files of a folder temporary, then the folder (its list of names).
static void sync_dir_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) fail("cannot open '%s' to sync it: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = xmalloc(strlen(dir) + strlen(e->d_name) + 2);
        sprintf(p, "%s/%s", dir, e->d_name);
        sync_path(p, 0);
        free(p);
    }
    closedir(d);
    sync_path(dir, 1);
}

void atomic_commit(AtomicFile *a) {
    if (a->fp) {
        FILE *f = a->fp;
        a->fp = NULL;
        // a full disk shows up here at the latest: in this flush, or in an
        // earlier write whose error the stream kept (errno long gone then)
        errno = 0;
        if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0 || fclose(f) != 0) write_failed(a);
    } else if (a->is_dir) {
        sync_dir_tree(a->tmp);
    } else {
        sync_path(a->tmp, 0);
    }
    if (rename(a->tmp, a->path) != 0) fail("cannot rename '%s' to '%s': %s", a->tmp, a->path, strerror(errno));
    char *dir = parent_of(a->path);
    finish(a);   // the temporary is the real file now
    sync_path(dir, 1);
    free(dir);
}

void atomic_abandon(AtomicFile *a) {
    if (a->fp) fclose(a->fp);
    remove_tmp(a);
    finish(a);
}
