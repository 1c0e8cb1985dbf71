// Replacing a file (or a folder) so that its name always holds either the old
// content or the whole new one, never a part: the data goes to a temporary
// beside it, which commit syncs to disk and renames over the real name, then
// commit syncs the folder so that the rename itself survives a crash.
//
//   AtomicFile *a = atomic_begin(path, NULL);  // the temporary is PATH.PID-N.tmp
//   FILE *f = atomic_fopen(a, "w");            // or h5_create(a->tmp), or any writer of a->tmp
//   ... write ...                               // (an HDF5 writer h5_close()s before the commit)
//   atomic_commit(a);                          // closes f, syncs, renames; frees a
//
// Until then the temporary is pending: atomic_abandon(a) removes it (the real
// file untouched), and so does any exit of the process before the commit
// (fail(), exit(1)), so an error never leaves a half-written file under either
// name. Every failure is one line naming the file and the reason (disk full,
// permission denied). Several writes may be pending at once (one thread).
//
// A file's temporary name is unique to the process and the write (PATH.PID-N.tmp,
// N counting this process's writes), so two writers never share one and the exit
// handler removes only its own. One a killed process left (kill -9, power loss) is
// removed by the next atomic_begin of the same PATH on the same machine, once no
// process with that PID is alive.
#ifndef SPREC_ATOMIC_WRITE_H
#define SPREC_ATOMIC_WRITE_H

#include <stdio.h>
#include <sys/types.h>

typedef struct AtomicFile {
    char *path;                  // the name being replaced
    char *tmp;                   // where the new content is written meanwhile
    FILE *fp;                    // atomic_fopen's stream, closed by the commit
    int is_dir;                  // atomic_begin_dir: a folder of files
    pid_t owner;                 // the process that removes the temporary on exit (never a forked child)
    struct AtomicFile *next;     // the pending list
} AtomicFile;

// Starts replacing the file path; its temporary is path + suffix (".PID-N.tmp"
// when suffix is NULL). Nothing is created yet: the writer creates a->tmp.
AtomicFile *atomic_begin(const char *path, const char *suffix);
// Starts replacing the folder path: creates the empty folder PATH.tmp (an
// error if it exists), for the writer to fill with files (no subfolders).
AtomicFile *atomic_begin_dir(const char *path);
// fopen(a->tmp, mode) ("w", "wb"), failing with a one-line error; the stream
// belongs to a: the commit closes it.
FILE *atomic_fopen(AtomicFile *a, const char *mode);
// Flushes a stream atomic_fopen returned (a writer that holds only the FILE *), failing with one line
// naming the temporary and the reason (a full disk) if the stream's writes failed.
void atomic_flush(FILE *f);
// Makes the new content the real one: flushes and closes a->fp, syncs the
// temporary (each file of a folder, then the folder) to disk, renames it over
// path and syncs the folder holding path. Frees a.
void atomic_commit(AtomicFile *a);
// Drops the new content: closes a->fp and removes the temporary. Frees a.
void atomic_abandon(AtomicFile *a);

#endif
